#include "remote_connections.h"

#include <optional>

#include <openssl/evp.h>

#include "json.h"
#include "log.h"

namespace signalrd {

namespace {

// Bounds on a hub message that another instance's worker forwarded, as for INVOKE.
const sr_limits_t invoke_limits = {0, 256, 64};

// Design note: base64 by OpenSSL's EVP_EncodeBlock and EVP_DecodeBlock, which the daemon
// links already (through the shared library's JWT code), rather than by hand.
std::string to_base64(const unsigned char *data, size_t len)
{
    std::string out(4 * ((len + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), data,
                            static_cast<int>(len));
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
}

std::optional<Bytes> from_base64(const char *text)
{
    if (text == nullptr) {
        return std::nullopt;
    }
    std::string_view in(text);
    if (in.size() % 4 != 0) {
        return std::nullopt;
    }
    Bytes out(in.size() / 4 * 3);
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char *>(in.data()),
                            static_cast<int>(in.size()));
    if (n < 0) {
        return std::nullopt;
    }
    // EVP_DecodeBlock counts the bytes that padding stands for as zeros
    size_t pad = in.size() >= 2 && in[in.size() - 1] == '=' ? (in[in.size() - 2] == '=' ? 2 : 1)
                                                           : 0;
    out.resize(static_cast<size_t>(n) - pad);
    return out;
}

std::string field(const json_t *m, const char *key)
{
    const char *v = json_get_string(m, key);
    return v ? v : "";
}

std::optional<uint64_t> uint_field(const json_t *m, const char *key)
{
    json_t *v = json_object_get(m, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return std::nullopt;
    }
    return static_cast<uint64_t>(json_integer_value(v));
}

asio::awaitable<void> run_command(RedisClient &client, RedisArgs args)
{
    std::string verb = args[0];
    Result<RedisValue> r = co_await client.command(std::move(args));
    if (!r.is_ok()) {
        log_warn("redis %s of a parked connection failed: %s", verb.c_str(),
                 r.status().message().c_str());
    }
}

}  // namespace

// The home's side of a connection adopted elsewhere: what the registry and the lot send it
// goes to the adopter's instance channel.
class RemoteConnections::RemotePort final : public LinkPort {
public:
    RemotePort(RemoteConnections &owner, std::string instance)
        : owner_(owner), instance_(std::move(instance))
    {
    }

    bool send_message(const std::string &connection_id, const sr_message_t &msg) override
    {
        sr_buf_t buf;
        sr_error_t err;
        sr_buf_init(&buf);
        bool ok = sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg, &buf, &err) == SR_OK;
        if (ok) {
            send_encoded(connection_id, buf.data, buf.len);
        } else {
            log_error("connection %s: encoding a %s message failed: %s", connection_id.c_str(),
                      sr_message_type_name(msg.type), err.str);
        }
        sr_buf_free(&buf);
        return ok;
    }

    bool send_encoded(const std::string &connection_id, const unsigned char *data,
                      size_t len) override
    {
        json_t *m = message("deliver", connection_id);
        json_set_string(m, "message", to_base64(data, len));
        owner_.send(instance_, m);
        return true;
    }

    void send_close(const std::string &connection_id, const char *error,
                    bool allow_reconnect) override
    {
        json_t *m = message("close", connection_id);
        json_object_set_new(m, "error", error ? json_string(error) : json_null());
        json_object_set_new(m, "allowReconnect", json_boolean(allow_reconnect));
        owner_.send(instance_, m);
    }

    bool send_release(const std::string &connection_id) override
    {
        owner_.send(instance_, message("release", connection_id));
        return true;
    }

    bool send_suspend(const std::string &connection_id) override
    {
        owner_.send(instance_, message("suspend", connection_id));
        return true;
    }

private:
    static json_t *message(const char *type, const std::string &connection_id)
    {
        json_t *m = json_object();
        json_set_string(m, "type", type);
        json_set_string(m, "connection", connection_id);
        return m;
    }

    RemoteConnections &owner_;
    std::string instance_;
};

RemoteConnections::RemoteConnections(asio::any_io_executor executor, RedisClient &commands,
                                     std::string prefix, std::string instance,
                                     HubRegistry &registry, ParkingLot &lot, Publisher publish,
                                     RemoteOptions options)
    : executor_(executor),
      commands_(commands),
      prefix_(std::move(prefix)),
      instance_(std::move(instance)),
      registry_(registry),
      lot_(lot),
      publish_(std::move(publish)),
      options_(options),
      alive_(std::make_shared<bool>(true)),
      holding_timer_(executor)
{
    lot_.set_parked_hook([this](const std::string &, const std::string &hash, uint64_t window) {
        redis({"SET", parked_key(hash), instance_, "PX", std::to_string(window ? window : 1)});
    });
    lot_.set_left_hook([this](const std::string &hash) { redis({"DEL", parked_key(hash)}); });
    lot_.set_elsewhere_hook([this](ResumeRequest request) { find_elsewhere(std::move(request)); });
    lot_.set_foreign_hook([this](WorkerLink &link, const sr_ipc_frame_t &frame) {
        return forward_from_worker(link, frame);
    });
    lot_.set_link_dropped_hook([this](WorkerLink &link) { on_link_dropped(link); });
    spawn_detached(executor_, keep_lent(alive_), "adopted connections keep-alive");
}

RemoteConnections::~RemoteConnections()
{
    *alive_ = false;
    holding_timer_.cancel();
    lot_.set_parked_hook(nullptr);
    lot_.set_left_hook(nullptr);
    lot_.set_elsewhere_hook(nullptr);
    lot_.set_foreign_hook(nullptr);
    lot_.set_link_dropped_hook(nullptr);
}

std::string RemoteConnections::parked_key(const std::string &token_hash) const
{
    return prefix_ + ":parked:" + token_hash;
}

void RemoteConnections::redis(RedisArgs args)
{
    spawn_detached(executor_, run_command(commands_, std::move(args)), "parked connection key");
}

void RemoteConnections::send(const std::string &instance, json_t *message)
{
    json_set_string(message, "from", instance_);
    publish_(instance, json_text(message));
    json_decref(message);
}

void RemoteConnections::send_closed(const std::string &home, const std::string &connection_id)
{
    json_t *m = json_object();
    json_set_string(m, "type", "from_remote");
    json_set_string(m, "connection", connection_id);
    json_object_set_new(m, "frame", json_integer(SR_IPC_CLOSED));
    json_set_string(m, "body", "");
    send(home, m);
}

RemoteConnections::RemotePort &RemoteConnections::port_for(const std::string &instance)
{
    auto &port = ports_[instance];
    if (!port) {
        port = std::make_unique<RemotePort>(*this, instance);
    }
    return *port;
}

void RemoteConnections::on_instance_message(const std::string &type, const json_t *m)
{
    if (type == "resume") {
        on_resume(m);
    } else if (type == "from_remote") {
        on_from_remote(m);
    } else if (type == "adopt") {
        on_adopt(m);
    } else if (type == "resume_failed") {
        on_resume_failed(m);
    } else if (type == "deliver" || type == "release" || type == "suspend" || type == "close") {
        on_to_foreign(type, m);
    } else if (type == "holding") {
        on_holding(m);
    }
}

asio::awaitable<void> RemoteConnections::keep_lent(std::shared_ptr<bool> alive)
{
    while (*alive) {
        holding_timer_.expires_after(options_.holding_interval);
        co_await holding_timer_.async_wait(use_nothrow);
        if (!*alive) {
            break;
        }
        announce_holdings();
        end_unheld();
    }
}

// The adopter's side: tells each home which of its connections are still held here.
void RemoteConnections::announce_holdings()
{
    std::map<std::string, json_t *> by_home;

    for (const auto &[id, foreign] : foreign_) {
        json_t *&list = by_home[foreign.home];
        if (list == nullptr) {
            list = json_array();
        }
        json_array_append_new(list, json_string(id.c_str()));
    }
    for (auto &[home, list] : by_home) {
        json_t *m = json_object();
        json_set_string(m, "type", "holding");
        json_object_set_new(m, "connections", list);
        send(home, m);
    }
}

void RemoteConnections::on_holding(const json_t *m)
{
    std::string from = field(m, "from");
    auto now = std::chrono::steady_clock::now();
    size_t i;
    json_t *id;

    json_array_foreach(json_object_get(m, "connections"), i, id) {
        auto it = json_is_string(id) ? lent_.find(json_string_value(id)) : lent_.end();
        if (it != lent_.end() && it->second.adopter == from) {
            it->second.seen = now;
        }
    }
}

// The home's side: a connection lent to an instance that stopped saying it holds it ends.
void RemoteConnections::end_unheld()
{
    auto limit = options_.holding_interval * options_.holding_missed;
    auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, std::string>> silent;

    for (auto it = lent_.begin(); it != lent_.end();) {
        auto port = ports_.find(it->second.adopter);
        bool still_lent =
            port != ports_.end() && registry_.port_of(it->first) == port->second.get();
        if (!still_lent) {
            it = lent_.erase(it);
        } else if (now - it->second.seen > limit) {
            silent.emplace_back(it->first, it->second.adopter);
            it = lent_.erase(it);
        } else {
            ++it;
        }
    }
    for (const auto &[id, adopter] : silent) {
        log_info("connection %s: instance \"%s\" stopped holding it, ended", id.c_str(),
                 adopter.c_str());
        registry_.closed(port_for(adopter), id);
    }
}

// No connection here has the token: one adopted here from another instance asks its home
// directly; otherwise Redis says which instance parked it, if any.
void RemoteConnections::find_elsewhere(ResumeRequest request)
{
    for (const auto &[id, foreign] : foreign_) {
        if (foreign.token_hash == request.token_hash) {
            ask(foreign.home, std::move(request));
            return;
        }
    }
    spawn_detached(executor_, look_up(std::move(request), true, alive_),
                   "parked connection lookup");
}

// Where Redis names no other instance, the connection may still be parked here in a
// moment (its worker noticed the cut after its client): the lot waits for that, and then
// Redis is asked once more, as the home may have been as slow.
asio::awaitable<void> RemoteConnections::look_up(ResumeRequest request, bool first,
                                                 std::shared_ptr<bool> alive)
{
    RedisArgs command = {"GET", parked_key(request.token_hash)};
    Result<RedisValue> r = co_await commands_.command(std::move(command));
    if (!*alive) {
        co_return;
    }
    if (!r.is_ok()) {
        log_warn("redis GET of a parked connection failed: %s", r.status().message().c_str());
    }
    if (r.is_ok() && r->is_string() && !r->str.empty() && r->str != instance_) {
        ask(r->str, std::move(request));
    } else if (first) {
        request.unclaimed = [this, alive](ResumeRequest again) {
            if (*alive) {
                spawn_detached(executor_, look_up(std::move(again), false, alive),
                               "parked connection lookup");
            }
        };
        lot_.resume_here(std::move(request));
    } else {
        request.fail(r.is_ok() ? "no such connection" : "the reconnect index is unavailable");
    }
}

void RemoteConnections::ask(const std::string &home, ResumeRequest request)
{
    uint64_t ref = next_ref_++;
    json_t *m = json_object();

    json_set_string(m, "type", "resume");
    json_set_string(m, "token_hash", request.token_hash);
    json_object_set_new(m, "ref", json_integer(static_cast<json_int_t>(ref)));
    json_set_string(m, "reply_to", instance_);

    Pending &pending = pending_[ref];
    pending.request = std::move(request);
    pending.home = home;
    pending.timer = std::make_unique<asio::steady_timer>(executor_, options_.resume_timeout);
    pending.timer->async_wait([this, alive = alive_, ref](asio::error_code ec) {
        if (ec || !*alive) {
            return;
        }
        auto it = pending_.find(ref);
        if (it != pending_.end()) {
            log_info("resume %llu: instance \"%s\" did not answer in time",
                     static_cast<unsigned long long>(ref), it->second.home.c_str());
            ResumeRequest late = std::move(it->second.request);
            pending_.erase(it);
            late.fail("the connection's instance did not answer");
        }
    });
    log_debug("resume %llu: asking instance \"%s\"", static_cast<unsigned long long>(ref),
              home.c_str());
    send(home, m);
}

// The home's side of a resume from another instance: the lot answers it as a local one,
// and the connection is then routed to the asker's port.
void RemoteConnections::on_resume(const json_t *m)
{
    std::string reply_to = field(m, "reply_to");
    std::optional<uint64_t> ref = uint_field(m, "ref");
    ResumeRequest request;

    request.token_hash = field(m, "token_hash");
    if (reply_to.empty() || reply_to == instance_ || !ref || request.token_hash.empty()) {
        log_warn("backplane: malformed resume request ignored");
        return;
    }
    request.adopt = [this, reply_to, ref = *ref](const std::string &id, const Bytes &state,
                                                 const std::vector<Bytes> &appended) {
        json_t *answer = json_object();
        json_t *list = json_array();
        for (const Bytes &b : appended) {
            json_array_append_new(list, json_string(to_base64(b.data(), b.size()).c_str()));
        }
        json_set_string(answer, "type", "adopt");
        json_object_set_new(answer, "ref", json_integer(static_cast<json_int_t>(ref)));
        json_set_string(answer, "connection", id);
        json_set_string(answer, "state", to_base64(state.data(), state.size()));
        json_object_set_new(answer, "appended", list);
        send(reply_to, answer);
        log_info("connection %s: handed to instance \"%s\"", id.c_str(), reply_to.c_str());
        lent_[id] = {reply_to, std::chrono::steady_clock::now()};
        return static_cast<LinkPort *>(&port_for(reply_to));
    };
    request.fail = [this, reply_to, ref = *ref](const char *reason) {
        json_t *answer = json_object();
        json_set_string(answer, "type", "resume_failed");
        json_object_set_new(answer, "ref", json_integer(static_cast<json_int_t>(ref)));
        json_set_string(answer, "reason", reason);
        send(reply_to, answer);
    };
    lot_.resume_here(std::move(request));
}

void RemoteConnections::on_adopt(const json_t *m)
{
    std::string id = field(m, "connection");
    std::string home = field(m, "from");
    std::optional<uint64_t> ref = uint_field(m, "ref");
    auto it = ref ? pending_.find(*ref) : pending_.end();

    if (id.empty() || home.empty()) {
        log_warn("backplane: malformed adopt ignored");
        return;
    }
    if (it == pending_.end()) {
        // too late: the asker was refused meanwhile, so the home must end it
        send_closed(home, id);
        return;
    }
    ResumeRequest request = std::move(it->second.request);
    pending_.erase(it);

    std::optional<Bytes> state = from_base64(json_get_string(m, "state"));
    std::vector<Bytes> appended;
    size_t i;
    json_t *item;
    bool ok = state.has_value() && json_is_array(json_object_get(m, "appended"));
    json_array_foreach(json_object_get(m, "appended"), i, item) {
        std::optional<Bytes> b = from_base64(json_string_value(item));
        ok = ok && b.has_value();
        if (b) {
            appended.push_back(std::move(*b));
        }
    }
    sr_ipc_state_t decoded{};
    sr_error_t err;
    ok = ok && sr_ipc_state_decode(state->data(), state->size(), &decoded, &err) == SR_OK;
    std::string hash = ok ? token_hash(decoded.token ? decoded.token : "") : "";
    sr_ipc_state_clear(&decoded);

    LinkPort *port = ok ? request.adopt(id, *state, appended) : nullptr;
    if (port == nullptr) {
        if (!ok) {
            log_warn("connection %s: malformed adopt from instance \"%s\"", id.c_str(),
                     home.c_str());
            request.fail("the connection's instance answered badly");
        }
        send_closed(home, id);
        return;
    }
    foreign_[id] = {home, port, hash};
    log_info("connection %s: adopted from instance \"%s\", %zu appended while parked",
             id.c_str(), home.c_str(), appended.size());
}

void RemoteConnections::on_resume_failed(const json_t *m)
{
    std::optional<uint64_t> ref = uint_field(m, "ref");
    auto it = ref ? pending_.find(*ref) : pending_.end();

    if (it == pending_.end()) {
        return;
    }
    ResumeRequest request = std::move(it->second.request);
    pending_.erase(it);
    std::string reason = field(m, "reason");
    request.fail(reason.empty() ? "no such connection" : reason.c_str());
}

// The adopter's side: what the home sends for a connection held here.
void RemoteConnections::on_to_foreign(const std::string &type, const json_t *m)
{
    std::string id = field(m, "connection");
    auto it = foreign_.find(id);

    if (it == foreign_.end()) {
        // it ended here meanwhile, and its CLOSED is on the way to the home
        return;
    }
    LinkPort &port = *it->second.port;
    if (type == "deliver") {
        std::optional<Bytes> msg = from_base64(json_get_string(m, "message"));
        if (msg && !msg->empty()) {
            port.send_encoded(id, msg->data(), msg->size());
        }
    } else if (type == "release") {
        port.send_release(id);
    } else if (type == "suspend") {
        port.send_suspend(id);
    } else {
        const char *error = json_get_string(m, "error");
        port.send_close(id, error, json_is_true(json_object_get(m, "allowReconnect")));
    }
}

bool RemoteConnections::forward_from_worker(WorkerLink &link, const sr_ipc_frame_t &frame)
{
    std::string id(frame.conn_id, frame.conn_id_len);
    auto it = foreign_.find(id);

    if (it == foreign_.end() || it->second.port != static_cast<LinkPort *>(&link)) {
        return false;
    }
    json_t *m = json_object();
    json_set_string(m, "type", "from_remote");
    json_set_string(m, "connection", id);
    json_object_set_new(m, "frame", json_integer(frame.type));
    json_set_string(m, "body", to_base64(frame.body, frame.body_len));
    std::string home = it->second.home;
    if (frame.type == SR_IPC_CLOSED || frame.type == SR_IPC_PARK) {
        // the worker has let go of it; after a PARK the home holds the state
        foreign_.erase(it);
    }
    send(home, m);
    return true;
}

void RemoteConnections::on_link_dropped(WorkerLink &link)
{
    std::vector<std::pair<std::string, std::string>> gone;

    for (const auto &[id, foreign] : foreign_) {
        if (foreign.port == static_cast<LinkPort *>(&link)) {
            gone.emplace_back(id, foreign.home);
        }
    }
    for (const auto &[id, home] : gone) {
        foreign_.erase(id);
        send_closed(home, id);
    }
}

// The home's side of a frame that the adopter's worker sent for the connection.
void RemoteConnections::on_from_remote(const json_t *m)
{
    std::string id = field(m, "connection");
    std::string from = field(m, "from");
    std::optional<uint64_t> type = uint_field(m, "frame");
    std::optional<Bytes> body = from_base64(json_get_string(m, "body"));

    if (id.empty() || from.empty() || !type || !body) {
        log_warn("backplane: malformed from_remote ignored");
        return;
    }
    RemotePort &port = port_for(from);
    sr_error_t err;

    if (*type == SR_IPC_CLOSED) {
        if (!lot_.closed(port, id)) {
            registry_.closed(port, id);
        }
    } else if (*type == SR_IPC_DETACH) {
        sr_ipc_detach_t detach{};
        if (sr_ipc_detach_decode(body->data(), body->size(), &detach, &err) == SR_OK) {
            lot_.detach(port, id, detach.window_ms, detach.buffer_bytes);
        }
    } else if (*type == SR_IPC_PARK) {
        Status s = lot_.park(port, id, std::move(*body));
        if (!s.is_ok()) {
            log_warn("connection %s: %s", id.c_str(), s.message().c_str());
        }
    } else if (*type == SR_IPC_INVOKE) {
        // from the adopter holding it, or handing it over (what its worker read still counts)
        LinkPort *holder = registry_.port_of(id) == &port
                               ? &port
                               : lot_.holder_while_draining(port, id);
        if (holder == nullptr) {
            return;
        }
        sr_message_t msg;
        int rc = sr_message_decode_payload(SR_PROTOCOL_MSGPACK, body->data(), body->size(),
                                           &invoke_limits, &msg, &err);
        if (rc == SR_OK) {
            registry_.invoke(*holder, id, msg);
            sr_message_clear(&msg);
        } else if (rc != SR_ERR_UNSUPPORTED) {
            log_info("connection %s: invalid hub message: %s", id.c_str(), err.str);
            registry_.close(id, "Connection closed with an error. Invalid hub message.", false);
        }
    }
}

}  // namespace signalrd
