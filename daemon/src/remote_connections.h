// Stateful reconnect across instances (docs/backplane.md, "Stateful reconnect across
// instances"): a client whose connection was parked on one instance (its home) comes back
// through another (the adopter). The home keeps the connection in its registry, so its
// hubs keep their state; the adopter's worker holds the client.
//
//   P:parked:<token hash>   the home's instance name, set on PARK with the window as TTL,
//                           deleted on adopt and when the connection ends
//
// Messages on the instance channels (Backplane::publish_to_instance), JSON objects whose
// binary fields are base64; every one names its sender in "from":
//
//   adopter -> home   resume {token_hash, ref, reply_to}
//                     from_remote {connection, frame, body}: the adopter's worker's INVOKE,
//                     DETACH, PARK and CLOSED for the connection
//   home -> adopter   adopt {ref, connection, state, appended: [...]} or
//                     resume_failed {ref, reason}
//                     deliver {connection, message}: a hub message for the connection
//                     release {connection}, suspend {connection},
//                     close {connection, error, allowReconnect}: RELEASE, SUSPEND and
//                     CLOSE for the adopter's worker
//   adopter -> home   holding {connections: [...]}, every holding_interval: the home
//                     ends a connection adopted elsewhere that is missing from
//                     holding_missed of them in a row (the adopter died)
//
// A resume unanswered within resume_timeout is refused (RESUME_FAILED). Pub/sub is fire
// and forget: a lost message costs that connection (it ends, its client starts over).
//
// TODO(docs/backplane.md): a home that dies takes the connections it parked or lent with
// it, and a stopped daemon leaves its P:parked: keys to their TTL, so a client that comes
// back meanwhile waits for resume_timeout before its 404.
//
// Everything runs on the loop thread.

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include <jansson.h>

#include "parking.h"
#include "redis_client.h"

namespace signalrd {

struct RemoteOptions {
    std::chrono::milliseconds resume_timeout{3000};
    std::chrono::milliseconds holding_interval{10000};
    int holding_missed = 3;
};

class RemoteConnections {
public:
    // Sends payload on that instance's channel, in call order (Backplane).
    using Publisher = std::function<void(const std::string &instance, std::string payload)>;

    // prefix: the key prefix P; instance: this instance's name, as its channel knows it.
    // Sets the lot's hooks; lot and registry must outlive this.
    RemoteConnections(asio::any_io_executor executor, RedisClient &commands, std::string prefix,
                      std::string instance, HubRegistry &registry, ParkingLot &lot,
                      Publisher publish, RemoteOptions options = {});
    ~RemoteConnections();

    RemoteConnections(const RemoteConnections &) = delete;
    RemoteConnections &operator=(const RemoteConnections &) = delete;

    // An instance-channel message (Backplane::set_instance_handler); unknown types and
    // malformed messages are ignored.
    void on_instance_message(const std::string &type, const json_t *message);

    std::string parked_key(const std::string &token_hash) const;
    // Connections adopted here from another instance.
    size_t foreign_count() const { return foreign_.size(); }
    size_t pending_count() const { return pending_.size(); }
    // Connections of this home held by another instance.
    size_t lent_count() const { return lent_.size(); }

    class RemotePort;

private:
    struct Pending {
        ResumeRequest request;
        std::string home;
        std::unique_ptr<asio::steady_timer> timer;
    };
    struct Foreign {
        std::string home;
        LinkPort *port;   // the worker link holding it here
        std::string token_hash;
    };
    // A connection of this home held by another instance's worker.
    struct Lent {
        std::string adopter;
        std::chrono::steady_clock::time_point seen;
    };

    void find_elsewhere(ResumeRequest request);
    asio::awaitable<void> look_up(ResumeRequest request, bool first, std::shared_ptr<bool> alive);
    void ask(const std::string &home, ResumeRequest request);
    bool forward_from_worker(WorkerLink &link, const sr_ipc_frame_t &frame);
    void on_link_dropped(WorkerLink &link);

    void on_resume(const json_t *m);
    void on_from_remote(const json_t *m);
    void on_adopt(const json_t *m);
    void on_resume_failed(const json_t *m);
    void on_to_foreign(const std::string &type, const json_t *m);
    void on_holding(const json_t *m);
    asio::awaitable<void> keep_lent(std::shared_ptr<bool> alive);
    void announce_holdings();
    void end_unheld();

    void send(const std::string &instance, json_t *message);
    void send_closed(const std::string &home, const std::string &connection_id);
    RemotePort &port_for(const std::string &instance);
    void redis(RedisArgs args);

    asio::any_io_executor executor_;
    RedisClient &commands_;
    std::string prefix_;
    std::string instance_;
    HubRegistry &registry_;
    ParkingLot &lot_;
    Publisher publish_;
    RemoteOptions options_;
    std::shared_ptr<bool> alive_;
    uint64_t next_ref_ = 1;
    std::unordered_map<uint64_t, Pending> pending_;
    std::unordered_map<std::string, Foreign> foreign_;
    std::unordered_map<std::string, Lent> lent_;
    asio::steady_timer holding_timer_;
    std::map<std::string, std::unique_ptr<RemotePort>> ports_;   // adopter name -> port
};

}  // namespace signalrd
