#include "http_server.h"

#include <cctype>
#include <memory>

#include <http_parser.h>

#include "socket_util.h"

namespace signalrd {

namespace {

int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view s)
{
    std::string out;

    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '+') {
            out.push_back(' ');
        } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
                   hex_value(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

}  // namespace

const std::string *HttpRequest::header(std::string_view name) const
{
    for (const auto &[n, v] : headers) {
        if (n == name) {
            return &v;
        }
    }
    return nullptr;
}

std::optional<std::string> HttpRequest::query_param(std::string_view name) const
{
    std::string_view rest = query;

    while (!rest.empty()) {
        size_t amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);

        size_t eq = pair.find('=');
        std::string key = percent_decode(pair.substr(0, eq));
        if (key == name) {
            return eq == std::string_view::npos ? std::string()
                                                : percent_decode(pair.substr(eq + 1));
        }
    }
    return std::nullopt;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

HttpResponse HttpResponse::json(int status, const json_t *body)
{
    return {status, "application/json; charset=utf-8", json_text(body), {}};
}

HttpResponse HttpResponse::text(int status, std::string body)
{
    return {status, "text/plain; charset=utf-8", std::move(body), {}};
}

HttpResponse HttpResponse::empty(int status)
{
    return {status, "", "", {}};
}

HttpResponse HttpResponse::problem(int status, const std::string &detail, const json_t *extra)
{
    Json body = Json::object();

    json_set_string(body.get(), "type", "about:blank");
    json_set_string(body.get(), "title", http_reason(status));
    json_object_set_new(body.get(), "status", json_integer(status));
    json_set_string(body.get(), "detail", detail);
    if (extra != nullptr) {
        json_object_update(body.get(), const_cast<json_t *>(extra));
    }
    return {status, "application/problem+json", json_text(body.get()), {}};
}

namespace {

// What the parser callbacks build; parser.data points here.
struct ParseState {
    const HttpLimits *limits = nullptr;
    HttpRequest request;
    std::string field;
    std::string value;
    bool in_value = false;
    bool complete = false;
    size_t header_bytes = 0;
    int error_status = 0;       // set by a callback that refuses the request
    std::string error_detail;

    void reset()
    {
        request = HttpRequest();
        field.clear();
        value.clear();
        in_value = false;
        complete = false;
        header_bytes = 0;
    }

    int refuse(int status, std::string detail)
    {
        error_status = status;
        error_detail = std::move(detail);
        return -1;
    }

    void end_header()
    {
        if (in_value || !field.empty()) {
            for (char &c : field) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            request.headers.emplace_back(std::move(field), std::move(value));
            field.clear();
            value.clear();
            in_value = false;
        }
    }
};

ParseState &state_of(http_parser *p)
{
    return *static_cast<ParseState *>(p->data);
}

int on_url(http_parser *p, const char *at, size_t len)
{
    ParseState &st = state_of(p);
    if (st.request.target.size() + len > st.limits->max_url) {
        return st.refuse(400, "request target too long");
    }
    st.request.target.append(at, len);
    return 0;
}

int on_header_field(http_parser *p, const char *at, size_t len)
{
    ParseState &st = state_of(p);
    if (st.in_value) {
        st.end_header();
    }
    st.header_bytes += len;
    if (st.header_bytes > st.limits->max_header_bytes) {
        return st.refuse(400, "request headers too large");
    }
    st.field.append(at, len);
    return 0;
}

int on_header_value(http_parser *p, const char *at, size_t len)
{
    ParseState &st = state_of(p);
    st.in_value = true;
    st.header_bytes += len;
    if (st.header_bytes > st.limits->max_header_bytes) {
        return st.refuse(400, "request headers too large");
    }
    st.value.append(at, len);
    return 0;
}

int on_headers_complete(http_parser *p)
{
    ParseState &st = state_of(p);
    st.end_header();
    // ULLONG_MAX: no Content-Length (chunked or none); on_body counts then
    if (p->content_length != ULLONG_MAX && p->content_length > st.limits->max_body) {
        return st.refuse(413, "request body over " + std::to_string(st.limits->max_body) +
                                  " bytes");
    }
    st.request.method = http_method_str(static_cast<http_method>(p->method));
    return 0;
}

int on_body(http_parser *p, const char *at, size_t len)
{
    ParseState &st = state_of(p);
    if (st.request.body.size() + len > st.limits->max_body) {
        return st.refuse(413, "request body over " + std::to_string(st.limits->max_body) +
                                  " bytes");
    }
    st.request.body.append(at, len);
    return 0;
}

int on_message_complete(http_parser *p)
{
    ParseState &st = state_of(p);
    st.complete = true;
    // stop here: the request is answered before the next pipelined one is parsed
    http_parser_pause(p, 1);
    return 0;
}

int on_message_begin(http_parser *p)
{
    state_of(p).reset();
    return 0;
}

http_parser_settings parser_settings()
{
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;
    s.on_body = on_body;
    s.on_message_complete = on_message_complete;
    return s;
}

void split_target(HttpRequest &r)
{
    size_t q = r.target.find('?');
    r.path = r.target.substr(0, q);
    r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
}

std::string serialize(const HttpResponse &res, bool keep_alive)
{
    std::string out = "HTTP/1.1 " + std::to_string(res.status) + " " + http_reason(res.status) +
                      "\r\n";
    if (!res.content_type.empty()) {
        out += "Content-Type: " + res.content_type + "\r\n";
    }
    if (res.status != 204) {
        out += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
    }
    for (const auto &[name, value] : res.headers) {
        out += name + ": " + value + "\r\n";
    }
    if (!keep_alive) {
        out += "Connection: close\r\n";
    }
    out += "\r\n";
    if (res.status != 204) {
        out += res.body;
    }
    return out;
}

}  // namespace

HttpServer::HttpServer(asio::any_io_executor executor, HttpHandler handler, HttpLimits limits)
    : executor_(executor), handler_(std::move(handler)), limits_(limits), acceptor_(executor)
{
}

Status HttpServer::listen(const std::string &path)
{
    Status s = listen_unix(acceptor_, path);
    if (s.is_ok()) {
        spawn_detached(executor_, accept_loop(), "http accept");
    }
    return s;
}

void HttpServer::stop()
{
    asio::error_code ignored;
    stopped_ = true;
    acceptor_.close(ignored);
}

asio::awaitable<void> HttpServer::accept_loop()
{
    while (acceptor_.is_open()) {
        auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
                break;
            }
            log_error("accept() on the http socket failed: %s", ec.message().c_str());
            asio::steady_timer pause(executor_, std::chrono::milliseconds(100));
            co_await pause.async_wait(use_nothrow);
            continue;
        }
        if (connections_ >= limits_.max_connections) {
            asio::error_code ignored;
            socket.close(ignored);
            continue;
        }
        spawn_detached(executor_, session(std::move(socket)), "http session");
    }
}

namespace {

// One connection's socket and idle deadline, shared with the watchdog that closes the
// socket when the deadline passes.
struct HttpConnection {
    explicit HttpConnection(asio::local::stream_protocol::socket s)
        : socket(std::move(s)), timer(socket.get_executor())
    {
    }

    asio::local::stream_protocol::socket socket;
    asio::steady_timer timer;
    std::chrono::steady_clock::time_point deadline;
    bool done = false;
};

asio::awaitable<void> watch_idle(std::shared_ptr<HttpConnection> c)
{
    while (!c->done) {
        c->timer.expires_at(c->deadline);
        co_await c->timer.async_wait(use_nothrow);
        if (!c->done && std::chrono::steady_clock::now() >= c->deadline) {
            asio::error_code ignored;
            c->socket.close(ignored);
            break;
        }
    }
}

}  // namespace

asio::awaitable<void> HttpServer::session(asio::local::stream_protocol::socket socket)
{
    auto conn = std::make_shared<HttpConnection>(std::move(socket));
    http_parser_settings settings = parser_settings();
    http_parser parser;
    ParseState state;
    std::vector<char> buf(16 * 1024);
    bool open = true;

    connections_++;
    state.limits = &limits_;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &state;
    conn->deadline = std::chrono::steady_clock::now() + limits_.idle_timeout;
    spawn_detached(executor_, watch_idle(conn), "http idle timer");

    while (open && !stopped_) {
        auto [ec, n] = co_await conn->socket.async_read_some(asio::buffer(buf), use_nothrow);
        if (ec) {
            break;
        }
        conn->deadline = std::chrono::steady_clock::now() + limits_.idle_timeout;

        size_t offset = 0;
        while (open && offset < n) {
            offset += http_parser_execute(&parser, &settings, buf.data() + offset, n - offset);
            http_errno err = HTTP_PARSER_ERRNO(&parser);

            if (state.complete) {
                bool keep_alive = http_should_keep_alive(&parser) != 0 && !stopped_;
                split_target(state.request);
                HttpResponse res = co_await handler_(state.request);
                std::string out = serialize(res, keep_alive);
                auto [wec, wn] = co_await asio::async_write(conn->socket, asio::buffer(out),
                                                            use_nothrow);
                open = !wec && keep_alive;
                state.reset();
                http_parser_pause(&parser, 0);
                continue;
            }
            if (err != HPE_OK) {
                int status = state.error_status ? state.error_status : 400;
                std::string detail = state.error_status ? state.error_detail
                                                        : http_errno_description(err);
                std::string out = serialize(HttpResponse::problem(status, detail), false);
                co_await asio::async_write(conn->socket, asio::buffer(out), use_nothrow);
                open = false;
            }
            break;
        }
    }

    conn->done = true;
    conn->timer.cancel();
    asio::error_code ignored;
    conn->socket.shutdown(asio::socket_base::shutdown_both, ignored);
    conn->socket.close(ignored);
    connections_--;
}

}  // namespace signalrd
