// HTTP/1.1 client side: requests as strings, responses parsed with
// Debian's libhttp-parser (incremental, keep-alive and 101 aware).

#ifndef SIGNALR_BENCH_HTTP_H
#define SIGNALR_BENCH_HTTP_H

#include <http_parser.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bench {

struct HttpResponse {
    int                                               status = 0;
    std::vector<std::pair<std::string, std::string>>  headers;
    std::string                                       body;
    bool                                              upgraded = false;

    // The first header of that name (any case), or "" when absent.
    std::string header(std::string_view name) const;
};


// One request: "METHOD target HTTP/1.1", Host, the extra header lines
// (each "Name: value"), Content-Length when body is not empty.
std::string http_request(std::string_view method, std::string_view target,
    std::string_view host, const std::vector<std::string> &headers,
    std::string_view body);


class HttpResponseParser {
public:
    enum class Result { kNeedMore, kComplete, kError };

    // Bounds a response, headers and body together, so that a broken
    // server cannot grow the benchmark without limit.
    static constexpr size_t kMaxResponse = 1024 * 1024;

    HttpResponseParser();

    // Feeds bytes. kComplete: response() is whole and *consumed bytes
    // of data belong to it (the rest is the next response or, after a
    // 101, WebSocket frames). kNeedMore: all taken. kError: error().
    // Feeding len 0 means the peer closed the connection.
    Result feed(const char *data, size_t len, size_t *consumed);

    // Takes the completed response and readies for the next one.
    HttpResponse take();

    const std::string &error() const { return error_; }

private:
    static int on_status(http_parser *p, const char *at, size_t len);
    static int on_header_field(http_parser *p, const char *at, size_t len);
    static int on_header_value(http_parser *p, const char *at, size_t len);
    static int on_headers_complete(http_parser *p);
    static int on_body(http_parser *p, const char *at, size_t len);
    static int on_message_complete(http_parser *p);

    bool grow(size_t len);

    http_parser           parser_;
    http_parser_settings  settings_;
    HttpResponse          response_;
    bool                  in_value_ = false;
    bool                  complete_ = false;
    size_t                size_ = 0;
    std::string           error_;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_HTTP_H
