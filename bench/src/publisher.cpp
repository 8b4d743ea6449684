#include "publisher.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <jansson.h>

#include <signalr/jwt.h>

#include "clock.h"
#include "payload.h"

namespace bench {

namespace {

Status
read_key(const std::string &path, std::string *key)
{
    std::ifstream      f(path);
    std::stringstream  ss;

    if (!f) {
        return Status::Error("--publish-key: cannot read \"" + path + "\"");
    }

    ss << f.rdbuf();
    *key = ss.str();
    while (!key->empty() && (key->back() == '\n' || key->back() == '\r')) {
        key->pop_back();
    }

    if (key->empty()) {
        return Status::Error("--publish-key: \"" + path + "\" is empty");
    }

    return Status::Ok();
}

}  // namespace


Status
parse_endpoint(const std::string &url, Endpoint *out)
{
    size_t  colon, slash;

    out->url = url;

    if (url.rfind("unix:", 0) == 0) {
        colon = url.find(':', 5);
        if (colon == std::string::npos || colon == 5
            || colon + 1 >= url.size() || url[colon + 1] != '/')
        {
            return Status::Error("\"" + url + "\": want unix:SOCKET:/PATH");
        }
        out->unix_path = url.substr(5, colon - 5);
        out->host = "localhost";
        out->target = url.substr(colon + 1);
        return Status::Ok();
    }

    if (url.rfind("http://", 0) != 0) {
        return Status::Error("\"" + url
                             + "\": want http://IPv4:PORT/PATH or "
                               "unix:SOCKET:/PATH");
    }

    slash = url.find('/', 7);
    out->host = url.substr(7, slash == std::string::npos ? std::string::npos
                                                         : slash - 7);
    out->target = slash == std::string::npos ? "/" : url.substr(slash);

    colon = out->host.rfind(':');
    std::string  ip = out->host.substr(0, colon);
    int          port = colon == std::string::npos
                        ? 80 : atoi(out->host.c_str() + colon + 1);

    out->addr.sin_family = AF_INET;
    out->addr.sin_port = htons(uint16_t(port));
    if (port <= 0 || port > 65535
        || inet_pton(AF_INET, ip.c_str(), &out->addr.sin_addr) != 1)
    {
        return Status::Error("\"" + url
                             + "\" needs a numeric IPv4 address and port");
    }

    return Status::Ok();
}


std::unique_ptr<HttpClient>
make_client(EventLoop &loop, const Endpoint &e)
{
    if (!e.unix_path.empty()) {
        return std::make_unique<HttpClient>(loop, e.unix_path);
    }

    return std::make_unique<HttpClient>(loop, e.addr, nullptr);
}


std::string
sign_access_token(const std::string &key, const std::string &aud,
    int64_t now_s)
{
    sr_error_t   err;
    json_t      *claims;
    char        *token;

    claims = json_pack("{sssIsI}", "aud", aud.c_str(),
                       "iat", json_int_t(now_s),
                       "exp", json_int_t(now_s + 3600));
    token = sr_jwt_sign_hs256(claims,
                              reinterpret_cast<const unsigned char *>(
                                  key.data()),
                              key.size(), &err);
    json_decref(claims);

    if (token == nullptr) {
        return "";
    }

    std::string  out(token);
    free(token);
    return out;
}


Status
make_publish_target(const Options &opts, PublishTarget *out)
{
    std::string  key;
    Status       s = parse_endpoint(opts.publish_url, &out->endpoint);

    if (!s.ok()) {
        return Status::Error("--publish: " + s.message());
    }

    out->signalr_body = opts.publish_format == "signalr";

    if (!opts.publish_key_file.empty()) {
        s = read_key(opts.publish_key_file, &key);
        if (!s.ok()) {
            return s;
        }

        std::string  aud = opts.publish_url.substr(
            0, opts.publish_url.find('?'));
        std::string  token = sign_access_token(key, aud,
                                               wall_ns() / kNsPerSec);
        if (token.empty()) {
            return Status::Error("--publish-key: sr_jwt_sign_hs256() "
                                 "failed");
        }
        out->authorization = "Bearer " + token;
    }

    return Status::Ok();
}


std::string
publish_request(const PublishTarget &t, const std::string &payload)
{
    std::vector<std::string>  headers;
    std::string               body;

    if (t.signalr_body) {
        // Payloads are plain ASCII (see payload.h): no escaping needed.
        body = "{\"target\":\"" + t.method + "\",\"arguments\":[\""
               + payload + "\"]}";
        headers.push_back("Content-Type: application/json");
    } else {
        body = payload;
        headers.push_back("Content-Type: text/plain");
    }

    if (!t.authorization.empty()) {
        headers.push_back("Authorization: " + t.authorization);
    }

    return http_request("POST", t.endpoint.target, t.endpoint.host, headers,
                        body);
}


Publisher::Publisher(EventLoop &loop, const Options &opts, Results &results)
    : loop_(loop), opts_(opts), results_(results)
{
}


Status
Publisher::init()
{
    Status  s = make_publish_target(opts_, &target_);

    if (!s.ok()) {
        return s;
    }

    for (unsigned i = 0; i < opts_.publishers; i++) {
        clients_.push_back(make_client(loop_, target_.endpoint));
        clients_.back()->preconnect();
    }
    busy_.assign(clients_.size(), false);
    waiting_.assign(clients_.size(), false);

    return Status::Ok();
}


void
Publisher::start()
{
    start_ns_ = monotonic_ns();

    if (opts_.rate > 0) {
        tick();
        return;
    }

    advanced_ns_ = start_ns_;
    watch();

    for (size_t i = 0; i < clients_.size(); i++) {
        publish(i);
    }
}


void
Publisher::tick()
{
    int64_t  now, due;
    size_t   i;

    if (stopped_) {
        return;
    }

    // Every message whose time has come, on the first free connection
    // (or queued on the first one when all are busy).
    now = monotonic_ns();
    for (;;) {
        due = start_ns_ + int64_t(double(seq_) * 1e9 / opts_.rate);
        if (due > now) {
            break;
        }
        for (i = 0; i < busy_.size() && busy_[i]; i++) { }
        publish(i < busy_.size() ? i : 0);
    }

    loop_.add_timer(due - now, [this] { tick(); });
}


void
Publisher::delivered(uint64_t seq)
{
    uint64_t  to = acked_;

    if (seq <= acked_ || ++reads_[seq] < readers_) {
        return;
    }

    while (reads_.count(to + 1) != 0 && reads_[to + 1] >= readers_) {
        to++;
    }

    if (to > acked_) {
        advance(to, monotonic_ns());
    }
}


void
Publisher::advance(uint64_t to, int64_t now_ns)
{
    for (uint64_t s = acked_ + 1; s <= to; s++) {
        reads_.erase(s);
    }

    acked_ = to;
    advanced_ns_ = now_ns;
    resume();
}


// A payload some reader never gets (its connection dropped) must not
// stop the publisher: after a second without progress, move past it.
void
Publisher::watch()
{
    int64_t  now = monotonic_ns();

    if (stopped_) {
        return;
    }

    if (seq_ > acked_ && now - advanced_ns_ > kNsPerSec) {
        results_.count("window_skips");
        advance(acked_ + 1, now);
    }

    loop_.add_timer(100 * kNsPerMs, [this] { watch(); });
}


void
Publisher::resume()
{
    for (size_t i = 0; i < waiting_.size(); i++) {
        if (waiting_[i] && !stopped_ && seq_ - acked_ < opts_.window) {
            waiting_[i] = false;
            publish(i);
        }
    }
}


void
Publisher::publish(size_t client)
{
    if (opts_.rate == 0 && seq_ - acked_ >= opts_.window) {
        waiting_[client] = true;
        return;
    }

    int64_t      sent = monotonic_ns();
    std::string  payload = make_payload(++seq_, sent, opts_.payload_bytes);

    busy_[client] = true;

    clients_[client]->send(publish_request(target_, payload),
        [this, client, sent](const Status &s, HttpResponse &r) {
            bool  failed = !s.ok() || r.status < 200 || r.status > 299;

            busy_[client] = false;

            if (failed) {
                results_.count("publish_failed");
                results_.error(s.ok() ? "publish: HTTP "
                                        + std::to_string(r.status)
                                      : "publish: " + s.message());
            } else if (sent >= measure_from_ns_) {
                results_.count("published");
                results_.record("publish", (monotonic_ns() - sent)
                                           / kNsPerUs);
            }

            if (stopped_ || opts_.rate > 0) {
                return;
            }

            // A refused request may fail at once: retry on a timer
            // rather than on this stack.
            if (failed) {
                loop_.add_timer(10 * kNsPerMs, [this, client] {
                    if (!stopped_) {
                        publish(client);
                    }
                });
            } else {
                publish(client);
            }
        });
}

}  // namespace bench
