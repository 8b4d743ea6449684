// Group membership that outlives a daemon, in Redis: the groups the push API put a
// connection or a user in. Each instance holds its connections' memberships in memory
// (backplane.h) for delivery; these keys are what it reads back when a connection is
// (re)announced by its worker, so a daemon restart, which the worker's connections
// survive, keeps them in their groups. Under the key prefix P:
//
//   P:groups:HUB:connection:ID   set of groups; expires `connection_grace` after the
//                                connection goes (a restart re-announces it before then)
//   P:groups:HUB:user:USER       sorted set: group -> membership expiry (Unix ms)
//
// Every call is made on the loop; Redis being down gives StatusCode::unavailable.

#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "redis_client.h"

namespace signalrd {

class GroupStore {
public:
    static constexpr std::chrono::seconds connection_grace{120};
    // A user's membership without a ttl lasts a year, as Azure SignalR Service's does.
    static constexpr std::chrono::seconds user_default_ttl{365LL * 86400};

    GroupStore(RedisClient &redis, std::string prefix)
        : redis_(redis), prefix_(std::move(prefix))
    {
    }

    asio::awaitable<Status> add_connection(const std::string &hub, const std::string &id,
                                           const std::string &group);
    asio::awaitable<Status> remove_connection(const std::string &hub, const std::string &id,
                                              const std::string &group);
    asio::awaitable<Status> clear_connection(const std::string &hub, const std::string &id);

    // The connection ended (or its daemon is stopping): its groups expire after the grace.
    asio::awaitable<Status> connection_gone(const std::string &hub, const std::string &id);

    // A connection was announced: its stored groups (the grace ends), and its user's.
    asio::awaitable<Result<std::vector<std::string>>> groups_on_connect(
        const std::string &hub, const std::string &id, const std::string &user);

    asio::awaitable<Status> add_user(const std::string &hub, const std::string &user,
                                     const std::string &group, std::chrono::seconds ttl);
    asio::awaitable<Status> remove_user(const std::string &hub, const std::string &user,
                                        const std::string &group);
    asio::awaitable<Result<bool>> user_in_group(const std::string &hub, const std::string &user,
                                                const std::string &group);
    // Removes the user from every group; the value is the groups it was in.
    asio::awaitable<Result<std::vector<std::string>>> clear_user(const std::string &hub,
                                                                 const std::string &user);

    std::string connection_key(const std::string &hub, const std::string &id) const;
    std::string user_key(const std::string &hub, const std::string &user) const;

private:
    asio::awaitable<Status> run(RedisArgs args);

    RedisClient &redis_;
    std::string prefix_;
};

}  // namespace signalrd
