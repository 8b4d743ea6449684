// A non-blocking TCP client connection on the event loop: connect from
// a chosen source address, write with an unbounded queue (the benchmark
// controls what it sends), read everything the socket has.

#ifndef SIGNALR_BENCH_TCP_STREAM_H
#define SIGNALR_BENCH_TCP_STREAM_H

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "event_loop.h"
#include "status.h"

namespace bench {

class TcpStreamHandler {
public:
    virtual ~TcpStreamHandler() = default;

    virtual void on_connected() = 0;
    virtual void on_data(const unsigned char *data, size_t len) = 0;

    // The connection is gone: reason is "closed by peer" or the failing
    // call. Not called after the owner's own close().
    virtual void on_closed(const std::string &reason) = 0;
};


class TcpStream : public IoHandler {
public:
    TcpStream(EventLoop &loop, TcpStreamHandler *handler);
    ~TcpStream() override;

    TcpStream(const TcpStream &) = delete;
    TcpStream &operator=(const TcpStream &) = delete;

    // Starts connecting (again, when closed) to dst, from source when
    // it is not null (port chosen by the kernel at connect time, so that
    // many sources each get their own ephemeral range).
    Status connect(const sockaddr_in &dst, const sockaddr_in *source);

    // The same to a Unix stream socket (a daemon's own HTTP socket).
    Status connect_unix(const std::string &path);

    void set_handler(TcpStreamHandler *handler) { handler_ = handler; }

    void write(const void *data, size_t len);

    // Closes once everything queued is written.
    void close_after_flush();

    // Closes now; the handler hears nothing more.
    void close();

    bool is_open() const { return fd_ >= 0; }
    bool is_connected() const { return connected_; }
    size_t queued() const { return out_.size() - out_sent_; }

    void on_io(uint32_t events) override;

private:
    void handle_connect();
    void handle_read();
    void flush();
    Status begin_connect(int family);
    Status finish_connect(const sockaddr *dst, socklen_t len);
    void update_interest();
    void fail(const std::string &reason);

    EventLoop         &loop_;
    TcpStreamHandler  *handler_;
    int                fd_ = -1;
    uint64_t           generation_ = 0;   // counts connect() calls
    bool               connected_ = false;
    bool               want_write_ = false;
    bool               close_when_flushed_ = false;
    std::string        out_;
    size_t             out_sent_ = 0;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_TCP_STREAM_H
