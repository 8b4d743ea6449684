#include "mock_hub.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <signalr/handshake.h>
#include <signalr/hub_message.h>
#include <signalr/negotiate.h>
#include <signalr/websocket.h>

#include "clock.h"
#include "event_loop.h"

namespace bench {

namespace {

std::string
make_uuid7()
{
    static uint64_t  counter = 0;
    char             buf[64];
    uint64_t         ms = uint64_t(wall_ns() / kNsPerMs);
    uint64_t         n = ++counter;

    snprintf(buf, sizeof(buf), "%08llx-%04llx-7%03llx-%04llx-%012llx",
             (unsigned long long) (ms >> 16),
             (unsigned long long) (ms & 0xffff),
             (unsigned long long) ((n >> 12) & 0xfff),
             (unsigned long long) (0x8000 | (n & 0xfff)),
             (unsigned long long) (n & 0xffffffffffffULL));

    return buf;
}


std::string
header_value(const std::string &head, const std::string &name)
{
    std::string  lower = head, key = "\r\n" + name + ":";

    for (auto &c : lower) {
        c = char(tolower(c));
    }
    for (auto &c : key) {
        c = char(tolower(c));
    }

    size_t  at = lower.find(key);
    if (at == std::string::npos) {
        return "";
    }

    size_t  start = head.find_first_not_of(' ', at + key.size());
    size_t  end = head.find("\r\n", start);

    return head.substr(start, end - start);
}

}  // namespace


class MockHub::Impl {
public:
    Impl(Config config, Counts &counts) : config_(config), counts_(counts) {}

    class Conn;

    Status listen_on(int *port);
    void run() { loop_.run(); }
    void wake_and_stop();

    EventLoop                           loop_;
    Config                              config_;
    Counts                             &counts_;
    int                                 listen_fd_ = -1;
    int                                 wake_fd_ = -1;
    std::set<std::string>               tokens_;    // negotiated
    std::vector<std::unique_ptr<Conn>>  conns_;

private:
    class Acceptor : public IoHandler {
    public:
        explicit Acceptor(Impl &impl) : impl_(impl) {}
        void on_io(uint32_t events) override;

    private:
        Impl  &impl_;
    };

    class Waker : public IoHandler {
    public:
        explicit Waker(Impl &impl) : impl_(impl) {}
        void on_io(uint32_t events) override { impl_.loop_.stop(); }

    private:
        Impl  &impl_;
    };

    Acceptor  acceptor_ {*this};
    Waker     waker_ {*this};
};


class MockHub::Impl::Conn : public IoHandler {
public:
    Conn(Impl &impl, int fd) : impl_(impl), fd_(fd)
    {
        sr_ws_parser_init(&ws_, SR_WS_ROLE_SERVER, 1024 * 1024);
    }

    ~Conn() override
    {
        close_now();
        sr_ws_parser_free(&ws_);
    }

    void on_io(uint32_t events) override;

private:
    void close_now();
    void write_raw(const std::string &data);
    void http_request(const std::string &head, const std::string &body);
    void respond(int status, const std::string &type,
                 const std::string &body);
    void upgrade(const std::string &head, const std::string &target);
    void ws_bytes(const unsigned char *data, size_t len);
    void hub_bytes();
    void hub_message(const sr_message_t &msg);
    void send_message(sr_message_t *msg);
    void send_fragment(const std::string &id, const char *sender,
                       const std::string &text, bool is_final);
    void next_token(std::string id, int k, int generation);
    bool authorized(const std::string &head);

    Impl            &impl_;
    int              fd_;
    std::string      in_;
    std::string      out_;
    bool             websocket_ = false;
    bool             handshaken_ = false;
    sr_protocol_t    protocol_ = SR_PROTOCOL_JSON;
    sr_ws_parser_t   ws_;
    std::string      hub_in_;
    std::string      stream_id_;
    int              stream_generation_ = 0;
};


void
MockHub::Impl::Conn::close_now()
{
    if (fd_ >= 0) {
        impl_.loop_.remove(fd_);
        ::close(fd_);
        fd_ = -1;
    }
    stream_generation_++;
}


void
MockHub::Impl::Conn::write_raw(const std::string &data)
{
    ssize_t  n;

    if (fd_ < 0) {
        return;
    }

    out_ += data;
    while (!out_.empty()) {
        n = send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        out_.erase(0, size_t(n));
    }

    impl_.loop_.modify(fd_, EPOLLIN | (out_.empty() ? 0u : EPOLLOUT), this);
}


void
MockHub::Impl::Conn::on_io(uint32_t events)
{
    char     buf[65536];
    ssize_t  n;

    if (fd_ < 0) {
        return;
    }

    if (events & EPOLLOUT) {
        write_raw("");
    }

    n = read(fd_, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        close_now();
        return;
    }
    if (n < 0) {
        return;
    }

    if (websocket_) {
        ws_bytes(reinterpret_cast<unsigned char *>(buf), size_t(n));
        return;
    }

    in_.append(buf, size_t(n));

    for (;;) {
        size_t  end = in_.find("\r\n\r\n");
        if (end == std::string::npos) {
            return;
        }

        std::string  head = in_.substr(0, end + 2);
        std::string  length = header_value(head, "Content-Length");
        size_t       body_len = length.empty() ? 0 : std::stoul(length);

        if (in_.size() < end + 4 + body_len) {
            return;
        }

        std::string  body = in_.substr(end + 4, body_len);
        in_.erase(0, end + 4 + body_len);
        http_request(head, body);

        if (websocket_ || fd_ < 0) {
            return;
        }
    }
}


void
MockHub::Impl::Conn::respond(int status, const std::string &type,
    const std::string &body)
{
    if (status >= 400) {
        impl_.counts_.refused++;
    }

    write_raw("HTTP/1.1 " + std::to_string(status) + " X\r\n"
              "Content-Type: " + type + "\r\n"
              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"
              + body);
}


bool
MockHub::Impl::Conn::authorized(const std::string &head)
{
    return header_value(head, "Authorization").rfind("Bearer tok-", 0) == 0;
}


void
MockHub::Impl::Conn::http_request(const std::string &head,
    const std::string &body)
{
    std::string  line = head.substr(0, head.find("\r\n"));
    std::string  method = line.substr(0, line.find(' '));
    std::string  target = line.substr(method.size() + 1,
                                      line.rfind(' ') - method.size() - 1);
    std::string  hub = "/api/v1/chats/stream";

    if (method == "GET" && target.rfind("/dev/token?sub=", 0) == 0) {
        respond(200, "text/plain", "tok-" + target.substr(15) + "\n");
        return;
    }

    if (!authorized(head)) {
        respond(401, "application/json", "{}");
        return;
    }

    if (method == "POST" && target == hub + "/negotiate?negotiateVersion=1") {
        char                     id[SR_RANDOM_ID_LEN + 1];
        char                     token[SR_RANDOM_ID_LEN + 1];
        sr_negotiate_response_t  res {};
        sr_buf_t                 out;

        sr_random_id(id, nullptr);
        sr_random_id(token, nullptr);
        res.version = 1;
        res.connection_id = id;
        res.connection_token = token;
        res.transports = SR_TRANSPORT_WEBSOCKETS;

        sr_buf_init(&out);
        sr_negotiate_write(&res, &out, nullptr);
        impl_.tokens_.insert(token);
        respond(200, "application/json",
                std::string(reinterpret_cast<char *>(out.data), out.len));
        sr_buf_free(&out);
        return;
    }

    if (method == "POST" && target == "/api/v1/chats") {
        respond(body.find("\"prompt\"") == std::string::npos ? 400 : 201,
                "application/json", "\"" + make_uuid7() + "\"");
        return;
    }

    if (method == "GET" && target.rfind(hub + "?id=", 0) == 0) {
        upgrade(head, target.substr(hub.size() + 4));
        return;
    }

    respond(404, "application/json", "{}");
}


void
MockHub::Impl::Conn::upgrade(const std::string &head,
    const std::string &token)
{
    char         accept[SR_WS_ACCEPT_LEN + 1];
    std::string  key = header_value(head, "Sec-WebSocket-Key");

    if (impl_.tokens_.erase(token) == 0) {
        respond(404, "application/json", "{}");
        return;
    }

    if (sr_ws_accept_key(key.data(), key.size(), accept, nullptr) != SR_OK)
    {
        respond(400, "application/json", "{}");
        return;
    }

    write_raw(std::string("HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: ") + accept + "\r\n\r\n");
    websocket_ = true;

    if (!in_.empty()) {
        std::string  rest = std::move(in_);
        ws_bytes(reinterpret_cast<const unsigned char *>(rest.data()),
                 rest.size());
    }
}


void
MockHub::Impl::Conn::ws_bytes(const unsigned char *data, size_t len)
{
    sr_ws_event_t  ev;
    sr_error_t     err;
    size_t         consumed;
    int            rc, code;
    sr_buf_t       out;

    while (len > 0 && fd_ >= 0) {
        rc = sr_ws_parser_feed(&ws_, data, len, &consumed, &ev, &code, &err);
        data += consumed;
        len -= consumed;

        if (rc == SR_AGAIN) {
            return;
        }
        if (rc != SR_OK) {
            close_now();
            return;
        }

        if (ev.opcode == SR_WS_OP_CLOSE) {
            sr_buf_init(&out);
            sr_ws_write_close(&out, SR_WS_CLOSE_NORMAL, "", nullptr);
            write_raw(std::string(reinterpret_cast<char *>(out.data),
                                  out.len));
            sr_buf_free(&out);
            close_now();
            return;
        }

        if (ev.opcode == SR_WS_OP_TEXT || ev.opcode == SR_WS_OP_BINARY) {
            hub_in_.append(reinterpret_cast<const char *>(ev.data), ev.len);
            hub_bytes();
        }
    }
}


void
MockHub::Impl::Conn::hub_bytes()
{
    const auto             *p = reinterpret_cast<const unsigned char *>(
                                    hub_in_.data());
    sr_handshake_request_t  req;
    sr_message_t            msg;
    sr_error_t              err;
    size_t                  consumed;
    sr_buf_t                out;
    int                     rc;

    if (!handshaken_) {
        rc = sr_handshake_parse_request(p, hub_in_.size(), 4096, &req,
                                        &consumed, &err);
        if (rc == SR_AGAIN) {
            return;
        }
        if (rc != SR_OK) {
            close_now();
            return;
        }

        protocol_ = req.protocol;
        handshaken_ = true;
        impl_.counts_.handshakes++;
        hub_in_.erase(0, consumed);

        sr_buf_init(&out);
        sr_handshake_write_response(&out, nullptr);
        sr_buf_t  frame;
        sr_buf_init(&frame);
        sr_ws_write_frame(&frame, protocol_ == SR_PROTOCOL_JSON
                                  ? SR_WS_OP_TEXT : SR_WS_OP_BINARY,
                          out.data, out.len, nullptr);
        write_raw(std::string(reinterpret_cast<char *>(frame.data),
                              frame.len));
        sr_buf_free(&frame);
        sr_buf_free(&out);
    }

    while (!hub_in_.empty() && fd_ >= 0) {
        p = reinterpret_cast<const unsigned char *>(hub_in_.data());
        rc = sr_message_decode(protocol_, p, hub_in_.size(), nullptr, &msg,
                               &consumed, &err);
        if (rc == SR_AGAIN) {
            return;
        }
        if (rc != SR_OK) {
            close_now();
            return;
        }

        hub_in_.erase(0, consumed);
        hub_message(msg);
        sr_message_clear(&msg);
    }
}


void
MockHub::Impl::Conn::send_message(sr_message_t *msg)
{
    sr_buf_t  payload, frame;

    if (msg == nullptr || fd_ < 0) {
        return;
    }

    sr_buf_init(&payload);
    sr_buf_init(&frame);

    if (sr_message_encode(protocol_, msg, &payload, nullptr) == SR_OK) {
        sr_ws_write_frame(&frame, protocol_ == SR_PROTOCOL_JSON
                                  ? SR_WS_OP_TEXT : SR_WS_OP_BINARY,
                          payload.data, payload.len, nullptr);
        write_raw(std::string(reinterpret_cast<char *>(frame.data),
                              frame.len));
    }

    sr_buf_free(&payload);
    sr_buf_free(&frame);
}


void
MockHub::Impl::Conn::hub_message(const sr_message_t &msg)
{
    sr_message_t  reply;

    switch (msg.type) {

    case SR_MSG_INVOCATION:
        impl_.counts_.invocations++;
        if (msg.invocation_id == nullptr) {
            return;
        }
        sr_message_init(&reply, SR_MSG_COMPLETION);
        reply.invocation_id = strdup(msg.invocation_id);
        reply.error = strdup("Method does not exist.");
        send_message(&reply);
        sr_message_clear(&reply);
        return;

    case SR_MSG_STREAM_INVOCATION:
        impl_.counts_.streams++;
        stream_id_ = msg.invocation_id ? msg.invocation_id : "";
        send_fragment(make_uuid7(), "user", "prompt", true);
        next_token(make_uuid7(), -1, stream_generation_);
        return;

    case SR_MSG_CANCEL_INVOCATION:
        impl_.counts_.cancels++;
        stream_generation_++;
        return;

    case SR_MSG_PING:
        impl_.counts_.pings++;
        return;

    default:
        return;
    }
}


void
MockHub::Impl::Conn::send_fragment(const std::string &id,
    const char *sender, const std::string &text, bool is_final)
{
    sr_message_t  item;

    sr_message_init(&item, SR_MSG_STREAM_ITEM);
    item.invocation_id = strdup(stream_id_.c_str());
    item.item = json_pack("{sssssssssb}", "id", id.c_str(),
                          "sender", sender, "text", text.c_str(),
                          "fragmentId", make_uuid7().c_str(),
                          "isFinal", is_final);
    send_message(&item);
    sr_message_clear(&item);
}


void
MockHub::Impl::Conn::next_token(std::string id, int k, int generation)
{
    int64_t  interval = int64_t(double(kNsPerSec) / impl_.config_.token_rate);
    bool     last = k + 1 == impl_.config_.reply_tokens;

    if (generation != stream_generation_ || fd_ < 0) {
        return;   // cancelled, or the connection is gone
    }

    if (k >= 0) {
        send_fragment(id, "assistant", "token" + std::to_string(k) + " ",
                      last);
        if (last) {
            return;
        }
    }

    impl_.loop_.add_timer(interval, [this, id, k, generation] {
        next_token(id, k + 1, generation);
    });
}


void
MockHub::Impl::Acceptor::on_io(uint32_t events)
{
    int  fd;

    while ((fd = accept4(impl_.listen_fd_, nullptr, nullptr,
                         SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
    {
        int  one = 1;

        // As nginx does: without it, small frames wait for delayed ACKs.
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        impl_.conns_.push_back(std::make_unique<Conn>(impl_, fd));
        impl_.loop_.add(fd, EPOLLIN, impl_.conns_.back().get());
    }
}


Status
MockHub::Impl::listen_on(int *port)
{
    sockaddr_in  addr {};
    socklen_t    len = sizeof(addr);

    Status  s = loop_.init();
    if (!s.ok()) {
        return s;
    }

    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (listen_fd_ < 0
        || bind(listen_fd_, reinterpret_cast<sockaddr *>(&addr),
                sizeof(addr)) != 0
        || listen(listen_fd_, 1024) != 0
        || getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&addr),
                       &len) != 0)
    {
        return Status::Error(std::string("mock hub: ") + strerror(errno));
    }

    *port = ntohs(addr.sin_port);

    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop_.add(listen_fd_, EPOLLIN, &acceptor_);
    loop_.add(wake_fd_, EPOLLIN, &waker_);

    return Status::Ok();
}


void
MockHub::Impl::wake_and_stop()
{
    uint64_t  one = 1;

    if (write(wake_fd_, &one, sizeof(one)) < 0) {
        loop_.stop();
    }
}


MockHub::MockHub(Config config)
    : config_(config)
{
}


MockHub::~MockHub()
{
    stop();
}


Status
MockHub::start()
{
    impl_ = std::make_unique<Impl>(config_, counts_);

    Status  s = impl_->listen_on(&port_);
    if (!s.ok()) {
        return s;
    }

    thread_ = std::thread([this] { impl_->run(); });

    return Status::Ok();
}


void
MockHub::stop()
{
    if (thread_.joinable()) {
        impl_->wake_and_stop();
        thread_.join();
    }

    if (impl_ != nullptr) {
        impl_->conns_.clear();
        close(impl_->listen_fd_);
        close(impl_->wake_fd_);
        impl_.reset();
    }
}

}  // namespace bench
