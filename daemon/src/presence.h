// Presence: which users are connected to a hub, with how many connections, across every
// instance; which connections exist and which groups have members anywhere.
//
// Each instance mirrors its own connections into Redis, under the key prefix P:
//
//   P:presence:instances                  sorted set: instance -> last heartbeat (Unix ms)
//   P:presence:HUB:INSTANCE:connections   hash: connection id -> user ("" for none)
//   P:presence:HUB:INSTANCE:users         hash: user -> that instance's connection count
//   P:presence:HUB:INSTANCE:groups        hash: group -> that instance's member count
//
// Only the instance itself writes its hashes, from what it holds in memory, so its
// counts need no read-modify-write. Readers take the instances whose heartbeat (every
// ttl/3) is younger than ttl and sum over their hashes: an instance that died stops
// counting after ttl at most. Whichever live instance first removes a dead one from
// the sorted set deletes its hashes and reports its users that are now offline. After
// Redis comes back, and when the daemon starts, an instance writes its hashes anew.
//
// Presence events: with an event handler set, a user's first connection on the hub
// anywhere, and the end of its last one, are reported (by the instance that saw it).
// Two instances seeing a user's first connections at the same moment may both report
// it: TODO(docs/push-api.md): presence events are at-least-once when instances race.

#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "hub.h"
#include "redis_client.h"

namespace signalrd {

class Presence {
public:
    // online: the user's first connection appeared (true) or its last ended (false).
    using EventHandler = std::function<void(const std::string &hub, const std::string &user,
                                            bool online)>;

    // hubs: every hub name this deployment serves (dead instances' hashes are per hub).
    Presence(asio::any_io_executor executor, RedisClient &redis, std::string prefix,
             std::string instance, std::chrono::seconds ttl, std::vector<std::string> hubs);
    ~Presence();

    void set_event_handler(EventHandler handler) { on_event_ = std::move(handler); }

    void start();
    void stop();

    // Redis came (back) up: rewrite this instance's hashes.
    void on_redis_up();

    // The registry's observer, and the backplane's group observer.
    void on_connection(const ConnectionInfo &connection, bool opened);
    void on_group(const std::string &connection_id, const std::string &group, bool joined);

    // Queries over every live instance.
    asio::awaitable<Result<std::map<std::string, long long>>> users(const std::string &hub);
    asio::awaitable<Result<long long>> user_connections(const std::string &hub,
                                                        const std::string &user);
    asio::awaitable<Result<bool>> connection_exists(const std::string &hub,
                                                    const std::string &id);
    asio::awaitable<Result<bool>> group_exists(const std::string &hub, const std::string &group);

    std::string hash_key(const std::string &hub, const std::string &instance,
                         const char *what) const;

private:
    // Per connection only pointers to the names counts_ holds anyway (an idle instance
    // holds little else than connections): the hub is a key of counts_, never erased; the
    // user a key of its users, erased only with the user's last connection.
    struct Local {
        const std::string *hub = nullptr;
        const std::string *user = nullptr;   // null: no user
        std::vector<std::string> groups;
    };
    struct HubCounts {
        std::map<std::string, long long> users;
        std::map<std::string, long long> groups;
    };

    void write(RedisArgs args);
    void count(const std::string &hub, const char *what, std::map<std::string, long long> &counts,
               const std::string &name, long long delta);
    asio::awaitable<void> heartbeat(std::shared_ptr<bool> alive);
    void check_event(const std::string &hub, const std::string &user, bool online);
    // alive: false once stop() ran (the object may be gone).
    asio::awaitable<void> reap(std::string instance, std::shared_ptr<bool> alive);
    asio::awaitable<void> announce(std::string hub, std::string user, bool online,
                                   std::shared_ptr<bool> alive);
    asio::awaitable<Result<std::vector<std::string>>> live_instances();
    asio::awaitable<Result<std::vector<RedisValue>>> each_live(const std::string &hub,
                                                               const char *what,
                                                               RedisArgs command);
    std::vector<RedisArgs> rewrite_commands() const;

    asio::any_io_executor executor_;
    RedisClient &redis_;
    std::string prefix_;
    std::string instance_;
    std::chrono::seconds ttl_;
    std::vector<std::string> hubs_;
    std::unordered_map<std::string, Local> connections_;
    std::map<std::string, HubCounts> counts_;   // by hub
    EventHandler on_event_;
    asio::steady_timer timer_;
    std::shared_ptr<bool> alive_;
};

}  // namespace signalrd
