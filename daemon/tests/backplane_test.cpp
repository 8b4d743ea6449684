// The registry's and the backplane's connection tables against a real redis-server:
// hub messages to a group, a user and a connection reach exactly the local members,
// through member lists that change while a group's send list is cached, and channels
// that exist only while someone here holds their audience.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "backplane.h"
#include "reconnect_token.h"
#include "test_util.h"

namespace signalrd {
namespace {

using Kind = HubAudience::Kind;
using testing::run_for;
using testing::run_until;
const char *const hub_name = "NotificationHub";

// A port that records what it is asked to send: one entry per delivery, with the
// target, and how many multicasts carried them.
class RecordingPort final : public LinkPort {
public:
    bool send_message(const std::string &id, const sr_message_t &msg) override
    {
        deliveries.push_back({id, msg.target ? msg.target : ""});
        return true;
    }
    void send_multicast(const std::vector<const std::string *> &ids,
                        const sr_message_t &msg) override
    {
        multicasts++;
        for (const std::string *id : ids) {
            deliveries.push_back({*id, msg.target ? msg.target : ""});
        }
    }
    void send_close(const std::string &id, const char *, bool) override { closed.push_back(id); }

    // how many times each connection got target
    std::map<std::string, int> got(const std::string &target) const
    {
        std::map<std::string, int> n;
        for (const auto &[id, t] : deliveries) {
            if (t == target) {
                n[id]++;
            }
        }
        return n;
    }

    std::vector<std::pair<std::string, std::string>> deliveries;
    std::vector<std::string> closed;
    int multicasts = 0;
};

class QuietHub final : public Hub {
public:
    void on_connected(const ConnectionInfo &c) override
    {
        claims_at_open[c.id] = json_text(c.claims.get());
    }
    void on_message(const ConnectionInfo &c, sr_message_t &) override
    {
        claims_later[c.id] = json_text(c.claims.get());
    }
    void on_disconnected(const ConnectionInfo &) override {}
    void shutdown() override {}

    std::map<std::string, std::string> claims_at_open;
    std::map<std::string, std::string> claims_later;
};

class BackplaneTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(redis_server_.start()) << "redis-server could not be started";
        auto ep = parse_redis_url(redis_server_.url());
        ASSERT_TRUE(ep.is_ok());
        redis_ = std::make_unique<RedisClient>(io_.get_executor(), *ep);
        redis_->start();
        ASSERT_TRUE(run_until(io_, [this] { return redis_->connected(); }));
        store_ = std::make_unique<ConversationStore>(*redis_, "t", "instance-a", 25, 300);
        registry_.add_hub(hub_name, hub_);
        backplane_ = std::make_unique<Backplane>(io_.get_executor(), *ep, *redis_, *store_,
                                                 bus_, registry_);
        registry_.set_observer([this](const ConnectionInfo &c, bool opened) {
            backplane_->on_connection(c, opened);
        });
        backplane_->start();
        ASSERT_TRUE(run_until(io_, [this] { return backplane_->subscriber_up(); }));
    }

    void TearDown() override
    {
        if (backplane_) {
            backplane_->stop();
        }
        if (redis_) {
            redis_->stop();
        }
        run_for(io_, std::chrono::milliseconds(20));
        backplane_.reset();
        redis_.reset();
        redis_server_.stop();
    }

    void open(RecordingPort &port, const std::string &id, const char *user,
              const char *claims = nullptr)
    {
        sr_ipc_open_t o{};
        o.hub = strdup(hub_name);
        o.user = strdup(user);
        o.protocol = SR_PROTOCOL_JSON;
        o.transport = strdup("WebSockets");
        o.claims = claims ? parse_json(claims)->release() : nullptr;
        registry_.open(port, id, o);
        sr_ipc_open_clear(&o);
    }

    // Publishes target to the audience and waits until Redis answered; the number of
    // instances that received it.
    long long send(Kind kind, const std::string &name, const std::string &target,
                   const std::vector<std::string> &excluded = {})
    {
        long long instances = -1;
        auto run = [&]() -> asio::awaitable<void> {
            // named: GCC 12 mishandles a braced temporary inside co_await
            HubAudience audience{kind, hub_name, name};
            Json args = Json::array();
            Result<long long> r = co_await backplane_->send(audience, target, args.get(),
                                                            excluded);
            instances = r.is_ok() ? *r : -2;
        };
        asio::co_spawn(io_, run(), asio::detached);
        EXPECT_TRUE(run_until(io_, [&] { return instances != -1; }));
        return instances;
    }

    // Lets the subscriptions and unsubscriptions asked for so far reach Redis.
    void settle()
    {
        run_for(io_, std::chrono::milliseconds(100));
    }

    std::map<std::string, int> both(const std::string &target) const
    {
        std::map<std::string, int> n = a_.got(target);
        for (const auto &[id, k] : b_.got(target)) {
            n[id] += k;
        }
        return n;
    }

    bool wait_for(const std::string &target, size_t deliveries)
    {
        return run_until(io_, [&] {
            size_t n = 0;
            for (const auto &[id, k] : both(target)) {
                n += k;
            }
            return n >= deliveries;
        });
    }

    asio::io_context io_;
    testing::RedisServer redis_server_;
    std::unique_ptr<RedisClient> redis_;
    std::unique_ptr<ConversationStore> store_;
    FragmentBus bus_;
    QuietHub hub_;
    HubRegistry registry_;
    std::unique_ptr<Backplane> backplane_;
    RecordingPort a_;
    RecordingPort b_;
};

TEST_F(BackplaneTest, AGroupSendListIsReusedUntilMembersOrLinksChange)
{
    open(a_, "c1", "u1");
    open(a_, "c2", "u2");
    open(b_, "c3", "u3");
    for (const char *id : {"c1", "c2", "c3"}) {
        backplane_->change_local_group(id, "g", true);
    }
    settle();

    ASSERT_EQ(send(Kind::group, "g", "m1"), 1);
    ASSERT_TRUE(wait_for("m1", 3));
    EXPECT_EQ(both("m1"), (std::map<std::string, int>{{"c1", 1}, {"c2", 1}, {"c3", 1}}));
    EXPECT_EQ(a_.multicasts, 1) << "one multicast per link";
    EXPECT_EQ(b_.multicasts, 1);
    EXPECT_FALSE(backplane_->group_send_list_reused(hub_name, "g"));

    ASSERT_EQ(send(Kind::group, "g", "m2"), 1);
    ASSERT_TRUE(wait_for("m2", 3));
    EXPECT_EQ(both("m2"), both("m1"));
    EXPECT_TRUE(backplane_->group_send_list_reused(hub_name, "g"));

    // a member leaves and another joins while the list is cached
    backplane_->change_local_group("c2", "g", false);
    open(b_, "c4", "u4");
    backplane_->change_local_group("c4", "g", true);
    ASSERT_EQ(send(Kind::group, "g", "m3"), 1);
    ASSERT_TRUE(wait_for("m3", 3));
    EXPECT_EQ(both("m3"), (std::map<std::string, int>{{"c1", 1}, {"c3", 1}, {"c4", 1}}));
    EXPECT_FALSE(backplane_->group_send_list_reused(hub_name, "g"));

    // a member moved to another link (stateful reconnect) is sent to there
    ASSERT_TRUE(registry_.move("c1", a_, b_));
    ASSERT_EQ(send(Kind::group, "g", "m4"), 1);
    ASSERT_TRUE(wait_for("m4", 3));
    EXPECT_EQ(a_.got("m4"), (std::map<std::string, int>{}));
    EXPECT_EQ(b_.got("m4"), (std::map<std::string, int>{{"c1", 1}, {"c3", 1}, {"c4", 1}}));

    // a member that closes is gone from the list, and the last one takes the channel along
    registry_.closed(b_, "c3");
    ASSERT_EQ(send(Kind::group, "g", "m5"), 1);
    ASSERT_TRUE(wait_for("m5", 2));
    EXPECT_EQ(both("m5"), (std::map<std::string, int>{{"c1", 1}, {"c4", 1}}));
    registry_.closed(b_, "c1");
    registry_.closed(b_, "c4");
    EXPECT_EQ(backplane_->member_count(Kind::group, hub_name, "g"), 0u);
}

TEST_F(BackplaneTest, MembersLeavingInAnyOrderLeaveTheOthersIntact)
{
    std::vector<std::string> ids;
    for (int i = 0; i < 40; i++) {
        ids.push_back("c" + std::to_string(i));
        open(i % 2 ? a_ : b_, ids.back(), ("u" + std::to_string(i % 7)).c_str());
        backplane_->change_local_group(ids.back(), "g", true);
        backplane_->change_local_group(ids.back(), "h" + std::to_string(i % 3), true);
    }
    std::mt19937 rng(7);
    std::vector<std::string> order = ids;
    std::shuffle(order.begin(), order.end(), rng);
    std::set<std::string> left(ids.begin(), ids.end());
    for (size_t i = 0; i < 25; i++) {
        // some leave the group, some close altogether
        if (i % 2) {
            backplane_->change_local_group(order[i], "g", false);
        } else {
            registry_.closed(std::stoi(order[i].substr(1)) % 2 ? a_ : b_, order[i]);
        }
        left.erase(order[i]);
    }
    settle();
    EXPECT_EQ(backplane_->member_count(Kind::group, hub_name, "g"), left.size());

    ASSERT_EQ(send(Kind::group, "g", "rest"), 1);
    ASSERT_TRUE(wait_for("rest", left.size()));
    run_for(io_, std::chrono::milliseconds(50));
    std::map<std::string, int> expected;
    for (const std::string &id : left) {
        expected[id] = 1;
    }
    EXPECT_EQ(both("rest"), expected);
}

TEST_F(BackplaneTest, UserAndConnectionChannelsLastAsLongAsTheirConnections)
{
    open(a_, "c1", "alice");
    open(b_, "c2", "alice");
    open(a_, "c3", "bob");
    settle();
    size_t with_three = backplane_->subscription_count();

    EXPECT_EQ(send(Kind::user, "alice", "to-alice"), 1);
    EXPECT_EQ(send(Kind::connection, "c3", "to-c3"), 1);
    EXPECT_EQ(send(Kind::user, "alice", "to-alice-but-c1", {"c1"}), 1);
    EXPECT_EQ(send(Kind::all, "", "to-all", {"c2"}), 1);
    ASSERT_TRUE(wait_for("to-all", 2));
    ASSERT_TRUE(wait_for("to-alice-but-c1", 1));
    EXPECT_EQ(both("to-alice"), (std::map<std::string, int>{{"c1", 1}, {"c2", 1}}));
    EXPECT_EQ(both("to-c3"), (std::map<std::string, int>{{"c3", 1}}));
    EXPECT_EQ(both("to-alice-but-c1"), (std::map<std::string, int>{{"c2", 1}}));
    EXPECT_EQ(both("to-all"), (std::map<std::string, int>{{"c1", 1}, {"c3", 1}}));

    // alice keeps her channel while one connection is left; c1's goes with it
    registry_.closed(a_, "c1");
    settle();
    EXPECT_EQ(send(Kind::connection, "c1", "late"), 0) << "nobody holds c1 any more";
    EXPECT_EQ(send(Kind::user, "alice", "still"), 1);
    registry_.closed(b_, "c2");
    settle();
    EXPECT_EQ(send(Kind::user, "alice", "gone"), 0);
    EXPECT_EQ(backplane_->subscription_count(), with_three - 3);
    EXPECT_EQ(backplane_->member_count(Kind::user, hub_name, "alice"), 0u);

    // the same id opened again on another link is reached there only
    open(b_, "c3", "bob");
    settle();
    EXPECT_EQ(send(Kind::connection, "c3", "again"), 1);
    ASSERT_TRUE(wait_for("again", 1));
    run_for(io_, std::chrono::milliseconds(50));
    EXPECT_EQ(b_.got("again"), (std::map<std::string, int>{{"c3", 1}}));
    EXPECT_EQ(a_.got("again"), (std::map<std::string, int>{}));
}

TEST_F(BackplaneTest, ControlMessagesChangeGroupsOfUsersAcrossTheirConnections)
{
    open(a_, "c1", "alice");
    open(b_, "c2", "alice");
    settle();
    auto control = [&](Kind kind, const std::string &name, const std::string &type,
                       const std::string &arg) {
        long long n = -1;
        auto run = [&]() -> asio::awaitable<void> {
            HubAudience audience{kind, hub_name, name};
            Result<long long> r = co_await backplane_->control(audience, type, arg);
            n = r.is_ok() ? *r : -2;
        };
        asio::co_spawn(io_, run(), asio::detached);
        EXPECT_TRUE(run_until(io_, [&] { return n != -1; }));
        return n;
    };

    EXPECT_EQ(control(Kind::user, "alice", "join", "g1"), 1);
    EXPECT_EQ(control(Kind::user, "alice", "join", "g2"), 1);
    ASSERT_TRUE(run_until(io_, [&] {
        return backplane_->member_count(Kind::group, hub_name, "g2") == 2;
    }));
    EXPECT_EQ(backplane_->member_count(Kind::group, hub_name, "g1"), 2u);

    EXPECT_EQ(control(Kind::connection, "c1", "leave_all", ""), 1);
    ASSERT_TRUE(run_until(io_, [&] {
        return backplane_->member_count(Kind::group, hub_name, "g1") == 1;
    }));
    EXPECT_EQ(backplane_->member_count(Kind::group, hub_name, "g2"), 1u);

    EXPECT_EQ(control(Kind::group, "g2", "close", "bye"), 1);
    ASSERT_TRUE(run_until(io_, [&] { return !registry_.has_connection("c2"); }));
    EXPECT_EQ(b_.closed, std::vector<std::string>{"c2"});
    EXPECT_EQ(backplane_->member_count(Kind::group, hub_name, "g1"), 0u);
    EXPECT_TRUE(registry_.has_connection("c1"));
}

TEST_F(BackplaneTest, AMessageFromThisInstanceIsDeliveredHereAtOnceAndOnlyOnce)
{
    open(a_, "c1", "alice");
    backplane_->change_local_group("c1", "g", true);
    settle();

    bool started = false;
    long long instances = -1;
    auto run = [&]() -> asio::awaitable<void> {
        started = true;
        HubAudience group{Kind::group, hub_name, "g"};
        Json args = Json::array();
        Result<long long> r = co_await backplane_->send(group, "now", args.get());
        instances = r.is_ok() ? *r : -2;
    };
    asio::co_spawn(io_, run(), asio::detached);
    while (!started) {
        io_.run_one();
    }
    // the coroutine waits for Redis's answer: nothing came back through Redis yet
    EXPECT_EQ(a_.got("now"), (std::map<std::string, int>{{"c1", 1}}));
    ASSERT_TRUE(run_until(io_, [&] { return instances != -1; }));
    EXPECT_EQ(instances, 1) << "Redis still counts this instance";
    settle();
    EXPECT_EQ(a_.got("now"), (std::map<std::string, int>{{"c1", 1}}))
        << "the copy from the subscription is dropped";

    // a join published before a send is applied before it, also here
    open(a_, "c2", "bob");
    settle();
    auto join_then_send = [&]() -> asio::awaitable<void> {
        HubAudience c2{Kind::connection, hub_name, "c2"};
        HubAudience group{Kind::group, hub_name, "g"};
        co_await backplane_->control(c2, "join", "g");
        Json args = Json::array();
        co_await backplane_->send(group, "after-join", args.get());
        instances = -3;
    };
    asio::co_spawn(io_, join_then_send(), asio::detached);
    ASSERT_TRUE(run_until(io_, [&] { return instances == -3; }));
    settle();
    EXPECT_EQ(a_.got("after-join"), (std::map<std::string, int>{{"c1", 1}, {"c2", 1}}));
}

TEST_F(BackplaneTest, AnotherInstancesMessagesStillArriveThroughRedisOnce)
{
    auto ep = parse_redis_url(redis_server_.url());
    ConversationStore other_store(*redis_, "t", "instance-b", 25, 300);
    HubRegistry other_registry;
    QuietHub other_hub;
    other_registry.add_hub(hub_name, other_hub);
    Backplane other(io_.get_executor(), *ep, *redis_, other_store, bus_, other_registry);
    other_registry.set_observer(
        [&](const ConnectionInfo &c, bool opened) { other.on_connection(c, opened); });
    other.start();
    ASSERT_TRUE(run_until(io_, [&] { return other.subscriber_up(); }));

    open(a_, "here", "alice");
    sr_ipc_open_t o{};
    o.hub = strdup(hub_name);
    o.user = strdup("alice");
    o.transport = strdup("WebSockets");
    other_registry.open(b_, "there", o);
    sr_ipc_open_clear(&o);
    settle();

    auto from_other = [&]() -> asio::awaitable<void> {
        HubAudience alice{Kind::user, hub_name, "alice"};
        Json args = Json::array();
        co_await other.send(alice, "from-b", args.get());
    };
    asio::co_spawn(io_, from_other(), asio::detached);
    EXPECT_EQ(send(Kind::user, "alice", "from-a"), 2);
    ASSERT_TRUE(wait_for("from-b", 2));
    ASSERT_TRUE(wait_for("from-a", 2));
    settle();
    for (const char *target : {"from-a", "from-b"}) {
        EXPECT_EQ(both(target), (std::map<std::string, int>{{"here", 1}, {"there", 1}}))
            << target;
    }
    other.stop();
    run_for(io_, std::chrono::milliseconds(20));
}

TEST_F(BackplaneTest, TheRegistryKeepsClaimsForTheOpenAndIndexesTokenHashes)
{
    open(a_, "c1", "alice", R"({"role":"admin"})");
    open(a_, "c2", "bob");
    EXPECT_EQ(hub_.claims_at_open["c1"], R"({"role":"admin"})");

    sr_message_t msg;
    sr_message_init(&msg, SR_MSG_INVOCATION);
    registry_.invoke(a_, "c1", msg);
    sr_message_clear(&msg);
    EXPECT_EQ(hub_.claims_later["c1"], "{}") << "claims are not kept past the open";

    const std::string h1 = token_hash("token-1");
    const std::string h2 = token_hash("token-2");
    const std::string h3 = token_hash("token-3");
    registry_.set_token_hash("c1", h1);
    registry_.set_token_hash("c2", h2);
    EXPECT_EQ(registry_.find_by_token_hash(h1), "c1");
    EXPECT_EQ(registry_.find_by_token_hash(h2), "c2");
    registry_.set_token_hash("c1", h3);
    EXPECT_EQ(registry_.find_by_token_hash(h1), "");
    EXPECT_EQ(registry_.find_by_token_hash(h3), "c1");
    registry_.set_token_hash("unknown", token_hash("token-4"));
    EXPECT_EQ(registry_.find_by_token_hash(token_hash("token-4")), "");
    // what is not 64 hex digits is neither indexed nor found
    registry_.set_token_hash("c2", "not-a-hash");
    EXPECT_EQ(registry_.find_by_token_hash(h2), "c2");
    EXPECT_EQ(registry_.find_by_token_hash("not-a-hash"), "");
    EXPECT_EQ(registry_.find_by_token_hash(std::string(64, 'z')), "");

    registry_.closed(a_, "c1");
    EXPECT_EQ(registry_.find_by_token_hash(h3), "");
    EXPECT_EQ(registry_.find_by_token_hash(h2), "c2");
    EXPECT_FALSE(registry_.has_connection("c1"));
    EXPECT_EQ(registry_.port_of("c2"), &a_);
    registry_.link_dropped(a_);
    EXPECT_EQ(registry_.connection_count(), 0u);
    EXPECT_EQ(registry_.find_by_token_hash(h2), "");
}

}  // namespace
}  // namespace signalrd
