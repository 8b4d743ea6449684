#include "chat_fixture.h"
#include "fake_worker.h"
#include "worker_link.h"

namespace signalrd {
namespace {

using testing::FakeWorker;
using testing::Frame;

// Records what the registry hands it; answers an Invocation "Echo" with a Completion and
// "Flood" with many of them.
class FakeHub final : public Hub {
public:
    explicit FakeHub(ConnectionSink &sink) : sink_(sink) {}

    void on_connected(const ConnectionInfo &c) override
    {
        connected.push_back(c.id + ":" + c.user);
    }
    void on_disconnected(const ConnectionInfo &c) override { disconnected.push_back(c.id); }
    void shutdown() override {}

    void on_message(const ConnectionInfo &c, sr_message_t &msg) override
    {
        targets.push_back(msg.target ? msg.target : "");
        int times = msg.target && std::string(msg.target) == "Flood" ? 20000 : 1;
        sr_message_t reply;
        sr_message_init(&reply, SR_MSG_COMPLETION);
        reply.invocation_id = strdup(msg.invocation_id ? msg.invocation_id : "0");
        reply.result = json_string(std::string(1000, 'x').c_str());
        for (int i = 0; i < times; i++) {
            sink_.send(c.id, reply);
        }
        sr_message_clear(&reply);
    }

    std::vector<std::string> connected, disconnected, targets;

private:
    ConnectionSink &sink_;
};

class WorkerLinkTest : public ::testing::Test {
protected:
    void SetUp() override { start(LinkOptions{}); }

    void start(LinkOptions options)
    {
        dir_ = testing::make_temp_dir();
        path_ = dir_ + "/worker.sock";
        registry_.add_hub("Test", hub_);
        server_ = std::make_unique<WorkerLinkServer>(io_.get_executor(), registry_, options);
        ASSERT_TRUE(server_->listen(path_).is_ok());
    }

    void TearDown() override
    {
        server_->close_all();
        testing::run_for(io_, std::chrono::milliseconds(20));
        server_.reset();
        testing::remove_tree(dir_);
    }

    static sr_message_t invocation(const char *target, const char *id)
    {
        sr_message_t m;
        sr_message_init(&m, SR_MSG_INVOCATION);
        m.target = strdup(target);
        m.invocation_id = id ? strdup(id) : nullptr;
        m.arguments = json_array();
        return m;
    }

    // A MULTICAST frame's connection ids, appended to ids, and its message, decoded into
    // got (which the caller clears); the test fails when the frame is not one.
    static void read_multicast(const Frame &f, std::vector<std::string> &ids, sr_message_t *got)
    {
        sr_ipc_id_iter_t it;
        const unsigned char *message;
        size_t message_len;
        sr_error_t err;
        ASSERT_EQ(sr_ipc_multicast_parse(f.body.data(), f.body.size(), &it, &message,
                                         &message_len, &err),
                  SR_OK)
            << err.str;
        const char *id;
        size_t id_len;
        while (sr_ipc_multicast_next(&it, &id, &id_len)) {
            ids.emplace_back(id, id_len);
        }
        ASSERT_EQ(sr_message_decode_payload(SR_PROTOCOL_MSGPACK, message, message_len, nullptr,
                                            got, &err),
                  SR_OK)
            << err.str;
    }

    asio::io_context io_;
    HubRegistry registry_;
    FakeHub hub_{registry_};
    std::unique_ptr<WorkerLinkServer> server_;
    std::string dir_;
    std::string path_;
};

TEST_F(WorkerLinkTest, AnswersHelloWithItsVersionAndPingWithPong)
{
    FakeWorker w(io_, path_);
    w.hello();
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_HELLO) != nullptr; }));

    sr_ipc_hello_t h{};
    sr_error_t err;
    const Frame *f = w.find(SR_IPC_HELLO);
    ASSERT_EQ(sr_ipc_hello_decode(f->body.data(), f->body.size(), &h, &err), SR_OK) << err.str;
    EXPECT_EQ(h.version, static_cast<uint32_t>(SR_IPC_VERSION));
    EXPECT_EQ(h.pid, static_cast<int64_t>(getpid()));
    sr_ipc_hello_clear(&h);

    w.send(SR_IPC_PING, "", nullptr);
    EXPECT_TRUE(w.wait([&] { return w.count(SR_IPC_PONG) == 1; }));
    EXPECT_FALSE(w.closed());
}

TEST_F(WorkerLinkTest, SaysItsVersionThenPartsWithAWorkerOfAnother)
{
    FakeWorker w(io_, path_);
    w.hello(SR_IPC_VERSION + 1);

    EXPECT_TRUE(w.wait([&] { return w.closed(); }));
    EXPECT_EQ(w.count(SR_IPC_HELLO), 1u);
}

TEST_F(WorkerLinkTest, DropsALinkThatDoesNotStartWithHello)
{
    FakeWorker w(io_, path_);
    w.send(SR_IPC_PING, "", nullptr);

    EXPECT_TRUE(w.wait([&] { return w.closed(); }));
    EXPECT_EQ(w.count(SR_IPC_PONG), 0u);
}

TEST_F(WorkerLinkTest, DropsALinkOnAMalformedFrame)
{
    FakeWorker w(io_, path_);
    w.hello();
    // a length too short for the header that must follow it
    const unsigned char bad[] = {0, 0, 0, 1, SR_IPC_PING};
    w.send_raw(bad, sizeof(bad));

    EXPECT_TRUE(w.wait([&] { return w.closed(); }));
}

// Sends a FORWARD or FORWARDED frame from w.
void send_relay(FakeWorker &w, sr_ipc_type_t type, const std::string &conn,
                const sr_ipc_relay_t &relay)
{
    sr_buf_t out;
    sr_error_t err;
    sr_buf_init(&out);
    ASSERT_EQ(sr_ipc_relay_write(&out, type, conn.data(), conn.size(), &relay, &err), SR_OK)
        << err.str;
    w.send_raw(out.data, out.len);
    sr_buf_free(&out);
}

sr_ipc_relay_t parse_relay(const Frame &f)
{
    sr_ipc_relay_t relay{};
    sr_error_t err;
    EXPECT_EQ(sr_ipc_relay_parse(f.body.data(), f.body.size(), &relay, &err), SR_OK) << err.str;
    return relay;
}

TEST_F(WorkerLinkTest, RelaysARequestToTheWorkerNamedAndItsAnswerBack)
{
    FakeWorker asker(io_, path_);
    FakeWorker holder(io_, path_);
    asker.hello(SR_IPC_VERSION, 100);
    holder.hello(SR_IPC_VERSION, 200);
    ASSERT_TRUE(asker.wait([&] { return asker.find(SR_IPC_HELLO) != nullptr; }));
    ASSERT_TRUE(holder.wait([&] { return holder.find(SR_IPC_HELLO) != nullptr; }));

    const unsigned char body[] = "{\"type\":6}\x1e";
    send_relay(asker, SR_IPC_FORWARD, "c1",
               sr_ipc_relay_t{200, 7, SR_IPC_FORWARD_SEND, 0, body, sizeof(body) - 1});
    ASSERT_TRUE(holder.wait([&] { return holder.find(SR_IPC_FORWARD) != nullptr; }));

    const Frame *request = holder.find(SR_IPC_FORWARD);
    sr_ipc_relay_t got = parse_relay(*request);
    EXPECT_EQ(request->conn, "c1");
    EXPECT_EQ(got.pid, 100u) << "the holder learns who asked";
    EXPECT_EQ(got.seq, 7u);
    EXPECT_EQ(got.code, SR_IPC_FORWARD_SEND);
    EXPECT_EQ(std::string(got.data, got.data + got.data_len), "{\"type\":6}\x1e");

    send_relay(holder, SR_IPC_FORWARDED, "c1", sr_ipc_relay_t{100, 7, 200, 0, nullptr, 0});
    ASSERT_TRUE(asker.wait([&] { return asker.find(SR_IPC_FORWARDED) != nullptr; }));
    sr_ipc_relay_t answer = parse_relay(*asker.find(SR_IPC_FORWARDED));
    EXPECT_EQ(answer.pid, 200u) << "the asker learns who answered";
    EXPECT_EQ(answer.seq, 7u);
    EXPECT_EQ(answer.code, 200);
    EXPECT_EQ(holder.count(SR_IPC_FORWARDED), 0u) << "nothing echoes back to the holder";
}

TEST_F(WorkerLinkTest, ARequestForAWorkerThatIsGoneIsAnswered404)
{
    FakeWorker asker(io_, path_);
    asker.hello(SR_IPC_VERSION, 100);
    ASSERT_TRUE(asker.wait([&] { return asker.find(SR_IPC_HELLO) != nullptr; }));

    send_relay(asker, SR_IPC_FORWARD, "c2",
               sr_ipc_relay_t{999, 3, SR_IPC_FORWARD_POLL, 0, nullptr, 0});
    ASSERT_TRUE(asker.wait([&] { return asker.find(SR_IPC_FORWARDED) != nullptr; }));
    sr_ipc_relay_t answer = parse_relay(*asker.find(SR_IPC_FORWARDED));
    EXPECT_EQ(answer.seq, 3u);
    EXPECT_EQ(answer.code, 404);
    EXPECT_FALSE(asker.closed()) << "the link stays up";

    // a relay body too short for its header is a protocol error
    asker.send(SR_IPC_FORWARD, "c2", nullptr);
    EXPECT_TRUE(asker.wait([&] { return asker.closed(); }));
}

TEST_F(WorkerLinkTest, RoutesConnectionsToTheirHubAndAnswersThroughTheLink)
{
    FakeWorker w(io_, path_);
    w.hello();
    w.open("conn-1", "Test", "alice");
    sr_message_t echo = invocation("Echo", "7");
    w.invoke("conn-1", echo);
    sr_message_clear(&echo);

    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_SEND) != nullptr; }));
    EXPECT_EQ(hub_.connected, std::vector<std::string>{"conn-1:alice"});
    EXPECT_EQ(hub_.targets, std::vector<std::string>{"Echo"});

    const Frame *f = w.find(SR_IPC_SEND);
    EXPECT_EQ(f->conn, "conn-1");
    sr_message_t got;
    sr_error_t err;
    ASSERT_EQ(sr_message_decode_payload(SR_PROTOCOL_MSGPACK, f->body.data(), f->body.size(),
                                        nullptr, &got, &err),
              SR_OK)
        << err.str;
    EXPECT_EQ(got.type, SR_MSG_COMPLETION);
    EXPECT_STREQ(got.invocation_id, "7");
    sr_message_clear(&got);

    w.send(SR_IPC_CLOSED, "conn-1", nullptr);
    EXPECT_TRUE(w.wait([&] { return hub_.disconnected.size() == 1; }));
    EXPECT_EQ(registry_.connection_count(), 0u);
}

TEST_F(WorkerLinkTest, AConnectionToAnUnknownHubIsClosed)
{
    FakeWorker w(io_, path_);
    w.hello();
    w.open("conn-9", "Nope", "alice");

    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_CLOSE) != nullptr; }));
    sr_ipc_close_t c{};
    sr_error_t err;
    const Frame *f = w.find(SR_IPC_CLOSE);
    EXPECT_EQ(f->conn, "conn-9");
    ASSERT_EQ(sr_ipc_close_decode(f->body.data(), f->body.size(), &c, &err), SR_OK) << err.str;
    EXPECT_STREQ(c.error, "Hub 'Nope' is not available.");
    EXPECT_FALSE(c.allow_reconnect);
    sr_ipc_close_clear(&c);
    EXPECT_TRUE(hub_.connected.empty());
}

TEST_F(WorkerLinkTest, ALinkThatDropsTakesItsConnectionsWithIt)
{
    {
        FakeWorker w(io_, path_);
        w.hello();
        w.open("a", "Test", "u");
        w.open("b", "Test", "u");
        ASSERT_TRUE(w.wait([&] { return registry_.connection_count() == 2; }));
        w.close();
    }
    EXPECT_TRUE(testing::run_until(io_, [&] { return hub_.disconnected.size() == 2; }));
    EXPECT_EQ(registry_.connection_count(), 0u);
    EXPECT_TRUE(testing::run_until(io_, [&] { return server_->link_count() == 0; }));
}

class SlowWorkerLink : public WorkerLinkTest {
protected:
    void SetUp() override { start(LinkOptions{256 * 1024, 0, "node"}); }
};

TEST_F(SlowWorkerLink, AWorkerThatCannotKeepUpIsDroppedNotBuffered)
{
    FakeWorker w(io_, path_);
    w.hello();
    w.open("conn-1", "Test", "alice");
    sr_message_t flood = invocation("Flood", "1");
    w.invoke("conn-1", flood);
    sr_message_clear(&flood);

    // 20000 replies of 1 KB, far over the 256 KiB bound, while the worker does not read
    EXPECT_TRUE(testing::run_until(io_, [&] { return hub_.disconnected.size() == 1; }));
    EXPECT_EQ(registry_.connection_count(), 0u);
}

// A group message: one MULTICAST frame a worker, naming the connections it holds there,
// with the message encoded once; ids nobody holds are left out.
TEST_F(WorkerLinkTest, SendManyMulticastsOnceAWorker)
{
    FakeWorker w1(io_, path_);
    FakeWorker w2(io_, path_);
    w1.hello(SR_IPC_VERSION, 1001);
    w2.hello(SR_IPC_VERSION, 1002);
    w1.open("a", "Test", "u");
    w1.open("b", "Test", "u");
    w2.open("c", "Test", "u");
    ASSERT_TRUE(w1.wait([&] { return registry_.connection_count() == 3; }));

    sr_message_t msg = invocation("broadcast", nullptr);
    json_array_append_new(msg.arguments, json_string("hello"));
    registry_.send_many({"a", "gone", "b", "c"}, msg);
    sr_message_clear(&msg);

    struct Expect {
        FakeWorker *worker;
        std::vector<std::string> ids;
    };
    for (const Expect &e : {Expect{&w1, {"a", "b"}}, Expect{&w2, {"c"}}}) {
        ASSERT_TRUE(e.worker->wait([&] { return e.worker->find(SR_IPC_MULTICAST) != nullptr; }));
        EXPECT_EQ(e.worker->find(SR_IPC_SEND), nullptr);
        std::vector<std::string> ids;
        sr_message_t got;
        sr_message_init(&got, SR_MSG_INVOCATION);
        read_multicast(*e.worker->find(SR_IPC_MULTICAST), ids, &got);
        if (HasFatalFailure()) {
            sr_message_clear(&got);
            return;
        }
        EXPECT_EQ(ids, e.ids);
        EXPECT_STREQ(got.target, "broadcast");
        EXPECT_STREQ(json_string_value(json_array_get(got.arguments, 0)), "hello");
        sr_message_clear(&got);
    }
}

// A group sent to twice: the second send copies the id lists the first one encoded (one
// per frame of at most 4,096 ids), and the worker reads the same ids with each message.
TEST_F(WorkerLinkTest, AGroupSentAgainReusesItsEncodedIdLists)
{
    FakeWorker w(io_, path_);
    w.hello(SR_IPC_VERSION, 1001);
    std::vector<std::string> names;
    for (size_t i = 0; i < 5000; i++) {
        names.push_back("m-" + std::to_string(i));
        w.open(names.back(), "Test", "u");
        // the fake worker writes blocking, on this thread: let the daemon side read
        if (i % 200 == 199) {
            ASSERT_TRUE(w.wait([&] { return registry_.connection_count() == i + 1; }));
        }
    }

    std::vector<const std::string *> ids;
    for (const std::string &n : names) {
        ids.push_back(&n);
    }
    LinkGroups groups = registry_.group_by_link(ids);
    ASSERT_EQ(groups.size(), 1u);
    for (const char *target : {"first", "second"}) {
        sr_message_t msg = invocation(target, nullptr);
        registry_.send_grouped(groups, msg);
        sr_message_clear(&msg);
        EXPECT_EQ(groups[0].encoded.size(), 2u) << "kept for the next send";
    }
    ASSERT_TRUE(w.wait([&] { return w.count(SR_IPC_MULTICAST) == 4; }));

    std::vector<std::string> targets;
    std::vector<std::string> all;
    for (size_t k = 0; k < 4; k++) {
        const size_t before = all.size();
        sr_message_t got;
        sr_message_init(&got, SR_MSG_INVOCATION);
        read_multicast(*w.find(SR_IPC_MULTICAST, k), all, &got);
        if (HasFatalFailure()) {
            sr_message_clear(&got);
            return;
        }
        EXPECT_EQ(all.size() - before, k % 2 == 0 ? 4096u : 904u);
        targets.emplace_back(got.target);
        sr_message_clear(&got);
    }
    EXPECT_EQ(targets, (std::vector<std::string>{"first", "first", "second", "second"}));
    std::vector<std::string> twice = names;
    twice.insert(twice.end(), names.begin(), names.end());
    EXPECT_EQ(all, twice);
}

// The chat hub behind a real link: what the nginx module will see.
class ChatOverLink : public testing::ChatFixture {
protected:
    void SetUp() override
    {
        ChatFixture::SetUp();
        dir_ = testing::make_temp_dir();
        path_ = dir_ + "/worker.sock";
        chat_ = std::make_unique<ChatHub>(io_.get_executor(), *store_, bus_, *runner_, registry_);
        registry_.add_hub(chat_hub_name, *chat_);
        server_ = std::make_unique<WorkerLinkServer>(io_.get_executor(), registry_, LinkOptions{});
        ASSERT_TRUE(server_->listen(path_).is_ok());
    }

    void TearDown() override
    {
        server_->close_all();
        testing::run_for(io_, std::chrono::milliseconds(20));
        server_.reset();
        chat_.reset();
        testing::remove_tree(dir_);
        ChatFixture::TearDown();
    }

    HubRegistry registry_;
    std::unique_ptr<ChatHub> chat_;
    std::unique_ptr<WorkerLinkServer> server_;
    std::string dir_;
    std::string path_;
};

TEST_F(ChatOverLink, StreamItemsArriveAsSendFramesForTheConnection)
{
    std::string id = create("alice", "over the link");
    FakeWorker w(io_, path_);
    w.hello();
    w.open("conn-1", chat_hub_name, "alice");

    sr_message_t call;
    sr_message_init(&call, SR_MSG_STREAM_INVOCATION);
    call.invocation_id = strdup("1");
    call.target = strdup("Stream");
    call.arguments = json_pack("[s n]", id.c_str());
    w.invoke("conn-1", call);
    sr_message_clear(&call);

    std::string text;
    bool final_seen = false;
    size_t next = 0;
    ASSERT_TRUE(w.wait([&] {
        for (; next < w.frames().size(); next++) {
            const Frame &f = w.frames()[next];
            sr_message_t m;
            sr_error_t err;
            if (f.type != SR_IPC_SEND ||
                sr_message_decode_payload(SR_PROTOCOL_MSGPACK, f.body.data(), f.body.size(),
                                          nullptr, &m, &err) != SR_OK) {
                continue;
            }
            if (m.type == SR_MSG_STREAM_ITEM &&
                std::string(json_get_string(m.item, "sender")) == "assistant") {
                text += json_get_string(m.item, "text");
                final_seen = json_is_true(json_object_get(m.item, "isFinal"));
            }
            sr_message_clear(&m);
        }
        return final_seen;
    }));
    ASSERT_TRUE(wait_reply(id));
    EXPECT_EQ(text, load(id)->messages.back().text);
}

}  // namespace
}  // namespace signalrd
