#include "worker_link.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

#include "reconnect_token.h"
#include "socket_util.h"

namespace signalrd {

namespace {

// Bounds on what a worker forwards from a client; the worker applies its own first.
const sr_limits_t invoke_limits = {0, 256, 64};

constexpr size_t read_chunk = 64 * 1024;

}  // namespace

WorkerLink::WorkerLink(asio::local::stream_protocol::socket socket, HubRegistry &registry,
                       const LinkOptions &options, unsigned number, std::function<void()> on_end)
    : socket_(std::move(socket)),
      registry_(registry),
      options_(options),
      number_(number),
      on_end_(std::move(on_end)),
      in_(read_chunk)
{
    sr_buf_init(&out_);
    sr_buf_init(&inflight_);
}

WorkerLink::~WorkerLink()
{
    sr_buf_free(&out_);
    sr_buf_free(&inflight_);
}

void WorkerLink::start()
{
    spawn_detached(socket_.get_executor(), read_loop(), "worker link");
}

asio::awaitable<void> WorkerLink::read_loop()
{
    auto self = shared_from_this();
    size_t max_frame = options_.max_frame ? options_.max_frame : SR_IPC_MAX_FRAME;

    log_info("worker link %u: connected", number_);
    while (!failed_) {
        if (in_.size() - in_len_ < read_chunk / 4 && in_.size() < max_frame + 2 * read_chunk) {
            in_.resize(in_.size() * 2);
        }
        auto [ec, n] = co_await socket_.async_read_some(
            asio::buffer(in_.data() + in_len_, in_.size() - in_len_), use_nothrow);
        if (ec) {
            if (ec != asio::error::eof && ec != asio::error::operation_aborted && !failed_) {
                log_warn("worker link %u: read() failed: %s", number_, ec.message().c_str());
            }
            break;
        }
        in_len_ += n;

        size_t offset = 0;
        while (!failed_) {
            sr_ipc_frame_t frame;
            size_t consumed = 0;
            sr_error_t err;
            int rc = sr_ipc_parse(in_.data() + offset, in_len_ - offset, max_frame, &frame,
                                  &consumed, &err);
            if (rc == SR_AGAIN) {
                break;
            }
            if (rc != SR_OK) {
                log_error("worker link %u: bad frame: %s", number_, err.str);
                fail("bad frame");
                break;
            }
            Status s = handle_frame(frame);
            if (!s.is_ok()) {
                log_error("worker link %u: %s", number_, s.message().c_str());
                fail("protocol error");
                break;
            }
            offset += consumed;
        }
        std::memmove(in_.data(), in_.data() + offset, in_len_ - offset);
        in_len_ -= offset;
    }

    log_info("worker link %u: closed (worker pid %lld)", number_,
             static_cast<long long>(worker_pid_));
    failed_ = true;
    if (reconnect_) {
        reconnect_->on_link_dropped(*this);
    }
    registry_.link_dropped(*this);
    asio::error_code ignored;
    socket_.close(ignored);
    if (on_end_) {
        on_end_();
    }
}

Status WorkerLink::handle_frame(const sr_ipc_frame_t &frame)
{
    if (!hello_seen_) {
        if (frame.type != SR_IPC_HELLO) {
            return Status::protocol_error("first frame is not HELLO");
        }
        return handle_hello(frame);
    }

    std::string id(frame.conn_id, frame.conn_id_len);
    bool needs_id = frame.type == SR_IPC_OPEN || frame.type == SR_IPC_CLOSED ||
                    frame.type == SR_IPC_INVOKE || frame.type == SR_IPC_FORWARD ||
                    frame.type == SR_IPC_FORWARDED || frame.type == SR_IPC_DETACH ||
                    frame.type == SR_IPC_PARK;
    if (needs_id && id.empty()) {
        return Status::protocol_error("frame without a connection id");
    }
    bool may_be_foreign = frame.type == SR_IPC_INVOKE || frame.type == SR_IPC_CLOSED ||
                          frame.type == SR_IPC_DETACH || frame.type == SR_IPC_PARK;
    if (may_be_foreign && reconnect_ && reconnect_->on_foreign_frame(*this, frame)) {
        return Status::ok();
    }

    switch (frame.type) {
    case SR_IPC_OPEN:
        return handle_open(id, frame);
    case SR_IPC_CLOSED:
        if (!reconnect_ || !reconnect_->on_closed(*this, id)) {
            registry_.closed(*this, id);
        }
        return Status::ok();
    case SR_IPC_INVOKE:
        handle_invoke(id, frame);
        return Status::ok();
    case SR_IPC_FORWARD:
    case SR_IPC_FORWARDED:
        return handle_relay(id, frame);
    case SR_IPC_DETACH:
    case SR_IPC_PARK:
    case SR_IPC_RESUME:
        return handle_reconnect(frame);
    case SR_IPC_PING: {
        sr_error_t err;
        if (sr_ipc_write(&out_, SR_IPC_PONG, nullptr, 0, nullptr, 0, &err) != SR_OK) {
            return Status::internal(err.str);
        }
        queued();
        return Status::ok();
    }
    default:
        // HELLO again, PONG, or a type of a later version: nothing to do
        log_debug("worker link %u: frame of type %u ignored", number_, frame.type);
        return Status::ok();
    }
}

Status WorkerLink::handle_hello(const sr_ipc_frame_t &frame)
{
    sr_ipc_hello_t hello{};
    sr_error_t err;

    if (sr_ipc_hello_decode(frame.body, frame.body_len, &hello, &err) != SR_OK) {
        return Status::protocol_error(std::string("bad HELLO: ") + err.str);
    }
    uint32_t version = hello.version;
    worker_pid_ = hello.pid;
    std::string node = hello.node ? hello.node : "";
    sr_ipc_hello_clear(&hello);

    sr_buf_t body;
    sr_buf_init(&body);
    sr_ipc_hello_t ours{SR_IPC_VERSION, static_cast<int64_t>(::getpid()),
                        const_cast<char *>(options_.node.c_str())};
    int rc = sr_ipc_hello_encode(&ours, &body, &err);
    if (rc == SR_OK) {
        rc = sr_ipc_write(&out_, SR_IPC_HELLO, nullptr, 0, body.data, body.len, &err);
    }
    sr_buf_free(&body);
    if (rc != SR_OK) {
        return Status::internal(std::string("encoding HELLO failed: ") + err.str);
    }
    queued();

    if (version != SR_IPC_VERSION) {
        // our HELLO tells the worker which version we speak; then we part
        log_error("worker link %u: worker pid %lld speaks link version %u, not %d", number_,
                  static_cast<long long>(worker_pid_), version, SR_IPC_VERSION);
        close_after_flush();
        return Status::ok();
    }
    hello_seen_ = true;
    log_info("worker link %u: worker pid %lld on \"%s\"", number_,
             static_cast<long long>(worker_pid_), node.c_str());
    return Status::ok();
}

Status WorkerLink::handle_open(const std::string &id, const sr_ipc_frame_t &frame)
{
    sr_ipc_open_t open{};
    sr_error_t err;

    if (sr_ipc_open_decode(frame.body, frame.body_len, &open, &err) != SR_OK) {
        return Status::protocol_error("bad OPEN for connection " + id + ": " + err.str);
    }
    registry_.open(*this, id, open);
    sr_ipc_open_clear(&open);
    std::string token = open_body_token(frame.body, frame.body_len);
    if (!token.empty()) {
        registry_.set_token_hash(id, token_hash(token));
    }
    return Status::ok();
}

// Without a parking lot nothing is kept: DETACH still gets its RELEASE, so that the worker
// is not left waiting, and a RESUME is refused at once.
Status WorkerLink::handle_reconnect(const sr_ipc_frame_t &frame)
{
    if (reconnect_) {
        return reconnect_->on_reconnect_frame(*this, frame);
    }
    if (frame.type == SR_IPC_DETACH) {
        send_release(std::string(frame.conn_id, frame.conn_id_len));
    } else if (frame.type == SR_IPC_RESUME) {
        sr_ipc_resume_t resume{};
        sr_error_t err;
        if (sr_ipc_resume_decode(frame.body, frame.body_len, &resume, &err) != SR_OK) {
            return Status::protocol_error(std::string("bad RESUME: ") + err.str);
        }
        uint64_t ref = resume.ref;
        sr_ipc_resume_clear(&resume);
        send_resume_failed(ref, "stateful reconnect is off");
    }
    return Status::ok();
}

void WorkerLink::handle_invoke(const std::string &id, const sr_ipc_frame_t &frame)
{
    sr_message_t msg;
    sr_error_t err;

    int rc = sr_message_decode_payload(SR_PROTOCOL_MSGPACK, frame.body, frame.body_len,
                                       &invoke_limits, &msg, &err);
    if (rc == SR_ERR_UNSUPPORTED) {
        // a message type of a later protocol version: ignored, as the spec allows
        log_debug("connection %s: message ignored: %s", id.c_str(), err.str);
        return;
    }
    if (rc != SR_OK) {
        log_info("connection %s: invalid hub message: %s", id.c_str(), err.str);
        registry_.close(id, "Connection closed with an error. Invalid hub message.", false);
        return;
    }
    LinkPort *holder = reconnect_ ? reconnect_->holder_while_draining(*this, id) : nullptr;
    registry_.invoke(holder ? *holder : *this, id, msg);
    sr_message_clear(&msg);
}

// A request of a connection that reached another worker than its holder, or the answer:
// passed on to the named worker with the sender's pid in its place. A request for a worker
// that is gone is answered 404 here, so that the asking worker need not wait for its timer.
Status WorkerLink::handle_relay(const std::string &id, const sr_ipc_frame_t &frame)
{
    sr_ipc_relay_t relay;
    sr_error_t err;

    if (sr_ipc_relay_parse(frame.body, frame.body_len, &relay, &err) != SR_OK) {
        return Status::protocol_error("bad relay frame for connection " + id + ": " + err.str);
    }
    WorkerLink *peer = find_peer_ ? find_peer_(relay.pid) : nullptr;
    if (peer != nullptr && peer->usable()) {
        relay.pid = static_cast<uint32_t>(worker_pid_);
        peer->write_relay(frame.type, id, relay);
        return Status::ok();
    }
    if (frame.type == SR_IPC_FORWARD) {
        sr_ipc_relay_t gone{relay.pid, relay.seq, 404, 0, nullptr, 0};
        write_relay(SR_IPC_FORWARDED, id, gone);
    }
    return Status::ok();
}

bool WorkerLink::write_relay(uint8_t type, const std::string &connection_id,
                             const sr_ipc_relay_t &relay)
{
    sr_error_t err;

    if (failed_ || closing_) {
        return false;
    }
    if (sr_ipc_relay_write(&out_, static_cast<sr_ipc_type_t>(type), connection_id.data(),
                           connection_id.size(), &relay, &err) != SR_OK) {
        log_error("connection %s: encoding a relay frame failed: %s", connection_id.c_str(),
                  err.str);
        return false;
    }
    queued();
    return !failed_;
}

bool WorkerLink::send_message(const std::string &connection_id, const sr_message_t &msg)
{
    size_t offset = 0;
    size_t mark = out_.len;
    sr_error_t err;

    if (failed_ || closing_) {
        return false;
    }
    int rc = sr_ipc_begin(&out_, SR_IPC_SEND, connection_id.data(), connection_id.size(),
                          &offset, &err);
    if (rc == SR_OK) {
        rc = sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg, &out_, &err);
    }
    if (rc == SR_OK) {
        rc = sr_ipc_end(&out_, offset, &err);
    }
    if (rc != SR_OK) {
        out_.len = mark;   // drop the partial frame
        log_error("connection %s: encoding a %s message failed: %s", connection_id.c_str(),
                  sr_message_type_name(msg.type), err.str);
        return false;
    }
    queued();
    return !failed_;
}

// MULTICAST frames of at most kMulticastIds ids each: the message is encoded once a frame
// and the worker frames it once per protocol for all of them.
void WorkerLink::send_multicast(const std::vector<const std::string *> &connection_ids,
                                const sr_message_t &msg)
{
    LinkGroup group{this, connection_ids, {}};

    send_group(group, msg);
}

namespace {

constexpr size_t multicast_ids = 4096;   // ids per MULTICAST frame

// The start of one MULTICAST frame for ids [first, first + count): its header, with the
// length left for sr_ipc_end(), and the id list. The same ids give the same bytes.
Result<std::string> encode_multicast_ids(const std::vector<const std::string *> &connection_ids,
                                         size_t first, size_t count)
{
    std::vector<const char *> ids;
    std::vector<size_t> lens;
    sr_buf_t buf;
    sr_error_t err;
    size_t offset = 0;

    for (size_t i = first; i < first + count; i++) {
        ids.push_back(connection_ids[i]->data());
        lens.push_back(connection_ids[i]->size());
    }
    sr_buf_init(&buf);
    int rc = sr_ipc_multicast_begin(&buf, ids.data(), lens.data(), count, &offset, &err);
    std::string out = rc == SR_OK ? std::string(reinterpret_cast<char *>(buf.data), buf.len) : "";
    sr_buf_free(&buf);
    if (rc != SR_OK || offset != 0) {
        return Status::protocol_error(rc == SR_OK ? "multicast header not at its start" : err.str);
    }
    return out;
}

}  // namespace

void WorkerLink::send_group(LinkGroup &group, const sr_message_t &msg)
{
    const std::vector<const std::string *> &all = group.ids;
    sr_error_t err;

    if (group.encoded.empty()) {
        for (size_t first = 0; first < all.size(); first += multicast_ids) {
            Result<std::string> ids =
                encode_multicast_ids(all, first, std::min(multicast_ids, all.size() - first));
            if (!ids.is_ok()) {
                group.encoded.clear();
                log_error("worker link %u: encoding a multicast failed: %s", number_,
                          ids.status().message().c_str());
                return;
            }
            group.encoded.push_back(std::move(*ids));
        }
    }
    for (const std::string &ids : group.encoded) {
        if (failed_ || closing_) {
            return;
        }
        size_t offset = out_.len;
        int rc = sr_buf_append(&out_, ids.data(), ids.size());
        if (rc != SR_OK) {
            fail("out of memory");
            return;
        }
        rc = sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg, &out_, &err);
        if (rc == SR_OK) {
            rc = sr_ipc_end(&out_, offset, &err);
        }
        if (rc != SR_OK) {
            out_.len = offset;   // drop the partial frame
            log_error("worker link %u: encoding a %s multicast failed: %s", number_,
                      sr_message_type_name(msg.type), err.str);
            return;
        }
        queued();
    }
}

void WorkerLink::send_close(const std::string &connection_id, const char *error,
                            bool allow_reconnect)
{
    sr_buf_t body;
    sr_error_t err;
    sr_ipc_close_t close{const_cast<char *>(error), allow_reconnect ? 1 : 0};

    if (failed_ || closing_) {
        return;
    }
    sr_buf_init(&body);
    int rc = sr_ipc_close_encode(&close, &body, &err);
    if (rc == SR_OK) {
        rc = sr_ipc_write(&out_, SR_IPC_CLOSE, connection_id.data(), connection_id.size(),
                          body.data, body.len, &err);
    }
    sr_buf_free(&body);
    if (rc != SR_OK) {
        log_error("connection %s: encoding CLOSE failed: %s", connection_id.c_str(), err.str);
        return;
    }
    queued();
}

bool WorkerLink::write_frame(sr_ipc_type_t type, const std::string &connection_id,
                             const sr_buf_t *body, const char *what)
{
    sr_error_t err;

    if (failed_ || closing_) {
        return false;
    }
    if (sr_ipc_write(&out_, type, connection_id.data(), connection_id.size(),
                     body ? body->data : nullptr, body ? body->len : 0, &err) != SR_OK) {
        log_error("connection %s: encoding %s failed: %s", connection_id.c_str(), what, err.str);
        return false;
    }
    queued();
    return !failed_;
}

bool WorkerLink::send_encoded(const std::string &connection_id, const unsigned char *data,
                              size_t len)
{
    sr_buf_t body{const_cast<unsigned char *>(data), len, len};

    return write_frame(SR_IPC_SEND, connection_id, &body, "SEND");
}

bool WorkerLink::send_release(const std::string &connection_id)
{
    return write_frame(SR_IPC_RELEASE, connection_id, nullptr, "RELEASE");
}

bool WorkerLink::send_suspend(const std::string &connection_id)
{
    sr_ipc_detach_t ignored{0, 0};
    sr_buf_t body;
    sr_error_t err;

    sr_buf_init(&body);
    bool ok = sr_ipc_detach_encode(&ignored, &body, &err) == SR_OK &&
              write_frame(SR_IPC_SUSPEND, connection_id, &body, "SUSPEND");
    sr_buf_free(&body);
    return ok;
}

bool WorkerLink::send_adopt(const std::string &connection_id, uint64_t ref, const Bytes &state,
                            const std::vector<Bytes> &appended)
{
    std::vector<sr_ipc_bytes_t> list;
    sr_buf_t body;
    sr_error_t err;

    for (const Bytes &m : appended) {
        list.push_back({m.data(), m.size()});
    }
    sr_ipc_adopt_t adopt{ref, {state.data(), state.size()}, list.data(), list.size()};
    sr_buf_init(&body);
    int rc = sr_ipc_adopt_encode(&adopt, &body, &err);
    if (rc != SR_OK) {
        log_error("connection %s: encoding ADOPT failed: %s", connection_id.c_str(), err.str);
    }
    bool ok = rc == SR_OK && write_frame(SR_IPC_ADOPT, connection_id, &body, "ADOPT");
    sr_buf_free(&body);
    return ok;
}

bool WorkerLink::send_resume_failed(uint64_t ref, const char *reason)
{
    sr_ipc_resume_failed_t failed{ref, const_cast<char *>(reason)};
    sr_buf_t body;
    sr_error_t err;

    sr_buf_init(&body);
    int rc = sr_ipc_resume_failed_encode(&failed, &body, &err);
    if (rc != SR_OK) {
        log_error("worker link %u: encoding RESUME_FAILED failed: %s", number_, err.str);
    }
    bool ok = rc == SR_OK && write_frame(SR_IPC_RESUME_FAILED, "", &body, "RESUME_FAILED");
    sr_buf_free(&body);
    return ok;
}

// Design note: a frame goes to the socket in the call that queues it while no write is
// in flight, with one non-blocking send(): a worker reads its link as fast as frames
// come, so the socket takes it. Only what it does not take waits for the write loop.
// Starting that loop for every frame cost a coroutine and a dispatch, a tenth of the
// daemon's time while it published at thousands of messages a second.
void WorkerLink::queued()
{
    if (queued_bytes() > options_.max_outbound) {
        log_error("worker link %u: more than %zu bytes queued toward worker pid %lld, "
                  "dropping the link", number_, options_.max_outbound,
                  static_cast<long long>(worker_pid_));
        fail("outbound buffer full");
        return;
    }
    if (writing_ || failed_ || out_.len == 0) {
        return;
    }
    ssize_t n = ::send(socket_.native_handle(), out_.data, out_.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
        sr_buf_consume(&out_, static_cast<size_t>(n));
        if (out_.len == 0) {
            return;
        }
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        log_warn("worker link %u: send() failed: %s", number_, std::strerror(errno));
        fail("write failed");
        return;
    }
    writing_ = true;
    spawn_detached(socket_.get_executor(), write_loop(), "worker link write");
}

asio::awaitable<void> WorkerLink::write_loop()
{
    auto self = shared_from_this();

    while (out_.len > 0 && !failed_) {
        std::swap(out_, inflight_);
        auto [ec, n] = co_await asio::async_write(
            socket_, asio::buffer(inflight_.data, inflight_.len), use_nothrow);
        sr_buf_reset(&inflight_);
        if (ec) {
            if (!failed_) {
                log_warn("worker link %u: write() failed: %s", number_, ec.message().c_str());
            }
            fail("write failed");
            break;
        }
    }
    writing_ = false;
    if (closing_ && !failed_) {
        fail("closing");
    }
}

void WorkerLink::close_after_flush()
{
    closing_ = true;
    if (!writing_) {
        fail("closing");
    }
}

void WorkerLink::fail(const char *why)
{
    asio::error_code ignored;

    if (failed_) {
        return;
    }
    log_debug("worker link %u: closing: %s", number_, why);
    failed_ = true;
    // the read loop wakes with an error and unregisters the link's connections
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.cancel(ignored);
}

WorkerLinkServer::WorkerLinkServer(asio::any_io_executor executor, HubRegistry &registry,
                                   LinkOptions options)
    : executor_(executor), registry_(registry), options_(std::move(options)), acceptor_(executor)
{
}

Status WorkerLinkServer::listen(const std::string &path)
{
    Status s = listen_unix(acceptor_, path);
    if (s.is_ok()) {
        spawn_detached(executor_, accept_loop(), "worker link accept");
    }
    return s;
}

asio::awaitable<void> WorkerLinkServer::accept_loop()
{
    while (acceptor_.is_open()) {
        auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
                break;
            }
            log_error("accept() on the worker socket failed: %s", ec.message().c_str());
            asio::steady_timer pause(executor_, std::chrono::milliseconds(100));
            co_await pause.async_wait(use_nothrow);
            continue;
        }
        unsigned number = next_number_++;
        auto link = std::make_shared<WorkerLink>(std::move(socket), registry_, options_, number,
                                                 [this, number] { links_.erase(number); });
        links_[number] = link;
        link->set_reconnect(reconnect_);
        link->set_peer_finder([this](int64_t pid) { return find_by_pid(pid); });
        link->start();
    }
}

WorkerLink *WorkerLinkServer::find_by_pid(int64_t pid) const
{
    for (const auto &[number, link] : links_) {
        if (link->usable() && link->worker_pid() == pid) {
            return link.get();
        }
    }
    return nullptr;
}

void WorkerLinkServer::stop_accepting()
{
    asio::error_code ignored;
    acceptor_.close(ignored);
}

void WorkerLinkServer::close_all()
{
    auto links = links_;
    for (auto &[number, link] : links) {
        link->close_after_flush();
    }
}

}  // namespace signalrd
