#include "presence.h"

#include <algorithm>
#include <cstdlib>

#include "json.h"

namespace signalrd {

namespace {

const char *const kinds[] = {"connections", "users", "groups"};

}  // namespace

Presence::Presence(asio::any_io_executor executor, RedisClient &redis, std::string prefix,
                   std::string instance, std::chrono::seconds ttl, std::vector<std::string> hubs)
    : executor_(executor),
      redis_(redis),
      prefix_(std::move(prefix)),
      instance_(std::move(instance)),
      ttl_(ttl),
      hubs_(std::move(hubs)),
      timer_(executor)
{
}

Presence::~Presence()
{
    stop();
}

std::string Presence::hash_key(const std::string &hub, const std::string &instance,
                               const char *what) const
{
    return prefix_ + ":presence:" + hub + ":" + instance + ":" + what;
}

void Presence::start()
{
    alive_ = std::make_shared<bool>(true);
    spawn_detached(executor_, heartbeat(alive_), "presence heartbeat");
}

void Presence::stop()
{
    if (alive_) {
        *alive_ = false;
        alive_.reset();
    }
    timer_.cancel();
}

// Fire and forget: a write lost while Redis is away is made good by on_redis_up().
void Presence::write(RedisArgs args)
{
    auto run = [](RedisClient &redis, RedisArgs a) -> asio::awaitable<void> {
        co_await redis.command(std::move(a));
    };
    spawn_detached(executor_, run(redis_, std::move(args)), "presence write");
}

void Presence::count(const std::string &hub, const char *what,
                     std::map<std::string, long long> &counts, const std::string &name,
                     long long delta)
{
    long long n = counts[name] += delta;
    std::string key = hash_key(hub, instance_, what);

    if (n <= 0) {
        counts.erase(name);
        write({"HDEL", key, name});
    } else {
        write({"HSET", key, name, std::to_string(n)});
    }
}

// This instance saw a user's first (or last) connection here: is it one everywhere?
void Presence::check_event(const std::string &hub, const std::string &user, bool online)
{
    if (on_event_ && alive_) {
        spawn_detached(executor_, announce(hub, user, online, alive_), "presence event");
    }
}

void Presence::on_connection(const ConnectionInfo &c, bool opened)
{
    auto counts = counts_.try_emplace(c.hub).first;
    HubCounts &hub = counts->second;

    if (opened) {
        Local local{&counts->first, nullptr, {}};
        write({"HSET", hash_key(c.hub, instance_, "connections"), c.id, c.user});
        if (!c.user.empty()) {
            count(c.hub, "users", hub.users, c.user, 1);
            auto user = hub.users.find(c.user);
            local.user = &user->first;
            if (user->second == 1) {
                check_event(c.hub, c.user, true);
            }
        }
        connections_[c.id] = std::move(local);
        return;
    }

    auto it = connections_.find(c.id);
    if (it == connections_.end()) {
        return;
    }
    for (const std::string &group : it->second.groups) {
        count(c.hub, "groups", hub.groups, group, -1);
    }
    connections_.erase(it);
    write({"HDEL", hash_key(c.hub, instance_, "connections"), c.id});
    if (!c.user.empty()) {
        count(c.hub, "users", hub.users, c.user, -1);
        if (hub.users.count(c.user) == 0) {
            check_event(c.hub, c.user, false);
        }
    }
}

void Presence::on_group(const std::string &connection_id, const std::string &group, bool joined)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) {
        return;
    }
    Local &c = it->second;
    auto at = std::find(c.groups.begin(), c.groups.end(), group);

    if (joined && at == c.groups.end()) {
        c.groups.push_back(group);
        count(*c.hub, "groups", counts_[*c.hub].groups, group, 1);
    } else if (!joined && at != c.groups.end()) {
        c.groups.erase(at);
        count(*c.hub, "groups", counts_[*c.hub].groups, group, -1);
    }
}

// This instance's whole state, replacing what Redis holds of it.
std::vector<RedisArgs> Presence::rewrite_commands() const
{
    std::vector<RedisArgs> commands;
    std::map<std::string, RedisArgs> hsets;

    commands.push_back({"ZADD", prefix_ + ":presence:instances", std::to_string(unix_now_ms()),
                        instance_});
    for (const std::string &hub : hubs_) {
        for (const char *what : kinds) {
            commands.push_back({"DEL", hash_key(hub, instance_, what)});
        }
    }
    for (const auto &[id, c] : connections_) {
        RedisArgs &h = hsets[hash_key(*c.hub, instance_, "connections")];
        h.insert(h.end(), {id, c.user ? *c.user : std::string()});
    }
    for (const auto &[hub, counts] : counts_) {
        for (const auto &[user, n] : counts.users) {
            RedisArgs &h = hsets[hash_key(hub, instance_, "users")];
            h.insert(h.end(), {user, std::to_string(n)});
        }
        for (const auto &[group, n] : counts.groups) {
            RedisArgs &h = hsets[hash_key(hub, instance_, "groups")];
            h.insert(h.end(), {group, std::to_string(n)});
        }
    }
    for (auto &[key, fields] : hsets) {
        RedisArgs command = {"HSET", key};
        command.insert(command.end(), fields.begin(), fields.end());
        commands.push_back(std::move(command));
    }
    return commands;
}

void Presence::on_redis_up()
{
    auto run = [](RedisClient &redis, std::vector<RedisArgs> c) -> asio::awaitable<void> {
        Result<RedisValue> r = co_await redis.transaction(std::move(c));
        if (!r.is_ok()) {
            log_warn("presence: rewrite failed: %s", r.status().message().c_str());
        }
    };
    spawn_detached(executor_, run(redis_, rewrite_commands()), "presence rewrite");
}

asio::awaitable<void> Presence::heartbeat(std::shared_ptr<bool> alive)
{
    auto period = std::max<std::chrono::milliseconds>(std::chrono::milliseconds(ttl_) / 3,
                                                      std::chrono::milliseconds(1000));
    std::string instances = prefix_ + ":presence:instances";

    while (*alive) {
        int64_t now = unix_now_ms();
        int64_t stale_before = now - static_cast<int64_t>(ttl_.count()) * 1000;
        std::vector<RedisArgs> beat = {
            {"ZADD", instances, std::to_string(now), instance_},
            {"ZRANGEBYSCORE", instances, "-inf", "(" + std::to_string(stale_before)},
        };
        Result<RedisValue> r = co_await redis_.transaction(std::move(beat));
        if (!*alive) {
            co_return;
        }
        if (r.is_ok() && r->elements.size() == 2) {
            for (const RedisValue &name : r->elements[1].elements) {
                if (name.is_string() && name.str != instance_) {
                    co_await reap(name.str, alive);
                }
                if (!*alive) {
                    co_return;
                }
            }
        }
        timer_.expires_after(period);
        co_await timer_.async_wait(use_nothrow);
    }
}

// Removes a dead instance; its users with no connection left elsewhere are offline.
asio::awaitable<void> Presence::reap(std::string instance, std::shared_ptr<bool> alive)
{
    RedisArgs zrem = {"ZREM", prefix_ + ":presence:instances", instance};
    Result<RedisValue> removed = co_await redis_.command(std::move(zrem));
    if (!*alive || !removed.is_ok() || removed->integer != 1) {
        co_return;   // stopping, or another instance reaps it
    }
    log_info("presence: instance \"%s\" stopped sending heartbeats", instance.c_str());
    for (const std::string &hub : std::vector<std::string>(hubs_)) {
        std::vector<RedisArgs> take = {{"HKEYS", hash_key(hub, instance, "users")}};
        for (const char *what : kinds) {
            take.push_back({"DEL", hash_key(hub, instance, what)});
        }
        Result<RedisValue> r = co_await redis_.transaction(std::move(take));
        if (!*alive) {
            co_return;
        }
        if (!r.is_ok() || r->elements.empty() || !on_event_) {
            continue;
        }
        for (const RedisValue &user : r->elements[0].elements) {
            co_await announce(hub, user.str, false, alive);
            if (!*alive) {
                co_return;
            }
        }
    }
}

asio::awaitable<void> Presence::announce(std::string hub, std::string user, bool online,
                                         std::shared_ptr<bool> alive)
{
    Result<long long> n = co_await user_connections(hub, user);
    if (!*alive || !n.is_ok() || !on_event_) {
        co_return;
    }
    // a first connection counts itself; the end of the last leaves none
    if ((online && *n == 1) || (!online && *n == 0)) {
        on_event_(hub, user, online);
    }
}

asio::awaitable<Result<std::vector<std::string>>> Presence::live_instances()
{
    int64_t since = unix_now_ms() - static_cast<int64_t>(ttl_.count()) * 1000;
    RedisArgs range = {"ZRANGEBYSCORE", prefix_ + ":presence:instances", std::to_string(since),
                       "+inf"};
    Result<RedisValue> r = co_await redis_.command(std::move(range));
    if (!r.is_ok()) {
        co_return r.status();
    }
    std::vector<std::string> out;
    for (const RedisValue &e : r->elements) {
        out.push_back(e.str);
    }
    co_return out;
}

// Runs command (its key inserted second) on the hash `what` of every live instance.
asio::awaitable<Result<std::vector<RedisValue>>> Presence::each_live(const std::string &hub,
                                                                     const char *what,
                                                                     RedisArgs command)
{
    Result<std::vector<std::string>> live = co_await live_instances();
    if (!live.is_ok()) {
        co_return live.status();
    }
    std::vector<RedisArgs> commands;
    for (const std::string &instance : *live) {
        RedisArgs c = command;
        c.insert(c.begin() + 1, hash_key(hub, instance, what));
        commands.push_back(std::move(c));
    }
    if (commands.empty()) {
        co_return std::vector<RedisValue>{};
    }
    Result<RedisValue> r = co_await redis_.transaction(std::move(commands));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return std::move(r->elements);
}

asio::awaitable<Result<std::map<std::string, long long>>> Presence::users(const std::string &hub)
{
    RedisArgs command = {"HGETALL"};
    Result<std::vector<RedisValue>> all = co_await each_live(hub, "users", std::move(command));
    if (!all.is_ok()) {
        co_return all.status();
    }
    std::map<std::string, long long> out;
    for (const RedisValue &hash : *all) {
        for (size_t i = 0; i + 1 < hash.elements.size(); i += 2) {
            out[hash.elements[i].str] += std::strtoll(hash.elements[i + 1].str.c_str(),
                                                      nullptr, 10);
        }
    }
    co_return out;
}

asio::awaitable<Result<long long>> Presence::user_connections(const std::string &hub,
                                                              const std::string &user)
{
    RedisArgs command = {"HGET", user};
    Result<std::vector<RedisValue>> all = co_await each_live(hub, "users", std::move(command));
    if (!all.is_ok()) {
        co_return all.status();
    }
    long long n = 0;
    for (const RedisValue &v : *all) {
        n += v.is_string() ? std::strtoll(v.str.c_str(), nullptr, 10) : 0;
    }
    co_return n;
}

asio::awaitable<Result<bool>> Presence::connection_exists(const std::string &hub,
                                                          const std::string &id)
{
    RedisArgs command = {"HEXISTS", id};
    Result<std::vector<RedisValue>> all = co_await each_live(hub, "connections",
                                                             std::move(command));
    if (!all.is_ok()) {
        co_return all.status();
    }
    co_return std::any_of(all->begin(), all->end(),
                          [](const RedisValue &v) { return v.integer == 1; });
}

asio::awaitable<Result<bool>> Presence::group_exists(const std::string &hub,
                                                     const std::string &group)
{
    RedisArgs command = {"HEXISTS", group};
    Result<std::vector<RedisValue>> all = co_await each_live(hub, "groups", std::move(command));
    if (!all.is_ok()) {
        co_return all.status();
    }
    co_return std::any_of(all->begin(), all->end(),
                          [](const RedisValue &v) { return v.integer == 1; });
}

}  // namespace signalrd
