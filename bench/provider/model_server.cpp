// provider-model-server: the OpenAI-compatible streaming server of the
// provider benchmark (bench/provider-run, docs/providers.md).
//
// It plays the stream that tests/e2e/lib/model-server.mjs plays for a
// prompt nobody scripted: a keep-alive comment, a role-only chunk, one
// chunk per token whose content is derived from the last user message
// ("word#i "), a chunk with finish_reason "stop" and "data: [DONE]", as
// Server-Sent Events over HTTP/1.1 chunked encoding, connections kept
// alive. Token k of a stream is due at a fixed time, request + first
// delay + k * delay, so a reader's lateness is the path's and not drift
// of the server's timers.
//
// Design note: the Node server of the tests spends about a millisecond of
// CPU per stream and token at a thousand streams, which on two cores made
// it the bottleneck of the very thing measured. This one is a single epoll
// loop with a timerfd and an ordered queue of due streams; each event is
// rendered by hand when it is due. It speaks only the HTTP the
// benchmark's clients send (Content-Length bodies, no pipelining).
//
//   provider-model-server [--port P] [--tokens N] [--delay-ms D]
//                         [--first-delay-ms F]
//
// It prints its base URL (http://127.0.0.1:PORT/v1) on the first line of
// standard output and, on SIGTERM or SIGINT, its counters on standard error;
// GET /stats answers them as JSON, with how late the tokens went out.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <jansson.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <ctime>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr size_t   kMaxRequest = 1 << 20;
constexpr int64_t  kNsPerMs = 1000000;

struct Settings {
    int      port = 0;
    int      tokens = 60;
    int64_t  delay_ns = 50 * kNsPerMs;
    int64_t  first_delay_ns = -1;
};


struct Counters {
    uint64_t  connections = 0;
    uint64_t  requests = 0;
    uint64_t  completed = 0;
    uint64_t  closed_early = 0;
    uint64_t  tokens = 0;
    uint64_t  bad_requests = 0;
    uint64_t  late_1ms = 0;       // tokens sent more than 1 ms after due
    uint64_t  late_10ms = 0;
    int64_t   late_sum_us = 0;
    int64_t   late_max_us = 0;
};


struct Connection {
    int                       fd = -1;
    uint64_t                  id = 0;
    std::string               in;
    std::string               out;
    bool                      want_write = false;
    bool                      streaming = false;
    std::string               prefix;     // an event up to its delta
    std::vector<std::string>  words;      // escaped, see prompt_words()
    size_t                    next = 0;   // the next token to send
    size_t                    count = 0;  // tokens of the stream
    int64_t                   start_ns = 0;
};


int64_t
monotonic_ns()
{
    timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}


std::string
http_chunk(std::string_view data)
{
    char  size[24];

    snprintf(size, sizeof(size), "%zx\r\n", data.size());
    return std::string(size) + std::string(data) + "\r\n";
}


// The text of s as a JSON string's contents. Design note: written out
// rather than built with jansson per event, which cost 5 us an event and
// made a thousand simultaneous requests wait a third of a second.
std::string
json_escape(std::string_view s)
{
    std::string  out;
    char         hex[8];

    for (unsigned char ch : s) {
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += char(ch);
        } else if (ch < 0x20) {
            snprintf(hex, sizeof(hex), "\\u%04x", ch);
            out += hex;
        } else {
            out += char(ch);
        }
    }
    return out;
}


// The prompt's words, cycled, as the Node server's defaultTokens(), each
// already escaped: token i is words[i % size] + "#i ".
std::vector<std::string>
prompt_words(const std::string &prompt)
{
    std::vector<std::string>  words;
    size_t                    at = 0;

    while (at < prompt.size()) {
        size_t  end = prompt.find_first_of(" \t\r\n", at);

        if (end == std::string::npos) {
            end = prompt.size();
        }
        if (end > at) {
            words.push_back(json_escape(prompt.substr(at, end - at)));
        }
        at = end + 1;
    }
    if (words.empty()) {
        words.push_back("x");
    }
    return words;
}


class Server {
public:
    explicit Server(const Settings &settings) : settings_(settings) {}

    bool open();
    int run();

private:
    void accept_all();
    void on_readable(Connection &c);
    void on_request(Connection &c, const std::string &head, const std::string &body);
    void on_due();
    void send(Connection &c, std::string_view data);
    void flush(Connection &c);
    void close_connection(Connection &c);
    void arm_timer();
    void answer(Connection &c, const char *status, const char *body);
    std::string render(const Connection &c, size_t k) const;
    void send_stats(Connection &c);

    Settings                                           settings_;
    Counters                                           counters_;
    int                                                listen_fd_ = -1;
    int                                                epoll_fd_ = -1;
    int                                                timer_fd_ = -1;
    int                                                signal_fd_ = -1;
    uint64_t                                           next_id_ = 1;
    std::map<uint64_t, std::unique_ptr<Connection>>    connections_;
    std::priority_queue<std::pair<int64_t, uint64_t>,
                        std::vector<std::pair<int64_t, uint64_t>>,
                        std::greater<>>                due_;
    int64_t                                            armed_ns_ = 0;
};


bool
Server::open()
{
    sockaddr_in  addr {};
    socklen_t    len = sizeof(addr);
    int          one = 1;
    sigset_t     mask;

    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(settings_.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0
        || listen(listen_fd_, 4096) != 0)
    {
        fprintf(stderr, "provider-model-server: bind() or listen() on port %d failed: %s\n",
                settings_.port, strerror(errno));
        return false;
    }
    getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr), &len);
    settings_.port = ntohs(addr.sin_port);

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);

    // Connections use their id as epoll data; 0..2 are these three.
    for (int fd : {listen_fd_, timer_fd_, signal_fd_}) {
        epoll_event  ev {};

        ev.events = EPOLLIN;
        ev.data.u64 = fd == listen_fd_ ? 0 : fd == timer_fd_ ? 1 : 2;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    }
    next_id_ = 3;

    printf("http://127.0.0.1:%d/v1\n", settings_.port);
    fflush(stdout);
    return true;
}


int
Server::run()
{
    epoll_event  events[256];

    for ( ;; ) {
        int  n = epoll_wait(epoll_fd_, events, 256, -1);

        if (n < 0 && errno != EINTR) {
            perror("provider-model-server: epoll_wait()");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            uint64_t  id = events[i].data.u64;

            if (id == 0) {
                accept_all();
            } else if (id == 1) {
                on_due();
            } else if (id == 2) {
                fprintf(stderr, "provider-model-server: connections %lu, requests %lu, "
                        "completed %lu, closed early %lu, tokens %lu, bad requests %lu\n",
                        counters_.connections, counters_.requests, counters_.completed,
                        counters_.closed_early, counters_.tokens, counters_.bad_requests);
                return 0;
            } else if (auto it = connections_.find(id); it != connections_.end()) {
                Connection  &c = *it->second;

                if (events[i].events & EPOLLOUT) {
                    flush(c);
                }
                if (connections_.count(id) && (events[i].events & (EPOLLIN | EPOLLHUP))) {
                    on_readable(c);
                }
            }
        }
    }
}


void
Server::accept_all()
{
    for ( ;; ) {
        int          fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        int          one = 1;
        epoll_event  ev {};
        auto         c = std::make_unique<Connection>();

        if (fd < 0) {
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        c->id = next_id_++;
        ev.events = EPOLLIN;
        ev.data.u64 = c->id;
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
        counters_.connections++;
        connections_.emplace(c->id, std::move(c));
    }
}


void
Server::on_readable(Connection &c)
{
    char  buf[16384];

    for ( ;; ) {
        ssize_t  n = read(c.fd, buf, sizeof(buf));

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close_connection(c);
            return;
        }
        if (n < 0) {
            break;
        }
        c.in.append(buf, size_t(n));
        if (c.in.size() > 2 * kMaxRequest) {
            // A client writing on while its answer streams: not ours.
            close_connection(c);
            return;
        }
    }

    while (!c.streaming) {
        size_t  end = c.in.find("\r\n\r\n");
        size_t  length = 0;

        if (end == std::string::npos) {
            if (c.in.size() > kMaxRequest) {
                answer(c, "431 Request Header Fields Too Large", "headers too large");
            }
            return;
        }

        std::string  head = c.in.substr(0, end + 2);
        std::string  lower = head;

        for (auto &ch : lower) {
            ch = char(tolower(static_cast<unsigned char>(ch)));
        }
        if (size_t at = lower.find("\r\ncontent-length:"); at != std::string::npos) {
            length = strtoul(lower.c_str() + at + 17, nullptr, 10);
        } else if (lower.find("\r\ntransfer-encoding:") != std::string::npos) {
            answer(c, "411 Length Required", "send a Content-Length body");
            return;
        }
        if (length > kMaxRequest) {
            answer(c, "413 Content Too Large", "body too large");
            return;
        }
        if (c.in.size() < end + 4 + length) {
            if (lower.find("\r\nexpect: 100-continue") != std::string::npos
                && c.in.size() == end + 4)
            {
                send(c, "HTTP/1.1 100 Continue\r\n\r\n");
            }
            return;
        }

        std::string  body = c.in.substr(end + 4, length);

        c.in.erase(0, end + 4 + length);
        on_request(c, head, body);
        if (!connections_.count(c.id)) {
            return;
        }
    }
}


void
Server::answer(Connection &c, const char *status, const char *body)
{
    std::string  text = std::string("{\"error\":{\"message\":\"") + body + "\"}}";

    counters_.bad_requests++;
    send(c, std::string("HTTP/1.1 ") + status + "\r\nContent-Type: application/json\r\n"
            "Content-Length: " + std::to_string(text.size()) + "\r\n\r\n" + text);
    if (status[0] != '4' || status[1] != '0' || status[2] != '4') {
        // Framing is lost after a request we could not read.
        shutdown(c.fd, SHUT_RD);
        c.in.clear();
        c.streaming = true;
    }
}


void
Server::on_request(Connection &c, const std::string &head, const std::string &body)
{
    json_t       *request, *messages, *message;
    std::string   prompt, model = "test";
    size_t        i;
    time_t        created = time(nullptr);

    counters_.requests++;
    if (head.rfind("GET /stats ", 0) == 0) {
        send_stats(c);
        return;
    }
    if (head.rfind("POST /v1/chat/completions ", 0) != 0) {
        answer(c, "404 Not Found", "not found");
        return;
    }

    request = json_loadb(body.data(), body.size(), 0, nullptr);
    messages = json_object_get(request, "messages");
    json_array_foreach(messages, i, message) {
        const char  *role = json_string_value(json_object_get(message, "role"));
        const char  *content = json_string_value(json_object_get(message, "content"));

        if (role && content && strcmp(role, "user") == 0) {
            prompt = content;
        }
    }
    if (const char *m = json_string_value(json_object_get(request, "model"))) {
        model = m;
    }
    json_decref(request);

    send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");

    c.prefix = "data: {\"id\":\"chatcmpl-test\",\"object\":\"chat.completion.chunk\",\"created\":"
               + std::to_string(created) + ",\"model\":\"" + json_escape(model)
               + "\",\"choices\":[{\"index\":0,\"delta\":";
    c.words = prompt_words(prompt);
    c.count = size_t(settings_.tokens);
    c.streaming = true;
    c.next = 0;
    c.start_ns = monotonic_ns();
    due_.emplace(c.start_ns + settings_.first_delay_ns, c.id);
    arm_timer();
}


// Token k's HTTP chunk: the first carries the keep-alive comment and the
// role-only chunk before it, the last the finish chunk, [DONE] and the
// end of the body after it.
std::string
Server::render(const Connection &c, size_t k) const
{
    std::string  data;

    if (k == 0) {
        data = ": keep-alive comment\n\n" + c.prefix + "{},\"finish_reason\":null}]}\n\n";
    }
    data += c.prefix + "{\"content\":\"" + c.words[k % c.words.size()] + "#"
            + std::to_string(k) + " \"},\"finish_reason\":null}]}\n\n";
    if (k + 1 == c.count) {
        data += c.prefix + "{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    }
    return http_chunk(data) + (k + 1 == c.count ? "0\r\n\r\n" : "");
}


// GET /stats: the counters as JSON, so that a benchmark can check that
// the server kept its schedule during a run (late_* stay near 0).
void
Server::send_stats(Connection &c)
{
    char  body[512];
    int   n;

    n = snprintf(body, sizeof(body),
                 "{\"connections\":%lu,\"requests\":%lu,\"completed\":%lu,"
                 "\"closed_early\":%lu,\"tokens\":%lu,\"late_1ms\":%lu,\"late_10ms\":%lu,"
                 "\"late_sum_us\":%ld,\"late_max_us\":%ld}",
                 counters_.connections, counters_.requests, counters_.completed,
                 counters_.closed_early, counters_.tokens, counters_.late_1ms,
                 counters_.late_10ms, counters_.late_sum_us, counters_.late_max_us);
    send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + std::to_string(n) + "\r\n\r\n" + std::string(body, size_t(n)));
}


void
Server::on_due()
{
    uint64_t  expirations;
    int64_t   now = monotonic_ns();

    (void) !read(timer_fd_, &expirations, sizeof(expirations));
    armed_ns_ = 0;

    while (!due_.empty() && due_.top().first <= now) {
        uint64_t  id = due_.top().second;
        auto      it = connections_.find(id);

        if (it == connections_.end()) {
            due_.pop();
            continue;
        }

        Connection  &c = *it->second;
        int64_t      late_us = (monotonic_ns() - due_.top().first) / 1000;

        due_.pop();
        counters_.late_1ms += late_us > 1000;
        counters_.late_10ms += late_us > 10000;
        counters_.late_sum_us += late_us;
        counters_.late_max_us = std::max(counters_.late_max_us, late_us);
        send(c, render(c, c.next));
        if (!connections_.count(id)) {
            continue;
        }
        counters_.tokens++;
        c.next++;
        if (c.next < c.count) {
            due_.emplace(c.start_ns + settings_.first_delay_ns
                         + int64_t(c.next) * settings_.delay_ns, id);
            continue;
        }
        counters_.completed++;
        c.streaming = false;
        if (!c.in.empty()) {
            on_readable(c);
        }
    }
    arm_timer();
}


void
Server::arm_timer()
{
    itimerspec  spec {};

    if (due_.empty() || (armed_ns_ != 0 && armed_ns_ <= due_.top().first)) {
        return;
    }
    armed_ns_ = due_.top().first;
    spec.it_value.tv_sec = armed_ns_ / 1000000000;
    spec.it_value.tv_nsec = armed_ns_ % 1000000000;
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}


void
Server::send(Connection &c, std::string_view data)
{
    c.out.append(data);
    flush(c);
}


void
Server::flush(Connection &c)
{
    while (!c.out.empty()) {
        ssize_t  n = write(c.fd, c.out.data(), c.out.size());

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        if (n < 0) {
            close_connection(c);
            return;
        }
        c.out.erase(0, size_t(n));
    }

    bool         want = !c.out.empty();
    epoll_event  ev {};

    if (want != c.want_write) {
        c.want_write = want;
        ev.events = EPOLLIN | (want ? uint32_t(EPOLLOUT) : 0u);
        ev.data.u64 = c.id;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    }
}


void
Server::close_connection(Connection &c)
{
    if (c.streaming && c.next < c.count) {
        counters_.closed_early++;
    }
    close(c.fd);
    connections_.erase(c.id);
}


bool
parse_settings(int argc, char **argv, Settings *s)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        char    *end;
        double   v = strtod(argv[i + 1], &end);

        if (*end != '\0' || v < 0 || v > 1e6) {
            return false;
        }
        if (strcmp(argv[i], "--port") == 0 && v <= 65535) {
            s->port = int(v);
        } else if (strcmp(argv[i], "--tokens") == 0 && v >= 1) {
            s->tokens = int(v);
        } else if (strcmp(argv[i], "--delay-ms") == 0) {
            s->delay_ns = int64_t(v * kNsPerMs);
        } else if (strcmp(argv[i], "--first-delay-ms") == 0) {
            s->first_delay_ns = int64_t(v * kNsPerMs);
        } else {
            return false;
        }
    }
    if (argc % 2 == 0) {
        return false;
    }
    if (s->first_delay_ns < 0) {
        s->first_delay_ns = s->delay_ns;
    }
    return true;
}

}  // namespace


int
main(int argc, char **argv)
{
    Settings  settings;

    if (!parse_settings(argc, argv, &settings)) {
        fprintf(stderr, "usage: provider-model-server [--port P] [--tokens N] "
                        "[--delay-ms D] [--first-delay-ms F]\n");
        return 2;
    }

    Server  server(settings);

    if (!server.open()) {
        return 1;
    }
    return server.run();
}
