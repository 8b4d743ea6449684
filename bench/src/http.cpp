#include "http.h"

#include <strings.h>

namespace bench {

namespace {

HttpResponseParser *
self(http_parser *p)
{
    return static_cast<HttpResponseParser *>(p->data);
}

}  // namespace


std::string
HttpResponse::header(std::string_view name) const
{
    for (const auto &[key, value] : headers) {
        if (key.size() == name.size()
            && strncasecmp(key.data(), name.data(), name.size()) == 0)
        {
            return value;
        }
    }

    return "";
}


std::string
http_request(std::string_view method, std::string_view target,
    std::string_view host, const std::vector<std::string> &headers,
    std::string_view body)
{
    std::string  req;

    req.reserve(256 + body.size());
    req.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
    req.append("Host: ").append(host).append("\r\n");

    for (const auto &line : headers) {
        req.append(line).append("\r\n");
    }

    if (!body.empty() || method == "POST" || method == "PUT") {
        req.append("Content-Length: ")
           .append(std::to_string(body.size())).append("\r\n");
    }

    req.append("\r\n").append(body);

    return req;
}


HttpResponseParser::HttpResponseParser()
{
    http_parser_settings_init(&settings_);
    settings_.on_status = on_status;
    settings_.on_header_field = on_header_field;
    settings_.on_header_value = on_header_value;
    settings_.on_headers_complete = on_headers_complete;
    settings_.on_body = on_body;
    settings_.on_message_complete = on_message_complete;

    http_parser_init(&parser_, HTTP_RESPONSE);
    parser_.data = this;
}


HttpResponseParser::Result
HttpResponseParser::feed(const char *data, size_t len, size_t *consumed)
{
    size_t  n;

    *consumed = 0;

    if (complete_) {
        return Result::kComplete;  // take() it first
    }

    n = http_parser_execute(&parser_, &settings_, data, len);

    if (complete_) {
        // Paused at the end of this response, or stopped after a 101.
        http_parser_pause(&parser_, 0);
        *consumed = n;
        return Result::kComplete;
    }

    if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK) {
        if (error_.empty()) {
            error_ = std::string("malformed response: ")
                     + http_errno_description(HTTP_PARSER_ERRNO(&parser_));
        }
        return Result::kError;
    }

    if (len == 0) {
        error_ = "connection closed before the response ended";
        return Result::kError;
    }

    *consumed = n;
    return Result::kNeedMore;
}


HttpResponse
HttpResponseParser::take()
{
    HttpResponse  r = std::move(response_);

    response_ = HttpResponse();
    complete_ = false;
    in_value_ = false;
    size_ = 0;

    if (r.upgraded) {
        // The connection now speaks another protocol; a parser reused
        // on it would only see garbage.
        http_parser_init(&parser_, HTTP_RESPONSE);
        parser_.data = this;
    }

    return r;
}


bool
HttpResponseParser::grow(size_t len)
{
    size_ += len;

    if (size_ > kMaxResponse) {
        error_ = "response larger than 1 MiB";
        return false;
    }

    return true;
}


int
HttpResponseParser::on_status(http_parser *p, const char *at, size_t len)
{
    return self(p)->grow(len) ? 0 : -1;
}


int
HttpResponseParser::on_header_field(http_parser *p, const char *at,
    size_t len)
{
    HttpResponseParser  *s = self(p);

    if (!s->grow(len)) {
        return -1;
    }

    if (s->in_value_ || s->response_.headers.empty()) {
        s->response_.headers.emplace_back();
        s->in_value_ = false;
    }
    s->response_.headers.back().first.append(at, len);

    return 0;
}


int
HttpResponseParser::on_header_value(http_parser *p, const char *at,
    size_t len)
{
    HttpResponseParser  *s = self(p);

    if (!s->grow(len)) {
        return -1;
    }

    if (s->response_.headers.empty()) {
        return -1;
    }

    s->in_value_ = true;
    s->response_.headers.back().second.append(at, len);

    return 0;
}


int
HttpResponseParser::on_headers_complete(http_parser *p)
{
    HttpResponseParser  *s = self(p);

    s->response_.status = int(p->status_code);

    if (p->status_code == 101) {
        // No body and no further HTTP on this connection.
        s->response_.upgraded = true;
        return 2;
    }

    return 0;
}


int
HttpResponseParser::on_body(http_parser *p, const char *at, size_t len)
{
    HttpResponseParser  *s = self(p);

    if (!s->grow(len)) {
        return -1;
    }

    s->response_.body.append(at, len);

    return 0;
}


int
HttpResponseParser::on_message_complete(http_parser *p)
{
    self(p)->complete_ = true;

    // Stop right after this response: what follows is the next one.
    http_parser_pause(p, 1);

    return 0;
}

}  // namespace bench
