#include "tcp_stream.h"

#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bench {

namespace {

constexpr size_t  kReadChunk = 64 * 1024;

std::string
errno_reason(const char *call, int err)
{
    return std::string(call) + " failed: " + strerror(err);
}

}  // namespace


TcpStream::TcpStream(EventLoop &loop, TcpStreamHandler *handler)
    : loop_(loop), handler_(handler)
{
}


TcpStream::~TcpStream()
{
    close();
}


Status
TcpStream::begin_connect(int family)
{
    close();
    generation_++;
    connected_ = false;
    close_when_flushed_ = false;
    out_.clear();
    out_sent_ = 0;

    fd_ = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        return Status::Error(errno_reason("socket()", errno));
    }

    return Status::Ok();
}


Status
TcpStream::finish_connect(const sockaddr *dst, socklen_t len)
{
    if (::connect(fd_, dst, len) != 0 && errno != EINPROGRESS
        && errno != EAGAIN)
    {
        int  err = errno;
        close();
        return Status::Error(errno_reason("connect()", err));
    }

    want_write_ = true;
    Status  s = loop_.add(fd_, EPOLLIN | EPOLLOUT, this);
    if (!s.ok()) {
        close();
    }

    return s;
}


Status
TcpStream::connect(const sockaddr_in &dst, const sockaddr_in *source)
{
    int     one = 1;
    Status  s = begin_connect(AF_INET);

    if (!s.ok()) {
        return s;
    }

    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (source != nullptr) {
        // Leave the port to connect(): a port is then unique per
        // (source, destination) pair, not per source address alone.
        setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof(one));

        if (bind(fd_, reinterpret_cast<const sockaddr *>(source),
                 sizeof(*source)) != 0)
        {
            int  err = errno;
            close();
            return Status::Error(errno_reason("bind()", err));
        }
    }

    return finish_connect(reinterpret_cast<const sockaddr *>(&dst),
                          sizeof(dst));
}


Status
TcpStream::connect_unix(const std::string &path)
{
    sockaddr_un  dst {};

    if (path.size() >= sizeof(dst.sun_path)) {
        return Status::Error("connect(): socket path too long");
    }

    Status  s = begin_connect(AF_UNIX);
    if (!s.ok()) {
        return s;
    }

    dst.sun_family = AF_UNIX;
    memcpy(dst.sun_path, path.data(), path.size());

    return finish_connect(reinterpret_cast<const sockaddr *>(&dst),
                          sizeof(dst));
}


void
TcpStream::write(const void *data, size_t len)
{
    if (fd_ < 0) {
        return;
    }

    out_.append(static_cast<const char *>(data), len);

    if (connected_) {
        flush();
    }
}


void
TcpStream::close_after_flush()
{
    close_when_flushed_ = true;

    if (connected_ && queued() == 0) {
        close();
    }
}


void
TcpStream::close()
{
    if (fd_ < 0) {
        return;
    }

    loop_.remove(fd_);
    ::close(fd_);
    fd_ = -1;
    connected_ = false;
}


void
TcpStream::on_io(uint32_t events)
{
    uint64_t  generation = generation_;

    if (fd_ < 0) {
        return;  // a stale event of the batch that closed us
    }

    if (!connected_) {
        handle_connect();
        return;
    }

    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        handle_read();
    }

    // A handler may have closed the socket, or even opened a new one.
    if (fd_ >= 0 && generation == generation_ && (events & EPOLLOUT)) {
        flush();
    }
}


void
TcpStream::handle_connect()
{
    int        err = 0;
    socklen_t  len = sizeof(err);

    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }

    if (err != 0) {
        fail(errno_reason("connect()", err));
        return;
    }

    connected_ = true;
    handler_->on_connected();

    if (fd_ >= 0) {
        flush();
    }
}


void
TcpStream::handle_read()
{
    unsigned char  buf[kReadChunk];
    ssize_t        n;
    uint64_t       generation = generation_;

    while (fd_ >= 0 && generation == generation_) {
        n = read(fd_, buf, sizeof(buf));

        if (n > 0) {
            handler_->on_data(buf, size_t(n));

            // The socket is level-triggered: a short read drained it, and
            // whatever comes next raises a new event. Reading again only
            // to see EAGAIN would double the generator's syscalls per
            // delivery, and at 10,000 subscribers the generator is the
            // bottleneck of every server it measures.
            if (size_t(n) < sizeof(buf)) {
                return;
            }

            continue;
        }

        if (n == 0) {
            fail("closed by peer");
            return;
        }

        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        }

        if (errno != EINTR) {
            fail(errno_reason("read()", errno));
            return;
        }
    }
}


void
TcpStream::flush()
{
    ssize_t  n;

    while (fd_ >= 0 && queued() > 0) {
        n = ::send(fd_, out_.data() + out_sent_, queued(), MSG_NOSIGNAL);

        if (n > 0) {
            out_sent_ += size_t(n);
            continue;
        }

        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }

        if (n < 0 && errno == EINTR) {
            continue;
        }

        fail(errno_reason("send()", errno));
        return;
    }

    if (fd_ < 0) {
        return;
    }

    if (queued() == 0) {
        out_.clear();
        out_sent_ = 0;

        if (close_when_flushed_) {
            close();
            return;
        }
    }

    update_interest();
}


void
TcpStream::update_interest()
{
    bool  want = queued() > 0;

    if (want == want_write_) {
        return;
    }

    want_write_ = want;
    loop_.modify(fd_, EPOLLIN | (want ? EPOLLOUT : 0u), this);
}


void
TcpStream::fail(const std::string &reason)
{
    close();
    handler_->on_closed(reason);
}

}  // namespace bench
