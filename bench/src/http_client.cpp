#include "http_client.h"

#include <strings.h>

namespace bench {

HttpClient::HttpClient(EventLoop &loop, const sockaddr_in &dst,
    const sockaddr_in *source)
    : loop_(loop), dst_(dst), has_source_(source != nullptr)
{
    if (source != nullptr) {
        source_ = *source;
    }
}


HttpClient::HttpClient(EventLoop &loop, std::string unix_path)
    : loop_(loop), dst_(), has_source_(false),
      unix_path_(std::move(unix_path))
{
}


Status
HttpClient::connect_stream()
{
    if (!unix_path_.empty()) {
        return stream_->connect_unix(unix_path_);
    }

    return stream_->connect(dst_, has_source_ ? &source_ : nullptr);
}


void
HttpClient::send(std::string request, Callback done)
{
    queue_.push_back(Pending{std::move(request), std::move(done)});
    start_next();
}


void
HttpClient::start_next()
{
    if (queue_.empty() || in_flight_) {
        return;
    }

    if (stream_ == nullptr) {
        stream_ = std::make_unique<TcpStream>(loop_, this);
    }

    if (!stream_->is_open()) {
        // The same stream object reconnects: it may be reading right
        // now, below us on the stack.
        Status  s = connect_stream();
        if (!s.ok()) {
            fail_all(s.message());
            return;
        }
    }

    in_flight_ = true;
    stream_->write(queue_.front().request.data(),
                   queue_.front().request.size());
}


void
HttpClient::preconnect()
{
    if (stream_ == nullptr) {
        stream_ = std::make_unique<TcpStream>(loop_, this);
    }

    if (!stream_->is_open()) {
        Status  s = connect_stream();
        if (!s.ok()) {
            fail_all(s.message());
        }
    }
}


void
HttpClient::on_connected()
{
}


void
HttpClient::on_data(const unsigned char *data, size_t len)
{
    const char  *p = reinterpret_cast<const char *>(data);
    size_t       consumed;

    while (len > 0 || !in_flight_) {
        if (!in_flight_) {
            // Nothing asked: a server speaking out of turn.
            stream_->close();
            fail_all("unexpected bytes from the server");
            return;
        }

        auto  rc = parser_.feed(p, len, &consumed);

        if (rc == HttpResponseParser::Result::kError) {
            stream_->close();
            fail_all(parser_.error());
            return;
        }

        if (rc == HttpResponseParser::Result::kNeedMore) {
            return;
        }

        HttpResponse  response = parser_.take();
        Pending       done = std::move(queue_.front());

        queue_.pop_front();
        in_flight_ = false;
        p += consumed;
        len -= consumed;

        if (response.upgraded) {
            leftover_.assign(p, len);
            done.done(Status::Ok(), response);
            return;
        }

        if (strcasecmp(response.header("Connection").c_str(), "close")
            == 0)
        {
            // The server will not read another request on it.
            stream_->close();
        }

        done.done(Status::Ok(), response);

        if (!stream_->is_open()) {
            start_next();
            return;
        }

        start_next();

        if (len == 0) {
            return;
        }
    }
}


void
HttpClient::on_closed(const std::string &reason)
{
    size_t  consumed;

    if (!in_flight_) {
        // An idle keep-alive connection ended; a later send() reconnects.
        return;
    }

    // A response delimited by the end of the connection ends here.
    if (parser_.feed(nullptr, 0, &consumed)
        == HttpResponseParser::Result::kComplete)
    {
        HttpResponse  response = parser_.take();
        Pending       done = std::move(queue_.front());

        queue_.pop_front();
        in_flight_ = false;
        done.done(Status::Ok(), response);
        start_next();
        return;
    }

    fail_all(reason);
}


void
HttpClient::fail_all(const std::string &reason)
{
    HttpResponse         none;
    Status               s = Status::Error(reason);
    std::deque<Pending>  failed;

    // A callback may send again: that request starts afresh.
    failed.swap(queue_);
    in_flight_ = false;

    for (auto &p : failed) {
        p.done(s, none);
    }
}


std::unique_ptr<TcpStream>
HttpClient::take_stream(std::string *leftover)
{
    *leftover = std::move(leftover_);
    leftover_.clear();

    return std::move(stream_);
}


void
HttpClient::close()
{
    if (stream_ != nullptr) {
        stream_->close();
    }
}

}  // namespace bench
