// A small HTTP/1.1 server on a Unix socket, for the REST API behind nginx.
//
// Requests are parsed with libhttp-parser (Debian's libhttp-parser-dev). Connections are
// kept alive as HTTP/1.1 says, several requests may be pipelined, and every request is
// bounded: 8 KiB of URL, 16 KiB of headers, 64 KiB of body (413 beyond, as soon as a
// Content-Length says so). A malformed request gets 400 and the connection is closed.
// Errors are JSON problem bodies (RFC 9457). A connection idle for 60 s is closed.

#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "asio_util.h"
#include "json.h"
#include "status.h"

namespace signalrd {

struct HttpRequest {
    std::string method;     // "GET", "POST", ...
    std::string target;     // as sent: path and query
    std::string path;       // without the query
    std::string query;      // after '?', undecoded
    std::vector<std::pair<std::string, std::string>> headers;   // names lowercased
    std::string body;

    // The first header of that (lowercase) name, or nullptr.
    const std::string *header(std::string_view name) const;

    // The first query parameter of that name, percent-decoded ('+' is a space).
    std::optional<std::string> query_param(std::string_view name) const;
};

struct HttpResponse {
    int status = 200;
    std::string content_type;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;

    static HttpResponse json(int status, const json_t *body);
    static HttpResponse text(int status, std::string body);
    static HttpResponse empty(int status);
    // {"type":"about:blank","title":...,"status":...,"detail":...} plus extra's members.
    static HttpResponse problem(int status, const std::string &detail,
                                const json_t *extra = nullptr);
};

// The reason phrase of status ("Not Found"), or "Unknown".
const char *http_reason(int status);

using HttpHandler = std::function<asio::awaitable<HttpResponse>(const HttpRequest &)>;

struct HttpLimits {
    size_t max_url = 8 * 1024;
    size_t max_header_bytes = 16 * 1024;
    size_t max_body = 64 * 1024;
    size_t max_connections = 1024;
    std::chrono::milliseconds idle_timeout{60000};
};

class HttpServer {
public:
    HttpServer(asio::any_io_executor executor, HttpHandler handler, HttpLimits limits = {});

    Status listen(const std::string &path);
    // Stops accepting and closes idle connections; requests in progress finish.
    void stop();

    size_t connection_count() const { return connections_; }

private:
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(asio::local::stream_protocol::socket socket);

    asio::any_io_executor executor_;
    HttpHandler handler_;
    HttpLimits limits_;
    asio::local::stream_protocol::acceptor acceptor_;
    size_t connections_ = 0;
    bool stopped_ = false;
};

}  // namespace signalrd
