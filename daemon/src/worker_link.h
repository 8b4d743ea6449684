// The daemon's side of the worker link (docs/ipc.md): one session per nginx worker on
// the worker socket. Frames are parsed and built by the shared library (sr_ipc_*).
//
// A session waits for the worker's HELLO, answers with its own, then feeds OPEN,
// INVOKE and CLOSED to the hub registry, hands stateful reconnect's DETACH, PARK and
// RESUME to its LinkReconnect (parking.h), and answers PING with PONG. Outbound frames
// are appended to one buffer and written in batches: whatever accumulates while a
// write is in flight goes out in the next single write. The buffer is bounded: a worker
// that stops reading has its link dropped rather than the daemon's memory grown; the
// worker then reconnects and re-opens its connections, and its clients resume.

#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <signalr/buf.h>
#include <signalr/ipc.h>

#include "asio_util.h"
#include "hub_registry.h"
#include "status.h"

namespace signalrd {

using Bytes = std::vector<unsigned char>;

class WorkerLink;

// Stateful reconnect's frames (DETACH, PARK, RESUME), handled outside the link (parking.h).
class LinkReconnect {
public:
    virtual ~LinkReconnect() = default;
    // A protocol_error drops the link.
    virtual Status on_reconnect_frame(WorkerLink &link, const sr_ipc_frame_t &frame) = 0;
    // CLOSED: true when handled there (a connection being parked), not by the registry.
    virtual bool on_closed(WorkerLink &link, const std::string &connection_id) = 0;
    // The port now holding a connection that this link is handing over (DETACH or SUSPEND
    // sent, PARK not yet), or nullptr: an INVOKE the link read before still counts.
    virtual LinkPort *holder_while_draining(WorkerLink &link,
                                            const std::string &connection_id) = 0;
    // Offered INVOKE, CLOSED, DETACH and PARK first: true when the connection lives on
    // another instance and the frame went there.
    virtual bool on_foreign_frame(WorkerLink &link, const sr_ipc_frame_t &frame) = 0;
    // Before the registry hears of it.
    virtual void on_link_dropped(WorkerLink &link) = 0;
};

struct LinkOptions {
    size_t max_outbound = 16u << 20;   // bytes queued toward one worker
    size_t max_frame = 0;              // 0: SR_IPC_MAX_FRAME
    std::string node;                  // sent in HELLO
};

class WorkerLink final : public LinkPort, public std::enable_shared_from_this<WorkerLink> {
public:
    // Finds the live link of the worker with this pid, for FORWARD and FORWARDED.
    using PeerFinder = std::function<WorkerLink *(int64_t pid)>;

    WorkerLink(asio::local::stream_protocol::socket socket, HubRegistry &registry,
               const LinkOptions &options, unsigned number, std::function<void()> on_end);
    ~WorkerLink() override;

    void start();

    bool send_message(const std::string &connection_id, const sr_message_t &msg) override;
    void send_multicast(const std::vector<const std::string *> &connection_ids,
                        const sr_message_t &msg) override;
    // Keeps the encoded MULTICAST id lists (one per frame of at most 4,096 ids) in
    // group.encoded: a group sent to again costs a copy of them, not an encoding per id.
    void send_group(LinkGroup &group, const sr_message_t &msg) override;
    void send_close(const std::string &connection_id, const char *error,
                    bool allow_reconnect) override;
    bool send_encoded(const std::string &connection_id, const unsigned char *data,
                      size_t len) override;
    bool send_release(const std::string &connection_id) override;
    bool send_suspend(const std::string &connection_id) override;

    // The answers to RESUME: ADOPT (state: a PARK body; appended: hub messages in IPC
    // form) and RESUME_FAILED. False when nothing could be queued.
    bool send_adopt(const std::string &connection_id, uint64_t ref, const Bytes &state,
                    const std::vector<Bytes> &appended);
    bool send_resume_failed(uint64_t ref, const char *reason);

    // Without one nothing is parked: DETACH is answered RELEASE, PARK is ignored and RESUME
    // is answered RESUME_FAILED.
    void set_reconnect(LinkReconnect *reconnect) { reconnect_ = reconnect; }

    // Writes what is queued, then closes.
    void close_after_flush();

    // Without one, FORWARD is answered 404: no other worker is known.
    void set_peer_finder(PeerFinder finder) { find_peer_ = std::move(finder); }
    // Queues a FORWARD or FORWARDED frame toward this link's worker.
    bool write_relay(uint8_t type, const std::string &connection_id,
                     const sr_ipc_relay_t &relay);

    unsigned number() const { return number_; }
    int64_t worker_pid() const { return worker_pid_; }
    bool usable() const { return hello_seen_ && !failed_ && !closing_; }
    size_t queued_bytes() const { return out_.len + inflight_.len; }

private:
    asio::awaitable<void> read_loop();
    asio::awaitable<void> write_loop();
    Status handle_frame(const sr_ipc_frame_t &frame);
    Status handle_hello(const sr_ipc_frame_t &frame);
    Status handle_open(const std::string &id, const sr_ipc_frame_t &frame);
    void handle_invoke(const std::string &id, const sr_ipc_frame_t &frame);
    Status handle_relay(const std::string &id, const sr_ipc_frame_t &frame);
    Status handle_reconnect(const sr_ipc_frame_t &frame);
    bool write_frame(sr_ipc_type_t type, const std::string &connection_id, const sr_buf_t *body,
                     const char *what);
    void queued();
    void fail(const char *why);

    asio::local::stream_protocol::socket socket_;
    HubRegistry &registry_;
    LinkOptions options_;
    unsigned number_;
    std::function<void()> on_end_;
    PeerFinder find_peer_;
    LinkReconnect *reconnect_ = nullptr;
    std::vector<unsigned char> in_;
    size_t in_len_ = 0;
    sr_buf_t out_;
    sr_buf_t inflight_;
    bool hello_seen_ = false;
    bool writing_ = false;
    bool closing_ = false;
    bool failed_ = false;
    int64_t worker_pid_ = 0;
};

class WorkerLinkServer {
public:
    WorkerLinkServer(asio::any_io_executor executor, HubRegistry &registry, LinkOptions options);

    Status listen(const std::string &path);
    void stop_accepting();
    // Flushes and closes every link.
    void close_all();

    // Handed to every link accepted from now on.
    void set_reconnect(LinkReconnect *reconnect) { reconnect_ = reconnect; }

    size_t link_count() const { return links_.size(); }
    // The live link of the worker with this pid, or nullptr; a linear walk, since
    // there are as many links as nginx workers.
    WorkerLink *find_by_pid(int64_t pid) const;

private:
    asio::awaitable<void> accept_loop();

    asio::any_io_executor executor_;
    HubRegistry &registry_;
    LinkOptions options_;
    asio::local::stream_protocol::acceptor acceptor_;
    std::map<unsigned, std::shared_ptr<WorkerLink>> links_;
    unsigned next_number_ = 1;
    LinkReconnect *reconnect_ = nullptr;
};

}  // namespace signalrd
