// signalr-bench-floor: the physical floor of the broadcast benchmark.
// One epoll loop a process that upgrades WebSocket connections and, for
// every POST /publish, frames the body once and writes those same bytes
// to every subscriber: no protocol, no per-connection encoding, no copy
// but the kernel's. What the edge and its peers cost beyond this is
// their own work.
//
//   signalr-bench-floor PORT [PROCS]   listens on 127.0.0.1:PORT
//
// PROCS processes (default: one per core) share the port through
// SO_REUSEPORT, as nginx's workers do in the benchmark; a process that
// takes a publish hands the body to the others over a datagram socket
// each, so that every subscriber gets every message.
//
// Design note: written by hand rather than on a server library because
// the point is to measure nothing but epoll and write(); the WebSocket
// accept key and framing come from the project's shared library.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include <signalr/buf.h>
#include <signalr/websocket.h>

namespace {

constexpr size_t  kMaxRequest = 64 * 1024;

struct Conn {
    int          fd = -1;
    bool         subscriber = false;
    std::string  in;
    std::string  out;     // what write() did not take yet
    size_t       out_sent = 0;
    bool         want_out = false;
};

int                                     epfd = -1;
std::unordered_map<int, Conn>           conns;
std::vector<int>                        subscribers;
int                                     inbox = -1;    // from the others
std::vector<int>                        outboxes;      // to the others


void
drop(int fd)
{
    auto  it = conns.find(fd);

    if (it == conns.end()) {
        return;
    }

    if (it->second.subscriber) {
        for (size_t i = 0; i < subscribers.size(); i++) {
            if (subscribers[i] == fd) {
                subscribers[i] = subscribers.back();
                subscribers.pop_back();
                break;
            }
        }
    }

    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(it);
}


void
interest(Conn &c, bool want_out)
{
    epoll_event  ev {};

    if (c.want_out == want_out) {
        return;
    }

    c.want_out = want_out;
    ev.events = want_out ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    ev.data.fd = c.fd;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
}


// Writes what is queued, then data; queues what the socket refuses.
bool
send_bytes(Conn &c, const char *data, size_t len)
{
    ssize_t  n;

    if (c.out_sent < c.out.size()) {
        c.out.append(data, len);
        return true;
    }

    c.out.clear();
    c.out_sent = 0;

    n = write(c.fd, data, len);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
    }
    if (n < 0) {
        n = 0;
    }

    if (size_t(n) < len) {
        c.out.assign(data + n, len - size_t(n));
        interest(c, true);
    }

    return true;
}


void
flush(Conn &c)
{
    ssize_t  n;

    while (c.out_sent < c.out.size()) {
        n = write(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            drop(c.fd);
            return;
        }
        c.out_sent += size_t(n);
    }

    c.out.clear();
    c.out_sent = 0;
    interest(c, false);
}


// The value of header name in the head of a request, or "".
std::string
header(const std::string &head, const char *name)
{
    size_t  len = strlen(name), pos = 0, eol, colon;

    while ((eol = head.find("\r\n", pos)) != std::string::npos) {
        colon = head.find(':', pos);
        if (colon != std::string::npos && colon < eol && colon - pos == len
            && strncasecmp(head.data() + pos, name, len) == 0)
        {
            size_t  v = head.find_first_not_of(' ', colon + 1);
            return head.substr(v, eol - v);
        }
        pos = eol + 2;
    }

    return "";
}


void
broadcast(const std::string &body)
{
    sr_buf_t  frame;
    int       fd;

    sr_buf_init(&frame);
    if (sr_ws_write_frame(&frame, SR_WS_OP_TEXT,
                          reinterpret_cast<const unsigned char *>(body.data()),
                          body.size(), nullptr) != SR_OK)
    {
        sr_buf_free(&frame);
        return;
    }

    for (size_t i = 0; i < subscribers.size(); i++) {
        fd = subscribers[i];
        if (!send_bytes(conns[fd], reinterpret_cast<char *>(frame.data),
                        frame.len))
        {
            drop(fd);
            i--;
        }
    }

    sr_buf_free(&frame);
}


bool
upgrade(Conn &c, const std::string &head)
{
    char         accept[SR_WS_ACCEPT_LEN + 1];
    sr_error_t   err;
    std::string  key = header(head, "Sec-WebSocket-Key");

    if (sr_ws_accept_key(key.data(), key.size(), accept, &err) != SR_OK) {
        return false;
    }

    std::string  res = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: " + std::string(accept)
                       + "\r\n\r\n";

    c.subscriber = true;
    c.in.clear();
    subscribers.push_back(c.fd);

    return send_bytes(c, res.data(), res.size());
}


// Handles the whole requests in c.in; false drops the connection.
bool
serve(Conn &c)
{
    static const char  no_content[] = "HTTP/1.1 204 No Content\r\n\r\n";
    size_t             end, body_len;

    while ((end = c.in.find("\r\n\r\n")) != std::string::npos) {
        std::string  head = c.in.substr(0, end + 2);

        if (head.rfind("GET ", 0) == 0) {
            return upgrade(c, head);
        }

        if (head.rfind("POST /publish", 0) != 0) {
            return false;
        }

        body_len = strtoul(header(head, "Content-Length").c_str(),
                           nullptr, 10);
        if (body_len > kMaxRequest) {
            return false;
        }
        if (c.in.size() < end + 4 + body_len) {
            return true;
        }

        std::string  body = c.in.substr(end + 4, body_len);

        broadcast(body);
        for (int fd : outboxes) {
            // blocking: a sibling that is behind slows the publisher,
            // as a full socket would
            (void) send(fd, body.data(), body.size(), 0);
        }
        c.in.erase(0, end + 4 + body_len);

        if (!send_bytes(c, no_content, sizeof(no_content) - 1)) {
            return false;
        }
    }

    return c.in.size() <= kMaxRequest;
}


void
on_readable(int fd)
{
    char     buf[65536];
    ssize_t  n;

    for (;;) {
        n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            drop(fd);
            return;
        }

        Conn  &c = conns[fd];

        // What subscribers send (pings, the close) needs no answer here.
        if (c.subscriber) {
            continue;
        }

        c.in.append(buf, size_t(n));
        if (!serve(c)) {
            drop(fd);
            return;
        }
    }
}


void
on_accept(int lfd)
{
    epoll_event  ev {};
    int          fd, one = 1;

    while ((fd = accept4(lfd, nullptr, nullptr,
                         SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
    {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conns[fd].fd = fd;
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}


int
listen_on(int port)
{
    sockaddr_in  a {};
    int          fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0
        || listen(fd, 4096) != 0)
    {
        fprintf(stderr, "signalr-bench-floor: bind() or listen() on port "
                "%d failed: %s\n", port, strerror(errno));
        return -1;
    }

    return fd;
}


void
on_inbox()
{
    char     buf[kMaxRequest];
    ssize_t  n;

    while ((n = recv(inbox, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        broadcast(std::string(buf, size_t(n)));
    }
}


int
serve_forever(int port)
{
    epoll_event  ev {}, events[512];
    int          lfd, n;

    lfd = listen_on(port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || epfd < 0) {
        return 1;
    }

    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    if (inbox >= 0) {
        ev.data.fd = inbox;
        epoll_ctl(epfd, EPOLL_CTL_ADD, inbox, &ev);
    }

    for (;;) {
        n = epoll_wait(epfd, events, 512, -1);
        for (int i = 0; i < n; i++) {
            int  fd = events[i].data.fd;

            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            if (fd == inbox) {
                on_inbox();
                continue;
            }
            if (conns.find(fd) == conns.end()) {
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                flush(conns[fd]);
            }
            if (conns.find(fd) != conns.end()
                && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            {
                on_readable(fd);
            }
        }
    }
}

}  // namespace


int
main(int argc, char **argv)
{
    std::vector<std::array<int, 2>>  pairs;
    long                             procs, me = 0;
    int                              port;

    port = argc >= 2 ? atoi(argv[1]) : 0;
    procs = argc >= 3 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
    if (argc > 3 || port <= 0 || port > 65535 || procs < 1 || procs > 64) {
        fprintf(stderr, "usage: signalr-bench-floor PORT [PROCS]\n");
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);

    // one datagram pair a process: [0] its inbox, [1] the others' way in
    for (long i = 0; i < procs && procs > 1; i++) {
        std::array<int, 2>  p;

        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, p.data())
            != 0)
        {
            perror("signalr-bench-floor: socketpair()");
            return 1;
        }
        pairs.push_back(p);
    }

    // this process serves as the first, its children as the others and
    // stop with it
    for (long i = 1; i < procs; i++) {
        pid_t  pid = fork();

        if (pid < 0) {
            perror("signalr-bench-floor: fork()");
            return 1;
        }
        if (pid == 0) {
            me = i;
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            break;
        }
    }

    for (long j = 0; j < long(pairs.size()); j++) {
        if (j == me) {
            inbox = pairs[j][0];
        } else {
            outboxes.push_back(pairs[j][1]);
        }
    }

    return serve_forever(port);
}
