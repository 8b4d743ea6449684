#include "group_store.h"

#include <algorithm>
#include <cstdlib>

#include "json.h"

namespace signalrd {

namespace {

std::vector<std::string> strings_of(const RedisValue &v)
{
    std::vector<std::string> out;

    for (const RedisValue &e : v.elements) {
        if (e.is_string()) {
            out.push_back(e.str);
        }
    }
    return out;
}

}  // namespace

std::string GroupStore::connection_key(const std::string &hub, const std::string &id) const
{
    return prefix_ + ":groups:" + hub + ":connection:" + id;
}

std::string GroupStore::user_key(const std::string &hub, const std::string &user) const
{
    return prefix_ + ":groups:" + hub + ":user:" + user;
}

asio::awaitable<Status> GroupStore::run(RedisArgs args)
{
    Result<RedisValue> r = co_await redis_.command(std::move(args));
    co_return r.is_ok() ? Status::ok() : r.status();
}

asio::awaitable<Status> GroupStore::add_connection(const std::string &hub, const std::string &id,
                                                   const std::string &group)
{
    RedisArgs command = {"SADD", connection_key(hub, id), group};
    co_return co_await run(std::move(command));
}

asio::awaitable<Status> GroupStore::remove_connection(const std::string &hub,
                                                      const std::string &id,
                                                      const std::string &group)
{
    RedisArgs command = {"SREM", connection_key(hub, id), group};
    co_return co_await run(std::move(command));
}

asio::awaitable<Status> GroupStore::clear_connection(const std::string &hub,
                                                     const std::string &id)
{
    RedisArgs command = {"DEL", connection_key(hub, id)};
    co_return co_await run(std::move(command));
}

asio::awaitable<Status> GroupStore::connection_gone(const std::string &hub,
                                                    const std::string &id)
{
    RedisArgs command = {"EXPIRE", connection_key(hub, id),
                            std::to_string(connection_grace.count())};
    co_return co_await run(std::move(command));
}

asio::awaitable<Result<std::vector<std::string>>> GroupStore::groups_on_connect(
    const std::string &hub, const std::string &id, const std::string &user)
{
    std::vector<RedisArgs> commands = {
        {"SMEMBERS", connection_key(hub, id)},
        {"PERSIST", connection_key(hub, id)},
    };
    if (!user.empty()) {
        commands.push_back({"ZRANGEBYSCORE", user_key(hub, user),
                            std::to_string(unix_now_ms()), "+inf"});
    }
    Result<RedisValue> r = co_await redis_.transaction(std::move(commands));
    if (!r.is_ok()) {
        co_return r.status();
    }
    std::vector<std::string> groups;
    for (size_t i = 0; i < r->elements.size(); i += 2) {
        std::vector<std::string> some = strings_of(r->elements[i]);
        groups.insert(groups.end(), some.begin(), some.end());
    }
    co_return groups;
}

asio::awaitable<Status> GroupStore::add_user(const std::string &hub, const std::string &user,
                                             const std::string &group,
                                             std::chrono::seconds ttl)
{
    int64_t now = unix_now_ms();
    int64_t until = now + static_cast<int64_t>(ttl.count()) * 1000;
    std::string key = user_key(hub, user);
    int64_t key_ttl = static_cast<int64_t>(user_default_ttl.count());

    std::vector<RedisArgs> command = {
        {"ZREMRANGEBYSCORE", key, "-inf", std::to_string(now)},
        {"ZADD", key, std::to_string(until), group},
        {"EXPIRE", key, std::to_string(std::max<int64_t>(key_ttl, ttl.count()))},
    };
    Result<RedisValue> r = co_await redis_.transaction(std::move(command));
    co_return r.is_ok() ? Status::ok() : r.status();
}

asio::awaitable<Status> GroupStore::remove_user(const std::string &hub, const std::string &user,
                                                const std::string &group)
{
    RedisArgs command = {"ZREM", user_key(hub, user), group};
    co_return co_await run(std::move(command));
}

asio::awaitable<Result<bool>> GroupStore::user_in_group(const std::string &hub,
                                                        const std::string &user,
                                                        const std::string &group)
{
    RedisArgs command = {"ZSCORE", user_key(hub, user), group};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (!r->is_string()) {
        co_return false;
    }
    co_return std::strtoll(r->str.c_str(), nullptr, 10) > unix_now_ms();
}

asio::awaitable<Result<std::vector<std::string>>> GroupStore::clear_user(const std::string &hub,
                                                                         const std::string &user)
{
    std::string key = user_key(hub, user);
    std::vector<RedisArgs> command = {{"ZRANGE", key, "0", "-1"}, {"DEL", key}};
    Result<RedisValue> r = co_await redis_.transaction(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (r->elements.empty()) {
        co_return std::vector<std::string>{};
    }
    co_return strings_of(r->elements[0]);
}

}  // namespace signalrd
