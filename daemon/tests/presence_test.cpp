// Presence and stored group membership against a real redis-server: two Presence objects
// stand for two instances; one stops its heartbeats as a killed instance would.

#include <gtest/gtest.h>

#include "group_store.h"
#include "presence.h"
#include "test_util.h"

namespace signalrd {
namespace {

using testing::run_coro;
using testing::run_until;

const std::string hub = "NotificationHub";

class PresenceTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(server_.start()) << "redis-server could not be started";
        auto ep = parse_redis_url(server_.url());
        ASSERT_TRUE(ep.is_ok());
        redis_ = std::make_unique<RedisClient>(io_.get_executor(), *ep);
        redis_->start();
        ASSERT_TRUE(run_until(io_, [this] { return redis_->connected(); }));
        for (const char *name : {"instance-a", "instance-b"}) {
            instances_.push_back(std::make_unique<Presence>(
                io_.get_executor(), *redis_, "t", name, std::chrono::seconds(3),
                std::vector<std::string>{hub}));
            instances_.back()->start();
        }
    }

    void TearDown() override
    {
        instances_.clear();
        if (redis_) {
            redis_->stop();
        }
        testing::run_for(io_, std::chrono::milliseconds(20));
        redis_.reset();
        server_.stop();
    }

    static ConnectionInfo connection(const std::string &id, const std::string &user)
    {
        ConnectionInfo c;
        c.id = id;
        c.hub = hub;
        c.user = user;
        return c;
    }

    std::map<std::string, long long> users()
    {
        auto r = run_coro(io_, instances_[0]->users(hub));
        return r && r->is_ok() ? **r : std::map<std::string, long long>{{"error", -1}};
    }

    bool eventually(const std::function<bool()> &pred, int ms = 2000)
    {
        return run_until(io_, pred, std::chrono::milliseconds(ms));
    }

    asio::io_context io_;
    testing::RedisServer server_;
    std::unique_ptr<RedisClient> redis_;
    std::vector<std::unique_ptr<Presence>> instances_;
};

TEST_F(PresenceTest, CountsUsersConnectionsAndGroupsOverInstances)
{
    Presence &a = *instances_[0];
    Presence &b = *instances_[1];

    a.on_connection(connection("c1", "alice"), true);
    b.on_connection(connection("c2", "alice"), true);
    b.on_connection(connection("c3", "bob"), true);
    b.on_group("c3", "admins", true);
    using Users = std::map<std::string, long long>;
    EXPECT_TRUE(eventually([&] { return users() == Users{{"alice", 2}, {"bob", 1}}; }))
        << "alice has a connection on each instance";

    auto exists = run_coro(io_, a.connection_exists(hub, "c3"));
    EXPECT_TRUE(exists && exists->is_ok() && **exists) << "a sees b's connection";
    auto group = run_coro(io_, a.group_exists(hub, "admins"));
    EXPECT_TRUE(group && group->is_ok() && **group);

    b.on_connection(connection("c3", "bob"), false);
    a.on_connection(connection("c1", "alice"), false);
    EXPECT_TRUE(eventually([&] { return users() == Users{{"alice", 1}}; }));
    group = run_coro(io_, a.group_exists(hub, "admins"));
    EXPECT_TRUE(group && group->is_ok() && !**group) << "the group left with its member";
    auto gone = run_coro(io_, a.user_connections(hub, "bob"));
    EXPECT_TRUE(gone && gone->is_ok() && **gone == 0);
}

TEST_F(PresenceTest, ADeadInstanceStopsCountingAndItsUsersAreReportedOffline)
{
    std::vector<std::pair<std::string, bool>> events;
    instances_[0]->set_event_handler([&](const std::string &, const std::string &user,
                                         bool online) { events.emplace_back(user, online); });

    instances_[0]->on_connection(connection("c1", "alice"), true);
    instances_[1]->on_connection(connection("c2", "bob"), true);
    ASSERT_TRUE(eventually([&] { return users().size() == 2; }));
    ASSERT_TRUE(eventually([&] { return !events.empty(); }));
    EXPECT_EQ(events.front(), std::make_pair(std::string("alice"), true));

    instances_[1]->stop();   // no more heartbeats, its hashes stay behind
    EXPECT_TRUE(eventually([&] { return users().count("bob") == 0; }, 6000))
        << "bob counts no more once b's heartbeat is older than the ttl";
    EXPECT_TRUE(eventually([&] { return events.size() == 2; }, 3000));
    EXPECT_EQ(events.back(), std::make_pair(std::string("bob"), false))
        << "the instance that reaped b reports its user offline";
    auto left = run_coro(io_, redis_->command({"EXISTS", instances_[0]->hash_key(
                                                   hub, "instance-b", "users")}));
    EXPECT_TRUE(left && left->is_ok() && (*left)->integer == 0) << "b's hashes are deleted";
}

TEST_F(PresenceTest, RedisLosingEverythingIsRepairedOnTheNextUp)
{
    instances_[0]->on_connection(connection("c1", "alice"), true);
    ASSERT_TRUE(eventually([&] { return users().count("alice") == 1; }));

    run_coro(io_, redis_->command({"FLUSHALL"}));
    instances_[0]->on_redis_up();
    EXPECT_TRUE(eventually([&] { return users().count("alice") == 1; }))
        << "the instance writes its whole state again";
}

using GroupStoreTest = PresenceTest;

TEST_F(GroupStoreTest, ConnectionAndUserMembershipsAreReadBackOnConnect)
{
    GroupStore groups(*redis_, "t");
    auto ok = [](const std::optional<Status> &s) { return s && s->is_ok(); };

    EXPECT_TRUE(ok(run_coro(io_, groups.add_connection(hub, "c1", "readers"))));
    EXPECT_TRUE(ok(run_coro(io_, groups.add_user(hub, "alice", "fans",
                                                 std::chrono::seconds(60)))));
    EXPECT_TRUE(ok(run_coro(io_, groups.add_user(hub, "alice", "brief",
                                                 std::chrono::seconds(1)))));
    testing::run_for(io_, std::chrono::milliseconds(1100));

    auto read = run_coro(io_, groups.groups_on_connect(hub, "c1", "alice"));
    ASSERT_TRUE(read && read->is_ok());
    std::set<std::string> got((*read)->begin(), (*read)->end());
    EXPECT_EQ(got, (std::set<std::string>{"readers", "fans"})) << "the expired one is left out";
    auto in = run_coro(io_, groups.user_in_group(hub, "alice", "brief"));
    EXPECT_TRUE(in && in->is_ok() && !**in);

    EXPECT_TRUE(ok(run_coro(io_, groups.connection_gone(hub, "c1"))));
    auto ttl = run_coro(io_, redis_->command({"TTL", groups.connection_key(hub, "c1")}));
    EXPECT_TRUE(ttl && ttl->is_ok() && (*ttl)->integer > 0 && (*ttl)->integer <= 120)
        << "an ended connection's groups expire after the grace";
    run_coro(io_, groups.groups_on_connect(hub, "c1", ""));
    ttl = run_coro(io_, redis_->command({"TTL", groups.connection_key(hub, "c1")}));
    EXPECT_TRUE(ttl && ttl->is_ok() && (*ttl)->integer == -1) << "announced again: kept";

    auto cleared = run_coro(io_, groups.clear_user(hub, "alice"));
    ASSERT_TRUE(cleared && cleared->is_ok());
    EXPECT_EQ((*cleared)->size(), 2u);
    in = run_coro(io_, groups.user_in_group(hub, "alice", "fans"));
    EXPECT_TRUE(in && in->is_ok() && !**in);
}

}  // namespace
}  // namespace signalrd
