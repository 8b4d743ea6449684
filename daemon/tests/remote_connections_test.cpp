// Stateful reconnect across two instances sharing a real redis-server: a connection
// parked on its home is adopted through the other instance, its messages then travel
// both ways over the instance channels, and it can be parked again, closed, or lost.

#include "chat_fixture.h"
#include "backplane.h"
#include "parking.h"
#include "reconnect_util.h"
#include "remote_connections.h"

namespace signalrd {
namespace {

using namespace testing;

ParkingOptions short_waits()
{
    ParkingOptions options;
    options.unclaimed_wait = std::chrono::milliseconds(300);
    return options;
}

// One instance: its own registry, lot, worker socket, backplane and remote connections,
// on the test's loop.
struct Instance {
    Instance(asio::io_context &io, const RedisEndpoint &endpoint, const std::string &name,
             const std::string &dir)
        : redis(io.get_executor(), endpoint),
          store(redis, "test", name, 25, 300),
          lot(io.get_executor(), registry, short_waits()),
          links(io.get_executor(), registry, LinkOptions{}),
          backplane(io.get_executor(), endpoint, redis, store, bus, registry),
          remote(io.get_executor(), redis, "test", name, registry, lot,
                 [this](const std::string &to, std::string payload) {
                     backplane.publish_to_instance(to, std::move(payload));
                 },
                 RemoteOptions{std::chrono::milliseconds(500), std::chrono::milliseconds(100),
                               3}),
          path(dir + "/" + name + ".sock")
    {
        registry.add_hub("Test", hub);
        links.set_reconnect(&lot);
        backplane.set_instance_handler([this](const std::string &type, const json_t *m) {
            remote.on_instance_message(type, m);
        });
        EXPECT_TRUE(links.listen(path).is_ok());
        redis.start();
        backplane.start();
    }

    // Before the loop runs once more: the links end, then Redis.
    void stop()
    {
        links.close_all();
        backplane.stop();
        redis.stop();
    }

    void hub_send(const std::string &conn, const std::string &invocation)
    {
        sr_message_t m = item(invocation);
        registry.send(conn, m);
        sr_message_clear(&m);
    }

    RedisClient redis;
    ConversationStore store;
    FragmentBus bus;
    HubRegistry registry;
    RecordingHub hub;
    ParkingLot lot;
    WorkerLinkServer links;
    Backplane backplane;
    RemoteConnections remote;
    std::string path;
};

class RemoteConnectionsTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(redis_server_.start()) << "redis-server could not be started";
        auto endpoint = parse_redis_url(redis_server_.url());
        ASSERT_TRUE(endpoint.is_ok());
        dir_ = make_temp_dir();
        a_ = std::make_unique<Instance>(io_, *endpoint, "a", dir_);
        b_ = std::make_unique<Instance>(io_, *endpoint, "b", dir_);
        ASSERT_TRUE(run_until(io_, [&] { return subscribers("a") == 1 && subscribers("b") == 1; }))
            << "both instances listen on their channels";
    }

    void TearDown() override
    {
        a_->stop();
        if (b_) {
            b_->stop();
        }
        run_for(io_, std::chrono::milliseconds(50));
        a_.reset();
        b_.reset();
        run_for(io_, std::chrono::milliseconds(20));
        redis_server_.stop();
        remove_tree(dir_);
    }

    long long subscribers(const std::string &instance)
    {
        RedisArgs numsub = {"PUBSUB", "NUMSUB", "test:instance:" + instance};
        auto r = run_coro(io_, a_->redis.command(std::move(numsub)));
        if (!r || !r->is_ok() || (*r)->elements.size() != 2) {
            return -1;
        }
        return (*r)->elements[1].integer;
    }

    std::optional<std::string> redis_get(const std::string &key)
    {
        auto r = run_coro(io_, a_->redis.command({"GET", key}));
        if (!r || !r->is_ok() || !(*r)->is_string()) {
            return std::nullopt;
        }
        return (*r)->str;
    }

    void hello(FakeWorker &w, int64_t pid)
    {
        w.hello(SR_IPC_VERSION, pid);
        ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_HELLO) != nullptr; }));
    }

    // Opens conn on a's worker w, parks it there with two messages appended.
    Bytes park_on_a(FakeWorker &w, const std::string &conn, const std::string &token)
    {
        w.open(conn, "Test", "alice");
        EXPECT_TRUE(w.wait([&] { return a_->registry.has_connection(conn); }));
        detach(w, conn, 30000, 100000);
        EXPECT_TRUE(w.wait([&] { return w.find(SR_IPC_RELEASE) != nullptr; }));
        a_->hub_send(conn, "parked-1");
        a_->hub_send(conn, "parked-2");
        Bytes state = state_body(token, {});
        send_bytes(w, SR_IPC_PARK, conn, state);
        EXPECT_TRUE(w.wait([&] { return a_->lot.holds(conn) && redis_get(key(token)); }));
        return state;
    }

    std::string key(const std::string &token) { return "test:parked:" + token_hash(token); }

    asio::io_context io_;
    RedisServer redis_server_;
    std::string dir_;
    std::unique_ptr<Instance> a_;
    std::unique_ptr<Instance> b_;
};

TEST_F(RemoteConnectionsTest, AConnectionParkedOnItsHomeIsAdoptedThroughAnotherInstance)
{
    FakeWorker wa(io_, a_->path);
    FakeWorker wb(io_, b_->path);
    hello(wa, 100);
    hello(wb, 200);

    Bytes state = park_on_a(wa, "c1", "tok-1");
    EXPECT_EQ(redis_get(key("tok-1")), "a") << "the index names the home";
    auto ttl = run_coro(io_, a_->redis.command({"PTTL", key("tok-1")}));
    ASSERT_TRUE(ttl && ttl->is_ok());
    EXPECT_GT((*ttl)->integer, 0);
    EXPECT_LE((*ttl)->integer, 30000) << "the window is the key's TTL";

    resume(wb, "tok-1", 11);
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_ADOPT) != nullptr; }));
    Adoption adopted = adoption(*wb.find(SR_IPC_ADOPT));
    EXPECT_EQ(adopted.conn, "c1");
    EXPECT_EQ(adopted.ref, 11u);
    EXPECT_EQ(adopted.state, state);
    ASSERT_EQ(adopted.appended.size(), 2u);
    sr_message_t first = item("parked-1");
    EXPECT_EQ(adopted.appended[0], encoded(first));
    sr_message_clear(&first);
    EXPECT_TRUE(wb.wait([&] { return !redis_get(key("tok-1")); })) << "deleted on adopt";
    EXPECT_EQ(b_->remote.foreign_count(), 1u);
    EXPECT_FALSE(b_->registry.has_connection("c1")) << "the home keeps the connection";
    EXPECT_TRUE(a_->registry.has_connection("c1"));

    // the home's hub reaches the client through b, and the client reaches the home's hub
    a_->hub_send("c1", "after");
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_SEND) != nullptr; }));
    EXPECT_EQ(wb.find(SR_IPC_SEND)->conn, "c1");
    sr_message_t after = item("after");
    EXPECT_EQ(wb.find(SR_IPC_SEND)->body, encoded(after));
    sr_message_clear(&after);

    sr_message_t call;
    sr_message_init(&call, SR_MSG_INVOCATION);
    call.target = strdup("Hello");
    call.arguments = json_array();
    wb.invoke("c1", call);
    sr_message_clear(&call);
    ASSERT_TRUE(run_until(io_, [&] { return !a_->hub.invoked.empty(); }));
    EXPECT_EQ(a_->hub.invoked, std::vector<std::string>{"c1:Hello"});
    EXPECT_TRUE(b_->hub.invoked.empty());

    // the client drops again: b's worker parks it, and the state goes home
    detach(wb, "c1", 30000, 100000);
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_RELEASE) != nullptr; }));
    a_->hub_send("c1", "parked-3");
    send_bytes(wb, SR_IPC_PARK, "c1", state_body("tok-1", {}));
    ASSERT_TRUE(run_until(io_, [&] { return a_->lot.holds("c1") && redis_get(key("tok-1")); }));
    EXPECT_EQ(b_->remote.foreign_count(), 0u);

    // and it comes back to its home's worker
    resume(wa, "tok-1", 12);
    ASSERT_TRUE(wa.wait([&] { return wa.find(SR_IPC_ADOPT) != nullptr; }));
    EXPECT_EQ(adoption(*wa.find(SR_IPC_ADOPT)).appended.size(), 1u);
    EXPECT_TRUE(a_->hub.disconnected.empty()) << "the hub never saw it go";
}

TEST_F(RemoteConnectionsTest, AClientBackElsewhereBeforeItsHomeParkedItIsAdoptedAfterAll)
{
    FakeWorker wa(io_, a_->path);
    FakeWorker wb(io_, b_->path);
    hello(wa, 100);
    hello(wb, 200);
    wa.open("c1", "Test", "alice");
    ASSERT_TRUE(wa.wait([&] { return a_->registry.has_connection("c1"); }));

    // nothing names the token yet: b waits, then asks Redis once more
    resume(wb, "tok-1", 5);
    run_for(io_, std::chrono::milliseconds(50));
    detach(wa, "c1", 30000, 100000);
    ASSERT_TRUE(wa.wait([&] { return wa.find(SR_IPC_RELEASE) != nullptr; }));
    send_bytes(wa, SR_IPC_PARK, "c1", state_body("tok-1", {}));

    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_ADOPT) != nullptr; }));
    EXPECT_EQ(adoption(*wb.find(SR_IPC_ADOPT)).ref, 5u);
    EXPECT_EQ(wb.count(SR_IPC_RESUME_FAILED), 0u);
    EXPECT_EQ(b_->remote.foreign_count(), 1u);
}

TEST_F(RemoteConnectionsTest, UnknownTokensAndLostOrSilentHomesAreRefused)
{
    FakeWorker wb(io_, b_->path);
    hello(wb, 200);

    resume(wb, "nobody", 1);
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_RESUME_FAILED) != nullptr; }));
    EXPECT_EQ(refusal(*wb.find(SR_IPC_RESUME_FAILED)).first, 1u);

    // an index entry naming a home that no longer has the connection: it says so
    auto stale = run_coro(io_, a_->redis.command({"SET", key("tok-stale"), "a"}));
    ASSERT_TRUE(stale && stale->is_ok());
    resume(wb, "tok-stale", 3);
    ASSERT_TRUE(wb.wait([&] { return wb.count(SR_IPC_RESUME_FAILED) == 2; }));
    auto [stale_ref, stale_reason] = refusal(*wb.find(SR_IPC_RESUME_FAILED, 1));
    EXPECT_EQ(stale_ref, 3u);
    EXPECT_EQ(stale_reason, "no such connection") << "the home's answer, not a timeout";

    // an index entry naming an instance that does not answer
    auto set = run_coro(io_, a_->redis.command({"SET", key("tok-ghost"), "ghost"}));
    ASSERT_TRUE(set && set->is_ok());
    auto started = std::chrono::steady_clock::now();
    resume(wb, "tok-ghost", 2);
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_RESUME_FAILED, 2) != nullptr; }));
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(450));
    auto [ref, reason] = refusal(*wb.find(SR_IPC_RESUME_FAILED, 2));
    EXPECT_EQ(ref, 2u);
    EXPECT_EQ(reason, "the connection's instance did not answer");
    EXPECT_EQ(b_->remote.pending_count(), 0u);
}

TEST_F(RemoteConnectionsTest, TheHomesCloseAndTheAdoptersLossEndTheConnection)
{
    FakeWorker wa(io_, a_->path);
    hello(wa, 100);
    park_on_a(wa, "c1", "tok-1");
    park_on_a(wa, "c2", "tok-2");
    {
        FakeWorker wb(io_, b_->path);
        hello(wb, 200);
        resume(wb, "tok-1", 1);
        resume(wb, "tok-2", 2);
        ASSERT_TRUE(wb.wait([&] { return wb.count(SR_IPC_ADOPT) == 2; }));

        // the home's hub ends c1: b's worker is asked to close it, and says it did
        a_->registry.close("c1", "bye", false);
        ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_CLOSE) != nullptr; }));
        EXPECT_EQ(wb.find(SR_IPC_CLOSE)->conn, "c1");
        wb.send(SR_IPC_CLOSED, "c1", nullptr);
        ASSERT_TRUE(run_until(io_, [&] { return b_->remote.foreign_count() == 1; }));
        wb.close();
    }
    // b's worker went away with c2: the home's hub hears that it went
    ASSERT_TRUE(run_until(io_, [&] { return a_->hub.disconnected.size() == 2; }));
    EXPECT_FALSE(a_->registry.has_connection("c2"));
    EXPECT_EQ(b_->remote.foreign_count(), 0u);
}

TEST_F(RemoteConnectionsTest, AConnectionLentToAnInstanceThatDiesEndsOnItsHome)
{
    FakeWorker wa(io_, a_->path);
    hello(wa, 100);
    park_on_a(wa, "c1", "tok-1");
    {
        FakeWorker wb(io_, b_->path);
        hello(wb, 200);
        resume(wb, "tok-1", 1);
        ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_ADOPT) != nullptr; }));
        EXPECT_EQ(a_->remote.lent_count(), 1u);

        // b says every 100 ms that it holds c1: the home keeps it past 3 intervals
        run_for(io_, std::chrono::milliseconds(600));
        EXPECT_TRUE(a_->hub.disconnected.empty());
        EXPECT_TRUE(a_->registry.has_connection("c1"));

        // b dies without a word (its worker's CLOSED never reaches the home)
        b_->backplane.stop();
        b_->redis.stop();
        run_for(io_, std::chrono::milliseconds(20));
        auto died = std::chrono::steady_clock::now();
        ASSERT_TRUE(run_until(io_, [&] { return !a_->hub.disconnected.empty(); }));
        EXPECT_GE(std::chrono::steady_clock::now() - died, std::chrono::milliseconds(200));
    }
    EXPECT_EQ(a_->hub.disconnected, std::vector<std::string>{"c1"});
    EXPECT_EQ(a_->remote.lent_count(), 0u);
}

TEST_F(RemoteConnectionsTest, AClientBackOnItsHomeWhileLiveOnTheAdopterIsSuspendedThere)
{
    FakeWorker wa(io_, a_->path);
    FakeWorker wb(io_, b_->path);
    hello(wa, 100);
    hello(wb, 200);
    park_on_a(wa, "c1", "tok-1");
    resume(wb, "tok-1", 1);
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_ADOPT) != nullptr; }));

    // the client notices a cut before b's worker does, and lands on a
    resume(wa, "tok-1", 2);
    ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_SUSPEND) != nullptr; }));
    EXPECT_EQ(wb.find(SR_IPC_SUSPEND)->conn, "c1");
    a_->hub_send("c1", "while-suspended");
    // what b's worker read from the client before SUSPEND still reaches the home's hub
    sr_message_t late;
    sr_message_init(&late, SR_MSG_INVOCATION);
    late.target = strdup("ReadBeforeSuspend");
    late.arguments = json_array();
    wb.invoke("c1", late);
    sr_message_clear(&late);
    ASSERT_TRUE(run_until(io_, [&] { return !a_->hub.invoked.empty(); }));
    EXPECT_EQ(a_->hub.invoked, std::vector<std::string>{"c1:ReadBeforeSuspend"});
    send_bytes(wb, SR_IPC_PARK, "c1", state_body("tok-1", {}));
    ASSERT_TRUE(wa.wait([&] { return wa.find(SR_IPC_ADOPT) != nullptr; }));
    Adoption back = adoption(*wa.find(SR_IPC_ADOPT));
    EXPECT_EQ(back.ref, 2u);
    EXPECT_EQ(back.appended.size(), 1u);
    EXPECT_EQ(b_->remote.foreign_count(), 0u);

    // from now on it is a's own again
    a_->hub_send("c1", "home-again");
    ASSERT_TRUE(wa.wait([&] { return wa.find(SR_IPC_SEND) != nullptr; }));
    EXPECT_TRUE(a_->hub.disconnected.empty());
}

}  // namespace
}  // namespace signalrd
