// provider-direct-reader: the baseline of the provider benchmark
// (bench/provider-run, docs/providers.md). It reads an OpenAI-compatible
// endpoint the way signalrd's provider does, without the edge: C streams
// at once, each a POST {base}/chat/completions with "stream": true over a
// keep-alive connection opened beforehand, its Server-Sent Events parsed
// with jansson as they arrive.
//
// It measures what `signalr-bench chat` measures through the edge, with
// the same histograms and names, so that the two JSON reports compare key
// by key: "ttff" from sending the POST to the first content token, "gap"
// between fragments, "gap_excess" beyond the nominal interval,
// "schedule_lateness" against first + k * interval, "reply" from the POST
// to the end. As the daemon turns the chunk with finish_reason into the
// reply's empty final fragment, that chunk counts as a fragment here too.
//
// Design note: a second Node reader would spend on two shared cores the
// CPU the comparison needs; this one is one epoll loop in the generator's
// own style, with its Histogram (bench/src/histogram.cpp) compiled in.
//
//   provider-direct-reader --url http://127.0.0.1:PORT/v1 --streams C
//       --interval-ms D [--prompt TEXT] [--timeout S] [--output FILE]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "histogram.h"
#include "report.h"

namespace {

using bench::Histogram;
using bench::counters_json;

struct Settings {
    sockaddr_in  addr {};
    std::string  host;
    std::string  path;
    size_t       streams = 1;
    int64_t      interval_ns = 50000000;
    std::string  prompt = "Tell me about load generators";
    double       timeout_s = 300;
    std::string  output;
};


struct Stream {
    int          fd = -1;
    bool         connected = false;
    bool         headers_done = false;
    bool         done = false;
    bool         failed = false;
    std::string  in;          // raw bytes not yet decoded
    std::string  events;      // decoded SSE text not yet split
    int64_t      post_ns = 0;
    int64_t      first_ns = 0;
    int64_t      last_ns = 0;
    uint64_t     fragments = 0;
    std::string  text;
};


int64_t
monotonic_ns()
{
    timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}


class Reader {
public:
    explicit Reader(const Settings &s) : s_(s), streams_(s.streams) {}

    bool connect_all();
    void post_all();
    void run();
    json_t *report() const;

private:
    void on_readable(size_t i);
    bool decode_chunked(Stream &st);
    void on_event(Stream &st, const std::string &event, int64_t now);
    void on_fragment(Stream &st, int64_t now);
    void fail(Stream &st, const std::string &why);
    void finish(Stream &st);

    Settings                           s_;
    std::vector<Stream>                streams_;
    int                                epoll_fd_ = -1;
    size_t                             running_ = 0;
    std::map<std::string, Histogram>   histograms_;
    std::map<std::string, uint64_t>    counters_;
    std::map<std::string, uint64_t>    errors_;
    std::string                        first_text_;
    int64_t                            start_ns_ = 0;
    int64_t                            end_ns_ = 0;
};


bool
Reader::connect_all()
{
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);

    // Blocking connects, one after the other: all are open before any
    // POST, as signalr-bench opens its REST connections in the setup.
    for (size_t i = 0; i < streams_.size(); i++) {
        Stream       &st = streams_[i];
        int           one = 1;
        epoll_event   ev {};

        st.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (st.fd < 0 || connect(st.fd, reinterpret_cast<const sockaddr *>(&s_.addr),
                                 sizeof(s_.addr)) != 0)
        {
            fprintf(stderr, "provider-direct-reader: connect() of stream %zu failed: %s\n",
                    i, strerror(errno));
            return false;
        }
        setsockopt(st.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, st.fd, &ev);
        st.connected = true;
    }
    return true;
}


void
Reader::post_all()
{
    json_t  *body = json_pack("{sssbs[{ssss}]}", "model", "bench", "stream", 1, "messages",
                              "role", "user", "content", s_.prompt.c_str());
    char    *text = json_dumps(body, JSON_COMPACT);
    std::string  request = "POST " + s_.path + "/chat/completions HTTP/1.1\r\nHost: " + s_.host
                           + "\r\nContent-Type: application/json\r\nAccept: text/event-stream"
                           + "\r\nContent-Length: " + std::to_string(strlen(text))
                           + "\r\n\r\n" + text;

    free(text);
    json_decref(body);

    start_ns_ = monotonic_ns();
    for (auto &st : streams_) {
        st.post_ns = monotonic_ns();
        running_++;
        // A request this small fits any empty socket buffer at once.
        if (write(st.fd, request.data(), request.size()) != ssize_t(request.size())) {
            fail(st, "write() of the request failed");
        }
    }
}


void
Reader::run()
{
    epoll_event  events[256];
    int64_t      deadline = start_ns_ + int64_t(s_.timeout_s * 1e9);

    while (running_ > 0) {
        int64_t  left_ms = (deadline - monotonic_ns()) / 1000000;
        int      n;

        if (left_ms <= 0) {
            break;
        }
        n = epoll_wait(epoll_fd_, events, 256, int(left_ms));
        for (int k = 0; k < n; k++) {
            on_readable(size_t(events[k].data.u64));
        }
    }

    for (auto &st : streams_) {
        if (!st.done && !st.failed) {
            counters_["streams_unfinished"]++;
        }
        close(st.fd);
    }
}


void
Reader::on_readable(size_t i)
{
    Stream   &st = streams_[i];
    char      buf[16384];
    ssize_t   n = read(st.fd, buf, sizeof(buf));
    int64_t   now = monotonic_ns();
    size_t    end;

    if (st.done || st.failed) {
        return;
    }
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        fail(st, n == 0 ? "the server closed the connection" : "read() failed");
        return;
    }
    st.in.append(buf, size_t(n));

    if (!st.headers_done) {
        end = st.in.find("\r\n\r\n");
        if (end == std::string::npos) {
            return;
        }
        std::string  head = st.in.substr(0, end + 2);

        for (auto &ch : head) {
            ch = char(tolower(static_cast<unsigned char>(ch)));
        }
        if (head.rfind("http/1.1 200 ", 0) != 0) {
            fail(st, "answer: " + st.in.substr(0, st.in.find("\r\n")));
            return;
        }
        if (head.find("\r\ntransfer-encoding: chunked\r\n") == std::string::npos) {
            fail(st, "answer: not chunked (only chunked event streams are read)");
            return;
        }
        st.in.erase(0, end + 4);
        st.headers_done = true;
    }

    if (!decode_chunked(st)) {
        return;
    }
    while ((end = st.events.find("\n\n")) != std::string::npos && !st.done && !st.failed) {
        std::string  event = st.events.substr(0, end);

        st.events.erase(0, end + 2);
        on_event(st, event, now);
    }
}


// Moves the complete chunks of st.in to st.events; false on bad framing.
bool
Reader::decode_chunked(Stream &st)
{
    for ( ;; ) {
        size_t  eol = st.in.find("\r\n");
        char   *end;
        size_t  size;

        if (eol == std::string::npos) {
            return true;
        }
        size = strtoul(st.in.c_str(), &end, 16);
        if (end == st.in.c_str()) {
            fail(st, "bad chunk size");
            return false;
        }
        if (st.in.size() < eol + 2 + size + 2) {
            return true;
        }
        st.events.append(st.in, eol + 2, size);
        st.in.erase(0, eol + 2 + size + 2);
        if (size == 0) {
            return true;
        }
    }
}


void
Reader::on_event(Stream &st, const std::string &event, int64_t now)
{
    json_t       *chunk, *choice;
    const char   *content;
    size_t        at;

    if (event.rfind("data:", 0) != 0) {
        return;   // a comment
    }
    at = event.size() > 5 && event[5] == ' ' ? 6 : 5;
    if (event.compare(at, std::string::npos, "[DONE]") == 0) {
        finish(st);
        return;
    }

    chunk = json_loadb(event.data() + at, event.size() - at, 0, nullptr);
    choice = json_array_get(json_object_get(chunk, "choices"), 0);
    content = json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
    if (chunk == nullptr || choice == nullptr) {
        json_decref(chunk);
        fail(st, "malformed event");
        return;
    }
    if (content != nullptr && content[0] != '\0') {
        st.text += content;
        on_fragment(st, now);
    } else if (json_is_string(json_object_get(choice, "finish_reason"))) {
        on_fragment(st, now);
    }
    json_decref(chunk);
}


void
Reader::on_fragment(Stream &st, int64_t now)
{
    int64_t  gap, nominal_at;

    counters_["fragments"]++;
    if (st.fragments == 0) {
        st.first_ns = now;
        histograms_["ttff"].record((now - st.post_ns) / 1000);
    } else {
        gap = now - st.last_ns;
        histograms_["gap"].record(gap / 1000);
        histograms_["gap_excess"].record((gap - s_.interval_ns) / 1000);
        nominal_at = st.first_ns + int64_t(st.fragments) * s_.interval_ns;
        histograms_["schedule_lateness"].record((now - nominal_at) / 1000);
    }
    st.fragments++;
    st.last_ns = now;
}


void
Reader::fail(Stream &st, const std::string &why)
{
    st.failed = true;
    counters_["streams_failed"]++;
    errors_[why]++;
    if (running_ > 0) {
        running_--;
    }
}


void
Reader::finish(Stream &st)
{
    st.done = true;
    end_ns_ = monotonic_ns();
    counters_["streams_completed"]++;
    histograms_["reply"].record((end_ns_ - st.post_ns) / 1000);
    if (first_text_.empty()) {
        first_text_ = st.text;
    } else if (st.text != first_text_) {
        counters_["replies_differing"]++;
    }
    running_--;
}


json_t *
Reader::report() const
{
    json_t  *latency = json_object();
    rusage   ru;
    double   window_s = double((end_ns_ ? end_ns_ : monotonic_ns()) - start_ns_) / 1e9;

    for (const auto &[key, h] : histograms_) {
        json_object_set_new(latency, key.c_str(), json_pack(
            "{sIsfsfsfsfsfsf}", "count", json_int_t(h.count()), "mean", h.mean() / 1000.0,
            "min", double(h.min()) / 1000.0, "p50", double(h.percentile(50)) / 1000.0,
            "p90", double(h.percentile(90)) / 1000.0, "p99", double(h.percentile(99)) / 1000.0,
            "max", double(h.max()) / 1000.0));
    }
    getrusage(RUSAGE_SELF, &ru);

    return json_pack("{sssIsfsososos{sfsf}}", "scenario", "direct",
                     "streams", json_int_t(s_.streams), "window_s", window_s,
                     "latency_ms", latency, "counters", counters_json(counters_),
                     "errors", counters_json(errors_), "generator_cpu_s",
                     "user", double(ru.ru_utime.tv_sec) + ru.ru_utime.tv_usec / 1e6,
                     "system", double(ru.ru_stime.tv_sec) + ru.ru_stime.tv_usec / 1e6);
}


bool
parse_url(const std::string &url, Settings *s)
{
    std::string  rest;
    size_t       slash, colon;

    if (url.rfind("http://", 0) != 0) {
        return false;
    }
    rest = url.substr(7);
    slash = rest.find('/');
    s->host = rest.substr(0, slash);
    s->path = slash == std::string::npos ? "" : rest.substr(slash);
    while (!s->path.empty() && s->path.back() == '/') {
        s->path.pop_back();
    }
    colon = s->host.rfind(':');
    if (colon == std::string::npos) {
        return false;
    }
    s->addr.sin_family = AF_INET;
    s->addr.sin_port = htons(uint16_t(atoi(s->host.c_str() + colon + 1)));
    return inet_pton(AF_INET, s->host.substr(0, colon).c_str(), &s->addr.sin_addr) == 1
           && s->addr.sin_port != 0;
}


bool
parse_settings(int argc, char **argv, Settings *s)
{
    bool  have_url = false;

    if (argc % 2 == 0) {
        return false;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string  name = argv[i], value = argv[i + 1];
        double       v = atof(value.c_str());

        if (name == "--url") {
            have_url = parse_url(value, s);
            if (!have_url) {
                return false;
            }
        } else if (name == "--streams" && v >= 1 && v <= 100000) {
            s->streams = size_t(v);
        } else if (name == "--interval-ms" && v > 0) {
            s->interval_ns = int64_t(v * 1e6);
        } else if (name == "--prompt") {
            s->prompt = value;
        } else if (name == "--timeout" && v > 0) {
            s->timeout_s = v;
        } else if (name == "--output") {
            s->output = value;
        } else {
            return false;
        }
    }
    return have_url;
}

}  // namespace


int
main(int argc, char **argv)
{
    Settings  settings;
    json_t   *report;
    int       rc;

    if (!parse_settings(argc, argv, &settings)) {
        fprintf(stderr, "usage: provider-direct-reader --url http://IPV4:PORT/v1 --streams C "
                        "--interval-ms D [--prompt TEXT] [--timeout S] [--output FILE]\n");
        return 2;
    }

    Reader  reader(settings);

    if (!reader.connect_all()) {
        return 1;
    }
    reader.post_all();
    reader.run();

    report = reader.report();
    rc = json_integer_value(json_object_get(json_object_get(report, "counters"),
                                            "streams_completed")) == json_int_t(settings.streams)
         ? 0 : 1;
    if (!settings.output.empty() && json_dump_file(report, settings.output.c_str(),
                                                   JSON_INDENT(2)) != 0)
    {
        fprintf(stderr, "provider-direct-reader: cannot write %s\n", settings.output.c_str());
        rc = 1;
    }
    json_dumpf(report, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(report);
    return rc;
}
