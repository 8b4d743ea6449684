#include "parking.h"

#include <algorithm>

#include "log.h"

namespace signalrd {

namespace {

const char *const no_such_connection = "no such connection";

unsigned long long ull(uint64_t v)
{
    return static_cast<unsigned long long>(v);
}

}  // namespace

ParkingLot::ParkingLot(asio::any_io_executor executor, HubRegistry &registry,
                       ParkingOptions options)
    : executor_(executor),
      registry_(registry),
      options_(options),
      alive_(std::make_shared<bool>(true))
{
}

ParkingLot::~ParkingLot()
{
    *alive_ = false;
}

ParkingLot::Entry &ParkingLot::enter(LinkPort &from, const std::string &connection_id,
                                     uint64_t buffer_bytes)
{
    Entry &entry = entries_[connection_id];
    entry.phase = Phase::draining;
    entry.from = &from;
    entry.buffer_bytes = std::min(buffer_bytes, options_.max_buffer_bytes);
    return entry;
}

void ParkingLot::arm(const std::string &connection_id, Entry &entry,
                     std::chrono::milliseconds after)
{
    entry.serial = next_serial_++;
    if (!entry.timer) {
        entry.timer = std::make_unique<asio::steady_timer>(executor_);
    }
    entry.timer->expires_after(after);
    entry.timer->async_wait(
        [this, alive = alive_, connection_id, serial = entry.serial](asio::error_code ec) {
            if (!ec && *alive) {
                expire(connection_id, serial);
            }
        });
}

void ParkingLot::expire(const std::string &connection_id, uint64_t serial)
{
    auto it = entries_.find(connection_id);
    if (it == entries_.end() || it->second.serial != serial) {
        return;
    }
    if (it->second.phase == Phase::parked) {
        log_info("connection %s: reconnect window of %llu ms passed, ended",
                 connection_id.c_str(), ull(it->second.window_ms));
    } else {
        log_info("connection %s: no PARK from its worker in time, ended", connection_id.c_str());
    }
    end(connection_id);
}

void ParkingLot::detach(LinkPort &port, const std::string &connection_id, uint64_t window_ms,
                        uint64_t buffer_bytes)
{
    uint64_t window = std::min(window_ms, options_.max_window_ms);
    auto it = entries_.find(connection_id);

    if (registry_.port_of(connection_id) == &port) {
        Entry &entry = enter(port, connection_id, buffer_bytes);
        entry.window_ms = window;
        registry_.move(connection_id, port, *this);
        arm(connection_id, entry, std::chrono::milliseconds(window));
        log_debug("connection %s: detached", connection_id.c_str());
    } else if (it != entries_.end() && it->second.phase == Phase::draining &&
               it->second.from == &port) {
        // a SUSPEND crossed this DETACH: the worker's bounds are the ones to keep
        it->second.window_ms = window;
        it->second.buffer_bytes = std::min(buffer_bytes, options_.max_buffer_bytes);
    } else {
        log_debug("connection %s: DETACH for a connection not held there",
                  connection_id.c_str());
    }
    // ordered after every SEND written toward the port before: the worker has them all
    port.send_release(connection_id);
}

Status ParkingLot::park(LinkPort &port, const std::string &connection_id, Bytes state)
{
    sr_ipc_state_t decoded{};
    sr_error_t err;

    if (sr_ipc_state_decode(state.data(), state.size(), &decoded, &err) != SR_OK) {
        return Status::protocol_error("bad PARK for connection " + connection_id + ": " +
                                      err.str);
    }
    std::string hash = token_hash(decoded.token ? decoded.token : "");
    uint64_t buffer_size = decoded.buffer_size;
    uint64_t window = std::min(decoded.window_ms, options_.max_window_ms);
    uint64_t bound = std::min(decoded.buffer_bytes, options_.max_buffer_bytes);
    sr_ipc_state_clear(&decoded);

    auto it = entries_.find(connection_id);
    bool draining = it != entries_.end() && it->second.phase == Phase::draining &&
                    it->second.from == &port;
    if (!draining) {
        if (registry_.port_of(connection_id) != &port) {
            log_debug("connection %s: PARK for a connection not held there",
                      connection_id.c_str());
            return Status::ok();
        }
        // PARK without DETACH: nothing was queued for it since, so it parks at once
        enter(port, connection_id, bound);
        registry_.move(connection_id, port, *this);
        it = entries_.find(connection_id);
    }

    Entry &entry = it->second;
    entry.phase = Phase::parked;
    entry.from = nullptr;
    entry.state = std::move(state);
    entry.token_hash = hash;
    entry.parked_bytes = buffer_size;
    entry.window_ms = window;
    entry.buffer_bytes = bound;
    registry_.set_token_hash(connection_id, hash);
    if (over_bound(connection_id, entry)) {
        return Status::ok();
    }

    if (adopt_waiting(connection_id, entry)) {
        return Status::ok();
    }

    log_info("connection %s: parked, buffer %llu bytes, %zu appended, window %llu ms",
             connection_id.c_str(), ull(buffer_size), entry.appended.size(), ull(window));
    arm(connection_id, entry, std::chrono::milliseconds(window));
    if (on_parked_) {
        on_parked_(connection_id, hash, window);
    }
    return Status::ok();
}

// Hands a connection just parked to the resumes that waited for it: those that came while
// it drained, and those that named its token before anybody knew it.
bool ParkingLot::adopt_waiting(const std::string &connection_id, Entry &entry)
{
    std::vector<ResumeRequest> waiting = std::move(entry.waiting);
    entry.waiting.clear();
    for (ResumeRequest &request : claim(entry.token_hash)) {
        waiting.push_back(std::move(request));
    }

    // the newest first; once one took the connection the others have nothing to take
    auto now = std::chrono::steady_clock::now();
    bool adopted = false;
    for (auto request = waiting.rbegin(); request != waiting.rend(); ++request) {
        if (adopted) {
            request->fail("superseded by a newer reconnect");
        } else if (now - request->asked > options_.resume_wait) {
            request->fail("the connection was parked too late");
        } else {
            adopted = adopt(connection_id, *request);
        }
    }
    return adopted;
}

LinkPort *ParkingLot::holder_while_draining(LinkPort &port, const std::string &connection_id)
{
    auto it = entries_.find(connection_id);
    bool draining = it != entries_.end() && it->second.phase == Phase::draining &&
                    it->second.from == &port;
    return draining ? this : nullptr;
}

bool ParkingLot::closed(LinkPort &port, const std::string &connection_id)
{
    auto it = entries_.find(connection_id);

    if (it == entries_.end() || it->second.phase != Phase::draining || it->second.from != &port) {
        return false;
    }
    log_info("connection %s: closed by its worker while being parked", connection_id.c_str());
    end(connection_id);
    return true;
}

// True when the connection is over its bound: it then ends, soon, outside the hub's call
// that brought it there (a hub need not expect on_disconnected inside its own send).
bool ParkingLot::over_bound(const std::string &connection_id, Entry &entry)
{
    uint64_t held = entry.parked_bytes + entry.appended_bytes;

    if (held <= entry.buffer_bytes) {
        return false;
    }
    log_info("connection %s: %llu bytes held while parked, over its bound of %llu, ended",
             connection_id.c_str(), ull(held), ull(entry.buffer_bytes));
    entry.appended.clear();
    entry.serial = next_serial_++;   // no timer may end it a second time
    asio::post(executor_, [this, alive = alive_, connection_id, serial = entry.serial] {
        auto it = entries_.find(connection_id);
        if (*alive && it != entries_.end() && it->second.serial == serial) {
            end(connection_id);
        }
    });
    return true;
}

void ParkingLot::end(const std::string &connection_id)
{
    if (!take(connection_id)) {
        return;
    }
    // the hub hears that the connection went; forget() finds nothing left to do
    registry_.closed(*this, connection_id);
}

std::optional<ParkingLot::Entry> ParkingLot::take(const std::string &connection_id)
{
    auto it = entries_.find(connection_id);
    if (it == entries_.end()) {
        return std::nullopt;
    }
    Entry entry = std::move(it->second);
    entries_.erase(it);

    for (ResumeRequest &request : entry.waiting) {
        request.fail(no_such_connection);
    }
    if (on_left_ && !entry.token_hash.empty()) {
        on_left_(entry.token_hash);
    }
    return entry;
}

bool ParkingLot::adopt(const std::string &connection_id, ResumeRequest &request)
{
    auto it = entries_.find(connection_id);
    if (it == entries_.end()) {
        return false;
    }
    LinkPort *to = request.adopt(connection_id, it->second.state, it->second.appended);
    if (to == nullptr) {
        return false;
    }
    Entry entry = std::move(it->second);
    entries_.erase(it);
    registry_.move(connection_id, *this, *to);
    log_info("connection %s: adopted, buffer %llu bytes, %zu appended while parked",
             connection_id.c_str(), ull(entry.parked_bytes), entry.appended.size());
    if (on_left_ && !entry.token_hash.empty()) {
        on_left_(entry.token_hash);
    }
    return true;
}

void ParkingLot::resume(ResumeRequest request)
{
    resume_local(std::move(request), true);
}

void ParkingLot::resume_here(ResumeRequest request)
{
    resume_local(std::move(request), false);
}

void ParkingLot::resume_local(ResumeRequest request, bool ask_elsewhere)
{
    std::string id = registry_.find_by_token_hash(request.token_hash);
    LinkPort *port = id.empty() ? nullptr : registry_.port_of(id);

    if (port == nullptr) {
        if (ask_elsewhere && elsewhere_) {
            elsewhere_(std::move(request));
        } else {
            hold_unclaimed(std::move(request));
        }
        return;
    }

    auto it = entries_.find(id);
    if (port == this && it != entries_.end()) {
        if (it->second.phase == Phase::parked) {
            adopt(id, request);
            return;
        }
        // its PARK is on the way; a newer request replaces an older one, whose worker
        // has given up on it by now
        for (ResumeRequest &older : it->second.waiting) {
            older.fail("superseded by a newer reconnect");
        }
        it->second.waiting.clear();
        it->second.waiting.push_back(std::move(request));
        return;
    }

    // live: the client came back before its worker noticed the cut
    if (port == this || !port->send_suspend(id)) {
        request.fail("the connection cannot be suspended");
        return;
    }
    log_info("connection %s: client came back elsewhere, suspended", id.c_str());
    Entry &entry = enter(*port, id, options_.max_buffer_bytes);
    entry.token_hash = request.token_hash;
    entry.waiting.push_back(std::move(request));
    registry_.move(id, *port, *this);
    arm(id, entry, options_.resume_wait);
}

void ParkingLot::hold_unclaimed(ResumeRequest request)
{
    if (unclaimed_.size() >= options_.max_unclaimed) {
        request.fail(no_such_connection);
        return;
    }
    uint64_t serial = next_serial_++;
    Unclaimed &waiting = unclaimed_[serial];
    waiting.request = std::move(request);
    waiting.timer = std::make_unique<asio::steady_timer>(executor_, options_.unclaimed_wait);
    waiting.timer->async_wait([this, alive = alive_, serial](asio::error_code ec) {
        if (!ec && *alive) {
            unclaimed_passed(serial);
        }
    });
}

void ParkingLot::unclaimed_passed(uint64_t serial)
{
    auto it = unclaimed_.find(serial);
    if (it == unclaimed_.end()) {
        return;
    }
    ResumeRequest request = std::move(it->second.request);
    unclaimed_.erase(it);
    if (request.unclaimed) {
        auto next = std::move(request.unclaimed);
        request.unclaimed = nullptr;
        next(std::move(request));
    } else {
        request.fail(no_such_connection);
    }
}

std::vector<ResumeRequest> ParkingLot::claim(const std::string &token_hash)
{
    std::vector<std::pair<uint64_t, ResumeRequest>> found;
    std::vector<ResumeRequest> out;

    for (auto it = unclaimed_.begin(); it != unclaimed_.end();) {
        if (it->second.request.token_hash == token_hash) {
            found.emplace_back(it->first, std::move(it->second.request));
            it = unclaimed_.erase(it);
        } else {
            ++it;
        }
    }
    // oldest first, as they came
    std::sort(found.begin(), found.end(),
              [](const auto &a, const auto &b) { return a.first < b.first; });
    for (auto &[serial, request] : found) {
        out.push_back(std::move(request));
    }
    return out;
}

uint64_t ParkingLot::held_bytes(const std::string &connection_id) const
{
    auto it = entries_.find(connection_id);
    return it == entries_.end() ? 0 : it->second.parked_bytes + it->second.appended_bytes;
}

bool ParkingLot::send_encoded(const std::string &connection_id, const unsigned char *data,
                              size_t len)
{
    auto it = entries_.find(connection_id);
    if (it == entries_.end()) {
        return false;
    }
    Entry &entry = it->second;
    uint64_t held = entry.parked_bytes + entry.appended_bytes;
    if (held > entry.buffer_bytes) {
        return false;   // ending
    }
    entry.appended.emplace_back(data, data + len);
    entry.appended_bytes += len;
    over_bound(connection_id, entry);
    return true;
}

bool ParkingLot::send_message(const std::string &connection_id, const sr_message_t &msg)
{
    sr_buf_t buf;
    sr_error_t err;

    if (entries_.count(connection_id) == 0) {
        return false;
    }
    sr_buf_init(&buf);
    if (sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg, &buf, &err) != SR_OK) {
        log_error("connection %s: encoding a %s message failed: %s", connection_id.c_str(),
                  sr_message_type_name(msg.type), err.str);
        sr_buf_free(&buf);
        return false;
    }
    bool ok = send_encoded(connection_id, buf.data, buf.len);
    sr_buf_free(&buf);
    return ok;
}

void ParkingLot::send_close(const std::string &, const char *, bool)
{
    // the registry has dropped it already (forget()); its client's reconnect finds nothing
}

void ParkingLot::forget(const std::string &connection_id)
{
    if (entries_.count(connection_id) == 0) {
        return;
    }
    log_info("connection %s: closed by its hub while parked", connection_id.c_str());
    take(connection_id);
}

ResumeRequest ParkingLot::link_request(WorkerLink &link, const std::string &hash, uint64_t ref)
{
    std::weak_ptr<WorkerLink> weak = link.weak_from_this();
    unsigned number = link.number();
    ResumeRequest request;

    request.token_hash = hash;
    request.adopt = [weak, ref](const std::string &id, const Bytes &state,
                                const std::vector<Bytes> &appended) -> LinkPort * {
        std::shared_ptr<WorkerLink> l = weak.lock();
        if (!l || !l->usable() || !l->send_adopt(id, ref, state, appended)) {
            return nullptr;
        }
        return l.get();
    };
    request.fail = [weak, ref, number](const char *reason) {
        log_info("worker link %u: resume %llu refused: %s", number, ull(ref), reason);
        if (std::shared_ptr<WorkerLink> l = weak.lock(); l && l->usable()) {
            l->send_resume_failed(ref, reason);
        }
    };
    return request;
}

Status ParkingLot::on_reconnect_frame(WorkerLink &link, const sr_ipc_frame_t &frame)
{
    std::string id(frame.conn_id, frame.conn_id_len);
    sr_error_t err;

    if (frame.type == SR_IPC_DETACH) {
        sr_ipc_detach_t detach{};
        if (sr_ipc_detach_decode(frame.body, frame.body_len, &detach, &err) != SR_OK) {
            return Status::protocol_error("bad DETACH for connection " + id + ": " + err.str);
        }
        this->detach(link, id, detach.window_ms, detach.buffer_bytes);
        return Status::ok();
    }
    if (frame.type == SR_IPC_PARK) {
        return park(link, id, Bytes(frame.body, frame.body + frame.body_len));
    }

    sr_ipc_resume_t resume{};
    if (sr_ipc_resume_decode(frame.body, frame.body_len, &resume, &err) != SR_OK) {
        return Status::protocol_error(std::string("bad RESUME: ") + err.str);
    }
    std::string token = resume.token ? resume.token : "";
    uint64_t ref = resume.ref;
    sr_ipc_resume_clear(&resume);
    ResumeRequest request = link_request(link, token_hash(token), ref);
    if (token.empty()) {
        request.fail(no_such_connection);
        return Status::ok();
    }
    this->resume(std::move(request));
    return Status::ok();
}

bool ParkingLot::on_foreign_frame(WorkerLink &link, const sr_ipc_frame_t &frame)
{
    return foreign_ && foreign_(link, frame);
}

void ParkingLot::on_link_dropped(WorkerLink &link)
{
    std::vector<std::string> orphans;

    for (const auto &[id, entry] : entries_) {
        if (entry.phase == Phase::draining && entry.from == &link) {
            orphans.push_back(id);
        }
    }
    for (const std::string &id : orphans) {
        log_info("connection %s: worker link went before its PARK, ended", id.c_str());
        end(id);
    }
    if (link_dropped_) {
        link_dropped_(link);
    }
}

}  // namespace signalrd
