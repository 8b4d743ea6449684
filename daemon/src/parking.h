// Stateful reconnect, the daemon's side (docs/ipc.md, docs/reconnect.md): connections whose
// client went away for a moment wait here, parked, until the client comes back to any
// worker (or, through remote_connections.h, any instance) or their bounds end them.
//
// For the hubs a parked connection is still open: the registry routes it to the lot, a
// port that keeps every hub message sent to it (SEND, and what a MULTICAST would carry) in
// an appended list instead of sending it. A connection passes through two phases:
//
//   draining   after DETACH (answered with RELEASE) or SUSPEND: messages are appended,
//              the worker's PARK with the state is awaited from the port that held it;
//   parked     the PARK body is kept verbatim; parked + appended bytes count against the
//              connection's buffer_bytes, and its window_ms runs.
//
// A RESUME whose token hash names a parked connection is answered with ADOPT at once; one
// that names a draining connection waits for its PARK; one that names a live connection
// makes the lot SUSPEND it first; one that names nothing known waits a moment for a PARK
// that brings its token (the worker may not have noticed the cut yet).
//
// Past the window, or past buffer_bytes, a parked connection ends: the lot forgets it and
// the hub is told it went (on_disconnected). Each park, adopt, expiry and bound is logged
// in one line, with the connection id and never the token.
//
// Everything runs on the loop thread.

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "asio_util.h"
#include "hub_registry.h"
#include "reconnect_token.h"
#include "worker_link.h"

namespace signalrd {

// A client asking for its connection back, from a worker link or another instance.
struct ResumeRequest {
    std::string token_hash;
    std::chrono::steady_clock::time_point asked = std::chrono::steady_clock::now();
    // Hands the connection over: answers ADOPT with these and returns the port that holds
    // the connection from now on, or nullptr when the asker is gone (it stays parked).
    std::function<LinkPort *(const std::string &connection_id, const Bytes &state,
                             const std::vector<Bytes> &appended)>
        adopt;
    // Answers that nothing can be resumed (reason: for the log of the asker).
    std::function<void(const char *reason)> fail;
    // When set, called instead of fail once unclaimed_wait passed with no connection of
    // that token parked here (remote_connections.h then looks elsewhere once more).
    std::function<void(ResumeRequest request)> unclaimed;
};

struct ParkingOptions {
    // How long a RESUME may wait for the PARK of its connection: the worker gives up on
    // its RESUME after 5 s, so an ADOPT later than that would find nobody. A SUSPENDed
    // connection whose PARK takes longer ends.
    std::chrono::milliseconds resume_wait{5000};
    // How long a RESUME for a token nobody here knows waits for a PARK that brings it: the
    // client may be back before its worker noticed the cut, DETACH and PARK on their way.
    std::chrono::milliseconds unclaimed_wait{1000};
    // Resumes waiting so at most; more are refused at once.
    size_t max_unclaimed = 10000;
    // A window or bound sent by a worker is clamped to these, so that no client can make
    // the daemon hold a connection for ever.
    uint64_t max_window_ms = 24ull * 3600 * 1000;
    uint64_t max_buffer_bytes = 64ull << 20;
};

class ParkingLot final : public LinkPort, public LinkReconnect {
public:
    // Told when a connection is parked (its token hash and window) and when a parked
    // connection leaves the lot (adopted, or ended), for the Redis index of
    // remote_connections.h.
    using ParkedHook = std::function<void(const std::string &connection_id,
                                          const std::string &token_hash, uint64_t window_ms)>;
    using LeftHook = std::function<void(const std::string &token_hash)>;
    // Asked when no connection here has the token hash: another instance may have it.
    using ElsewhereHook = std::function<void(ResumeRequest request)>;
    // Offered every worker frame of a connection first: true when the connection lives on
    // another instance and the frame went there.
    using ForeignHook = std::function<bool(WorkerLink &link, const sr_ipc_frame_t &frame)>;
    using LinkDroppedHook = std::function<void(WorkerLink &link)>;

    ParkingLot(asio::any_io_executor executor, HubRegistry &registry,
               ParkingOptions options = {});
    ~ParkingLot() override;

    ParkingLot(const ParkingLot &) = delete;
    ParkingLot &operator=(const ParkingLot &) = delete;

    void set_parked_hook(ParkedHook hook) { on_parked_ = std::move(hook); }
    void set_left_hook(LeftHook hook) { on_left_ = std::move(hook); }
    void set_elsewhere_hook(ElsewhereHook hook) { elsewhere_ = std::move(hook); }
    void set_foreign_hook(ForeignHook hook) { foreign_ = std::move(hook); }
    void set_link_dropped_hook(LinkDroppedHook hook) { link_dropped_ = std::move(hook); }

    // DETACH from the port holding the connection: appends from now on and answers
    // RELEASE through that port. A connection the port does not hold gets its RELEASE
    // all the same (its PARK will be ignored), so that the worker is never left waiting.
    void detach(LinkPort &port, const std::string &connection_id, uint64_t window_ms,
                uint64_t buffer_bytes);

    // PARK from port: the state (a PARK body) is kept verbatim. protocol_error for a body
    // that does not decode; a PARK for a connection the port neither holds nor drains is
    // ignored.
    Status park(LinkPort &port, const std::string &connection_id, Bytes state);

    // The lot, when it drains the connection from port (DETACH or SUSPEND, no PARK yet):
    // what the worker read from its client before still reaches the hub. nullptr otherwise.
    LinkPort *holder_while_draining(LinkPort &port, const std::string &connection_id);

    // CLOSED from port: true when the lot was draining the connection from that port (it
    // then ends); false when the registry should handle it.
    bool closed(LinkPort &port, const std::string &connection_id);

    // A client came back. Answers through request.adopt or request.fail, now or later.
    void resume(ResumeRequest request);
    // The same without asking other instances (for a request from one of them).
    void resume_here(ResumeRequest request);

    size_t parked_count() const { return entries_.size(); }
    size_t unclaimed_count() const { return unclaimed_.size(); }
    bool holds(const std::string &connection_id) const { return entries_.count(connection_id); }
    // Parked plus appended bytes of a connection in the lot (0 when absent).
    uint64_t held_bytes(const std::string &connection_id) const;

    // LinkPort: hub messages for a connection in the lot are appended.
    bool send_message(const std::string &connection_id, const sr_message_t &msg) override;
    bool send_encoded(const std::string &connection_id, const unsigned char *data,
                      size_t len) override;
    void send_close(const std::string &connection_id, const char *error,
                    bool allow_reconnect) override;
    void forget(const std::string &connection_id) override;

    // LinkReconnect (worker_link.h)
    Status on_reconnect_frame(WorkerLink &link, const sr_ipc_frame_t &frame) override;
    bool on_closed(WorkerLink &link, const std::string &connection_id) override
    {
        return closed(link, connection_id);
    }
    LinkPort *holder_while_draining(WorkerLink &link, const std::string &connection_id) override
    {
        return holder_while_draining(static_cast<LinkPort &>(link), connection_id);
    }
    bool on_foreign_frame(WorkerLink &link, const sr_ipc_frame_t &frame) override;
    void on_link_dropped(WorkerLink &link) override;

private:
    enum class Phase { draining, parked };

    struct Entry {
        Phase phase = Phase::draining;
        LinkPort *from = nullptr;   // draining: the port whose PARK is awaited
        Bytes state;
        std::string token_hash;
        uint64_t parked_bytes = 0;
        std::vector<Bytes> appended;
        uint64_t appended_bytes = 0;
        uint64_t window_ms = 0;
        uint64_t buffer_bytes = 0;
        std::vector<ResumeRequest> waiting;   // resumes that came while draining
        std::unique_ptr<asio::steady_timer> timer;
        uint64_t serial = 0;                  // tells a stale timer from the current one
    };

    Entry &enter(LinkPort &from, const std::string &connection_id, uint64_t buffer_bytes);
    void arm(const std::string &connection_id, Entry &entry, std::chrono::milliseconds after);
    void expire(const std::string &connection_id, uint64_t serial);
    bool over_bound(const std::string &connection_id, Entry &entry);
    bool adopt(const std::string &connection_id, ResumeRequest &request);
    bool adopt_waiting(const std::string &connection_id, Entry &entry);
    void end(const std::string &connection_id);
    // Takes the connection's entry out: its waiting resumes fail, its token is unindexed.
    std::optional<Entry> take(const std::string &connection_id);
    void resume_local(ResumeRequest request, bool ask_elsewhere);
    void hold_unclaimed(ResumeRequest request);
    void unclaimed_passed(uint64_t serial);
    std::vector<ResumeRequest> claim(const std::string &token_hash);
    ResumeRequest link_request(WorkerLink &link, const std::string &hash, uint64_t ref);

    asio::any_io_executor executor_;
    HubRegistry &registry_;
    ParkingOptions options_;
    struct Unclaimed {
        ResumeRequest request;
        std::unique_ptr<asio::steady_timer> timer;
    };

    std::unordered_map<std::string, Entry> entries_;
    std::unordered_map<uint64_t, Unclaimed> unclaimed_;   // by serial
    uint64_t next_serial_ = 1;
    std::shared_ptr<bool> alive_;
    ParkedHook on_parked_;
    LeftHook on_left_;
    ElsewhereHook elsewhere_;
    ForeignHook foreign_;
    LinkDroppedHook link_dropped_;
};

}  // namespace signalrd
