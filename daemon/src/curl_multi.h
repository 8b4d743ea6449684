// libcurl's multi interface on the daemon's Asio loop: every transfer shares one CURLM,
// whose sockets are watched with asio::posix::stream_descriptor and whose timeout is one
// steady_timer (CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION). No thread per
// request: a thousand streams are a thousand easy handles on the one loop.
//
// Everything here runs on the loop's thread. libcurl's callbacks never throw into C:
// they only record state, and the handlers they lead to report errors as values.

#pragma once

#include <functional>
#include <memory>
#include <string_view>
#include <unordered_map>

#include <curl/curl.h>

#include "asio_util.h"

namespace signalrd {

// One HTTP transfer on a CurlMulti. The owner configures easy() (URL, body, headers,
// options), then calls CurlMulti::start(). on_data sees the response body as it comes;
// on_done runs once, with libcurl's result, unless the transfer is aborted first.
class CurlTransfer {
public:
    using DataHandler = std::function<bool(std::string_view bytes)>;   // false: abort
    using DoneHandler = std::function<void(CURLcode result)>;

    CurlTransfer();
    ~CurlTransfer();
    CurlTransfer(const CurlTransfer &) = delete;
    CurlTransfer &operator=(const CurlTransfer &) = delete;

    CURL *easy() const { return easy_; }

    // Adds a request header; the list lives as long as the transfer.
    void add_header(const char *line);

    void on_data(DataHandler handler) { on_data_ = std::move(handler); }
    void on_done(DoneHandler handler) { on_done_ = std::move(handler); }

    // HTTP status of the answer, 0 before its status line.
    long response_code() const;

private:
    friend class CurlMulti;

    static size_t write_callback(char *data, size_t size, size_t count, void *self);

    CURL *easy_;
    curl_slist *headers_ = nullptr;
    DataHandler on_data_;
    DoneHandler on_done_;
    class CurlMulti *multi_ = nullptr;   // set while the transfer runs
};

class CurlMulti {
public:
    explicit CurlMulti(asio::any_io_executor executor);
    ~CurlMulti();
    CurlMulti(const CurlMulti &) = delete;
    CurlMulti &operator=(const CurlMulti &) = delete;

    // Starts transfer; it must outlive its run (until on_done or abort()).
    void start(CurlTransfer &transfer);

    // Stops transfer now if it runs: its connection is closed at once (libcurl does not
    // keep a connection whose answer was not read to the end) and on_done is not called.
    void abort(CurlTransfer &transfer);

    size_t running() const { return transfers_.size(); }

private:
    struct Socket;

    static int socket_callback(CURL *easy, curl_socket_t fd, int what, void *self, void *data);
    static int timer_callback(CURLM *multi, long timeout_ms, void *self);

    void watch(curl_socket_t fd, int what, Socket *socket);
    void arm(const std::shared_ptr<Socket> &socket);
    void on_ready(const std::shared_ptr<Socket> &socket, int direction);
    void on_timeout();
    void act(curl_socket_t fd, int events);
    void collect_done();

    asio::any_io_executor executor_;
    CURLM *multi_;
    asio::steady_timer timer_;
    std::unordered_map<curl_socket_t, std::shared_ptr<Socket>> sockets_;
    std::unordered_map<CURL *, CurlTransfer *> transfers_;
    std::shared_ptr<bool> alive_;   // lets posted work see that the multi is gone
};

}  // namespace signalrd
