#include "curl_multi.h"

#include <poll.h>

namespace signalrd {

// A socket libcurl asked us to watch. The descriptor only borrows the fd: libcurl opens
// and closes it, so it is released, never closed, when libcurl lets go of it.
struct CurlMulti::Socket {
    Socket(asio::any_io_executor ex, curl_socket_t s) : fd(s), descriptor(ex, s) {}

    curl_socket_t fd;
    asio::posix::stream_descriptor descriptor;
    int wanted = 0;          // CURL_POLL_IN, _OUT or _INOUT
    bool reading = false;    // a read wait is pending
    bool writing = false;
    bool removed = false;    // libcurl is done with it; pending waits are stale
};

namespace {

// Whether fd is ready for events now. asio's epoll reactor waits for edges, and
// libcurl may leave bytes unread after an action: asking first never misses them.
bool ready_now(curl_socket_t fd, short events)
{
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (events | POLLERR | POLLHUP)) != 0;
}

}  // namespace

CurlTransfer::CurlTransfer() : easy_(curl_easy_init())
{
    curl_easy_setopt(easy_, CURLOPT_PRIVATE, this);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &CurlTransfer::write_callback);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
}

CurlTransfer::~CurlTransfer()
{
    if (multi_ != nullptr) {
        multi_->abort(*this);
    }
    curl_easy_cleanup(easy_);
    curl_slist_free_all(headers_);
}

void CurlTransfer::add_header(const char *line)
{
    headers_ = curl_slist_append(headers_, line);
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, headers_);
}

long CurlTransfer::response_code() const
{
    long code = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

size_t CurlTransfer::write_callback(char *data, size_t size, size_t count, void *self)
{
    auto *transfer = static_cast<CurlTransfer *>(self);
    size_t bytes = size * count;

    if (transfer->on_data_ && !transfer->on_data_(std::string_view(data, bytes))) {
        return bytes == 0 ? 1 : 0;   // anything but bytes makes libcurl fail the transfer
    }
    return bytes;
}

CurlMulti::CurlMulti(asio::any_io_executor executor)
    : executor_(executor),
      multi_(curl_multi_init()),
      timer_(executor),
      alive_(std::make_shared<bool>(true))
{
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlMulti::socket_callback);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlMulti::timer_callback);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

CurlMulti::~CurlMulti()
{
    *alive_ = false;
    while (!transfers_.empty()) {
        abort(*transfers_.begin()->second);
    }
    for (auto &[fd, socket] : sockets_) {
        socket->removed = true;
        socket->descriptor.release();
    }
    curl_multi_cleanup(multi_);
}

void CurlMulti::start(CurlTransfer &transfer)
{
    transfer.multi_ = this;
    transfers_[transfer.easy_] = &transfer;
    // libcurl calls timer_callback at once, which starts the transfer from the loop
    curl_multi_add_handle(multi_, transfer.easy_);
}

void CurlMulti::abort(CurlTransfer &transfer)
{
    if (transfer.multi_ != this) {
        return;
    }
    transfer.multi_ = nullptr;
    transfers_.erase(transfer.easy_);
    curl_multi_remove_handle(multi_, transfer.easy_);
}

int CurlMulti::socket_callback(CURL *, curl_socket_t fd, int what, void *self, void *data)
{
    static_cast<CurlMulti *>(self)->watch(fd, what, static_cast<Socket *>(data));
    return 0;
}

void CurlMulti::watch(curl_socket_t fd, int what, Socket *)
{
    auto it = sockets_.find(fd);

    if (what == CURL_POLL_REMOVE) {
        if (it != sockets_.end()) {
            it->second->removed = true;
            it->second->descriptor.release();   // deregisters; libcurl closes the fd
            sockets_.erase(it);
        }
        return;
    }
    if (it == sockets_.end()) {
        it = sockets_.emplace(fd, std::make_shared<Socket>(executor_, fd)).first;
    }
    it->second->wanted = what;
    arm(it->second);
}

void CurlMulti::arm(const std::shared_ptr<Socket> &socket)
{
    std::shared_ptr<bool> alive = alive_;

    if ((socket->wanted & CURL_POLL_IN) && !socket->reading) {
        socket->reading = true;
        auto done = [this, alive, socket](asio::error_code) {
            socket->reading = false;
            if (*alive && !socket->removed) {
                on_ready(socket, CURL_CSELECT_IN);
            }
        };
        if (ready_now(socket->fd, POLLIN)) {
            asio::post(executor_, [done] { done({}); });
        } else {
            socket->descriptor.async_wait(asio::posix::descriptor_base::wait_read, done);
        }
    }
    if ((socket->wanted & CURL_POLL_OUT) && !socket->writing) {
        socket->writing = true;
        auto done = [this, alive, socket](asio::error_code) {
            socket->writing = false;
            if (*alive && !socket->removed) {
                on_ready(socket, CURL_CSELECT_OUT);
            }
        };
        if (ready_now(socket->fd, POLLOUT)) {
            asio::post(executor_, [done] { done({}); });
        } else {
            socket->descriptor.async_wait(asio::posix::descriptor_base::wait_write, done);
        }
    }
}

void CurlMulti::on_ready(const std::shared_ptr<Socket> &socket, int direction)
{
    act(socket->fd, direction);
    if (!socket->removed) {
        arm(socket);
    }
}

int CurlMulti::timer_callback(CURLM *, long timeout_ms, void *self)
{
    auto *multi = static_cast<CurlMulti *>(self);
    std::shared_ptr<bool> alive = multi->alive_;

    multi->timer_.cancel();
    if (timeout_ms < 0) {
        return 0;
    }
    // never act from inside a libcurl callback: a zero timeout runs on the next turn
    multi->timer_.expires_after(std::chrono::milliseconds(timeout_ms));
    multi->timer_.async_wait([multi, alive](asio::error_code ec) {
        if (!ec && *alive) {
            multi->on_timeout();
        }
    });
    return 0;
}

void CurlMulti::on_timeout()
{
    act(CURL_SOCKET_TIMEOUT, 0);
}

void CurlMulti::act(curl_socket_t fd, int events)
{
    int still_running = 0;

    curl_multi_socket_action(multi_, fd, events, &still_running);
    collect_done();
}

void CurlMulti::collect_done()
{
    CURLMsg *msg;
    int left = 0;

    while ((msg = curl_multi_info_read(multi_, &left)) != nullptr) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        auto it = transfers_.find(easy);
        if (it == transfers_.end()) {
            continue;
        }
        CurlTransfer *transfer = it->second;
        abort(*transfer);   // detaches it; the connection stays cached when reusable
        CurlTransfer::DoneHandler done = std::move(transfer->on_done_);
        if (done) {
            done(result);   // may destroy the transfer
        }
    }
}

}  // namespace signalrd
