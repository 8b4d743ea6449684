// A keep-alive HTTP/1.1 connection that sends one request at a time,
// in order, and can hand its socket over after a 101 response.

#ifndef SIGNALR_BENCH_HTTP_CLIENT_H
#define SIGNALR_BENCH_HTTP_CLIENT_H

#include <netinet/in.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "http.h"
#include "status.h"
#include "tcp_stream.h"

namespace bench {

class HttpClient : public TcpStreamHandler {
public:
    // Called once per request: a transport or parse failure as a
    // Status, or the response (any status code).
    using Callback = std::function<void(const Status &, HttpResponse &)>;

    HttpClient(EventLoop &loop, const sockaddr_in &dst,
               const sockaddr_in *source);

    // To a Unix socket instead (unix_path not empty).
    HttpClient(EventLoop &loop, std::string unix_path);

    // Queues a whole request (see http_request()). Connects first when
    // there is no connection, and again after the server closed an idle
    // one.
    void send(std::string request, Callback done);

    // Opens the connection now rather than at the first request, so
    // that a later request does not pay for (or queue on) the connect.
    void preconnect();

    // After a 101: takes the socket, with the bytes that came after the
    // response in *leftover. The client is closed afterwards.
    std::unique_ptr<TcpStream> take_stream(std::string *leftover);

    void close();

    void on_connected() override;
    void on_data(const unsigned char *data, size_t len) override;
    void on_closed(const std::string &reason) override;

private:
    struct Pending {
        std::string  request;
        Callback     done;
    };

    void start_next();
    void fail_all(const std::string &reason);
    Status connect_stream();

    EventLoop                   &loop_;
    sockaddr_in                  dst_;
    sockaddr_in                  source_ {};
    bool                         has_source_;
    std::string                  unix_path_;
    std::unique_ptr<TcpStream>   stream_;
    HttpResponseParser           parser_;
    std::deque<Pending>          queue_;
    bool                         in_flight_ = false;
    std::string                  leftover_;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_HTTP_CLIENT_H
