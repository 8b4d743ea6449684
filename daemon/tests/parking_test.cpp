// Stateful reconnect on one daemon, through real worker links: parking after DETACH and
// PARK, the appended messages, the window, the bytes bound, RESUME answered with ADOPT or
// RESUME_FAILED, SUSPEND of a live connection, and where messages go after an adoption.

#include "chat_fixture.h"
#include "parking.h"
#include "reconnect_util.h"

namespace signalrd {
namespace {

using namespace testing;

class ParkingTest : public ::testing::Test {
protected:
    static ParkingOptions short_waits()
    {
        ParkingOptions options;
        options.resume_wait = std::chrono::milliseconds(300);
        options.unclaimed_wait = std::chrono::milliseconds(300);
        return options;
    }

    void SetUp() override
    {
        dir_ = testing::make_temp_dir();
        path_ = dir_ + "/worker.sock";
        registry_.add_hub("Test", hub_);
        server_ = std::make_unique<WorkerLinkServer>(io_.get_executor(), registry_, LinkOptions{});
        server_->set_reconnect(&lot_);
        ASSERT_TRUE(server_->listen(path_).is_ok());
    }

    void TearDown() override
    {
        server_->close_all();
        testing::run_for(io_, std::chrono::milliseconds(20));
        server_.reset();
        testing::remove_tree(dir_);
    }

    void hello(FakeWorker &w, int64_t pid)
    {
        w.hello(SR_IPC_VERSION, pid);
        ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_HELLO) != nullptr; }));
    }

    void hub_send(const std::string &conn, const std::string &invocation, size_t size = 10)
    {
        sr_message_t m = item(invocation, size);
        registry_.send(conn, m);
        sr_message_clear(&m);
    }

    // Opens conn on w, sends one message to it, detaches and parks it with that message
    // unacked, and sends two more while it is parked.
    Bytes open_and_park(FakeWorker &w, const std::string &conn, const std::string &token,
                        uint64_t window_ms = 30000)
    {
        w.open(conn, "Test", "alice");
        EXPECT_TRUE(w.wait([&] { return registry_.has_connection(conn); }));
        hub_send(conn, "before");
        detach(w, conn, window_ms, 100000);
        EXPECT_TRUE(w.wait([&] { return w.find(SR_IPC_RELEASE) != nullptr; }));
        hub_send(conn, "parked-1");
        hub_send(conn, "parked-2");

        sr_message_t before = item("before");
        Bytes state = state_body(token, {encoded(before)}, window_ms);
        sr_message_clear(&before);
        send_bytes(w, SR_IPC_PARK, conn, state);
        EXPECT_TRUE(w.wait([&] { return lot_.holds(conn) && lot_.held_bytes(conn) > 0; }));
        testing::run_for(io_, std::chrono::milliseconds(20));
        return state;
    }

    asio::io_context io_;
    HubRegistry registry_;
    RecordingHub hub_;
    ParkingLot lot_{io_.get_executor(), registry_, short_waits()};
    std::unique_ptr<WorkerLinkServer> server_;
    std::string dir_;
    std::string path_;
};

TEST_F(ParkingTest, TokenHashIsTheHexSha256)
{
    EXPECT_EQ(token_hash("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(ParkingTest, TheTokenOfAnOpenBodyIsReadWhenThereAndNeverPastItsEnd)
{
    sr_ipc_open_t o{const_cast<char *>("Test"), nullptr, SR_PROTOCOL_MSGPACK, nullptr, nullptr};
    sr_buf_t with, without;
    sr_error_t err;
    sr_buf_init(&with);
    sr_buf_init(&without);
    ASSERT_EQ(sr_ipc_open_encode_token(&o, "secret-token", &with, &err), SR_OK) << err.str;
    ASSERT_EQ(sr_ipc_open_encode(&o, &without, &err), SR_OK) << err.str;

    EXPECT_EQ(open_body_token(with.data, with.len), "secret-token");
    EXPECT_EQ(open_body_token(without.data, without.len), "");
    EXPECT_EQ(open_body_token(with.data, with.len / 2), "") << "a body cut short";
    const unsigned char not_a_map[] = {0x93, 0x01, 0x02, 0x03};
    EXPECT_EQ(open_body_token(not_a_map, sizeof(not_a_map)), "");
    EXPECT_EQ(open_body_token(nullptr, 0), "");
    sr_buf_free(&with);
    sr_buf_free(&without);
}

TEST_F(ParkingTest, AParkedConnectionKeepsItsMessagesAndAnotherWorkerAdoptsIt)
{
    FakeWorker w1(io_, path_);
    FakeWorker w2(io_, path_);
    hello(w1, 100);
    hello(w2, 200);

    Bytes state = open_and_park(w1, "c1", "tok-1");
    ASSERT_EQ(w1.count(SR_IPC_SEND), 1u) << "only the message sent before DETACH went out";
    const std::vector<Frame> &frames = w1.frames();
    size_t send_at = 0, release_at = 0;
    for (size_t i = 0; i < frames.size(); i++) {
        send_at = frames[i].type == SR_IPC_SEND ? i : send_at;
        release_at = frames[i].type == SR_IPC_RELEASE ? i : release_at;
    }
    EXPECT_LT(send_at, release_at) << "RELEASE follows every SEND written before it";
    EXPECT_TRUE(hub_.disconnected.empty()) << "for the hub a parked connection is open";

    resume(w2, "tok-1", 7);
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_ADOPT) != nullptr; }));
    Adoption a = adoption(*w2.find(SR_IPC_ADOPT));
    EXPECT_EQ(a.conn, "c1");
    EXPECT_EQ(a.ref, 7u);
    EXPECT_EQ(a.state, state) << "the state comes back verbatim";
    sr_message_t p1 = item("parked-1"), p2 = item("parked-2");
    ASSERT_EQ(a.appended.size(), 2u);
    EXPECT_EQ(a.appended[0], encoded(p1));
    EXPECT_EQ(a.appended[1], encoded(p2));
    sr_message_clear(&p1);
    sr_message_clear(&p2);
    EXPECT_FALSE(lot_.holds("c1"));
    EXPECT_EQ(w2.count(SR_IPC_OPEN), 0u);

    // from now on the connection is w2's, both ways
    hub_send("c1", "after");
    ASSERT_TRUE(w2.wait([&] { return w2.count(SR_IPC_SEND) == 1; }));
    EXPECT_EQ(w2.find(SR_IPC_SEND)->conn, "c1");
    sr_message_t call;
    sr_message_init(&call, SR_MSG_INVOCATION);
    call.target = strdup("FromW1");
    call.arguments = json_array();
    w1.invoke("c1", call);
    free(call.target);
    call.target = strdup("FromW2");
    w2.invoke("c1", call);
    sr_message_clear(&call);
    ASSERT_TRUE(w2.wait([&] { return !hub_.invoked.empty(); }));
    testing::run_for(io_, std::chrono::milliseconds(20));
    EXPECT_EQ(hub_.invoked, std::vector<std::string>{"c1:FromW2"});
    EXPECT_EQ(w1.count(SR_IPC_SEND), 1u);
    EXPECT_TRUE(hub_.disconnected.empty());

    // a second RESUME with the same token finds it live on w2 and suspends it there
    resume(w1, "tok-1", 8);
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_SUSPEND) != nullptr; }));
    EXPECT_EQ(w2.find(SR_IPC_SUSPEND)->conn, "c1");
}

TEST_F(ParkingTest, AResumeForAnUnknownTokenIsRefusedOnceNoParkBroughtIt)
{
    FakeWorker w(io_, path_);
    hello(w, 100);

    auto asked = std::chrono::steady_clock::now();
    resume(w, "nobody", 3);
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_RESUME_FAILED) != nullptr; }));
    EXPECT_GE(std::chrono::steady_clock::now() - asked, std::chrono::milliseconds(290))
        << "it waited for a PARK that might bring the token";
    auto [ref, reason] = refusal(*w.find(SR_IPC_RESUME_FAILED));
    EXPECT_EQ(ref, 3u);
    EXPECT_EQ(reason, "no such connection");
    EXPECT_EQ(lot_.unclaimed_count(), 0u);
    EXPECT_FALSE(w.closed());
}

TEST_F(ParkingTest, TheWindowEndsAParkedConnectionAndItsResume)
{
    FakeWorker w(io_, path_);
    hello(w, 100);
    open_and_park(w, "c1", "tok-1", 150);

    ASSERT_TRUE(w.wait([&] { return !hub_.disconnected.empty(); }));
    EXPECT_EQ(hub_.disconnected, std::vector<std::string>{"c1"});
    EXPECT_FALSE(registry_.has_connection("c1"));
    EXPECT_EQ(lot_.parked_count(), 0u);

    resume(w, "tok-1", 4);
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_RESUME_FAILED) != nullptr; }));
    EXPECT_EQ(refusal(*w.find(SR_IPC_RESUME_FAILED)).first, 4u);
}

TEST_F(ParkingTest, AppendedBytesPastTheBoundEndTheConnection)
{
    FakeWorker w(io_, path_);
    hello(w, 100);
    w.open("c1", "Test", "alice");
    ASSERT_TRUE(w.wait([&] { return registry_.has_connection("c1"); }));
    detach(w, "c1", 30000, 3000);
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_RELEASE) != nullptr; }));
    sr_message_t unacked = item("before", 1000);
    send_bytes(w, SR_IPC_PARK, "c1", state_body("tok-1", {encoded(unacked)}, 30000, 3000));
    sr_message_clear(&unacked);
    ASSERT_TRUE(w.wait([&] { return lot_.held_bytes("c1") > 1000; }));

    hub_send("c1", "a", 800);
    testing::run_for(io_, std::chrono::milliseconds(20));
    EXPECT_TRUE(hub_.disconnected.empty()) << "still under 3000 bytes";
    sr_message_t last = item("b", 1500);
    EXPECT_TRUE(registry_.send("c1", last)) << "the message that passes the bound is taken";
    sr_message_clear(&last);
    ASSERT_TRUE(w.wait([&] { return !hub_.disconnected.empty(); }));
    EXPECT_FALSE(lot_.holds("c1"));

    resume(w, "tok-1", 5);
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_RESUME_FAILED) != nullptr; }));
}

TEST_F(ParkingTest, AResumeBeforeTheParkOfItsConnectionWaitsForIt)
{
    FakeWorker w1(io_, path_);
    FakeWorker w2(io_, path_);
    hello(w1, 100);
    hello(w2, 200);
    w1.open("c1", "Test", "alice");
    ASSERT_TRUE(w1.wait([&] { return registry_.has_connection("c1"); }));

    // the client is back before its worker noticed the cut: the daemon does not know the
    // token yet, and the RESUME waits for the PARK that brings it
    resume(w2, "tok-1", 2);
    testing::run_for(io_, std::chrono::milliseconds(50));
    EXPECT_EQ(lot_.unclaimed_count(), 1u);
    detach(w1, "c1", 30000, 100000);
    ASSERT_TRUE(w1.wait([&] { return w1.find(SR_IPC_RELEASE) != nullptr; }));
    hub_send("c1", "parked-1");
    send_bytes(w1, SR_IPC_PARK, "c1", state_body("tok-1", {}));
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_ADOPT) != nullptr; }));
    Adoption a = adoption(*w2.find(SR_IPC_ADOPT));
    EXPECT_EQ(a.ref, 2u);
    EXPECT_EQ(a.appended.size(), 1u);
    EXPECT_EQ(w2.count(SR_IPC_RESUME_FAILED), 0u);
    EXPECT_EQ(lot_.unclaimed_count(), 0u);
}

TEST_F(ParkingTest, AClientBackBeforeItsWorkerNoticedSuspendsTheLiveConnection)
{
    FakeWorker w1(io_, path_);
    FakeWorker w2(io_, path_);
    hello(w1, 100);
    hello(w2, 200);
    open_with_token(w1, "c1", "tok-live");
    ASSERT_TRUE(w1.wait([&] { return registry_.has_connection("c1"); }));
    EXPECT_EQ(hub_.connected, std::vector<std::string>{"c1"});

    resume(w2, "tok-live", 9);
    ASSERT_TRUE(w1.wait([&] { return w1.find(SR_IPC_SUSPEND) != nullptr; }));
    EXPECT_EQ(w1.find(SR_IPC_SUSPEND)->conn, "c1");
    hub_send("c1", "while-suspended");
    // what w1 read from the client before it saw SUSPEND still reaches the hub
    sr_message_t late;
    sr_message_init(&late, SR_MSG_INVOCATION);
    late.target = strdup("ReadBeforeSuspend");
    late.arguments = json_array();
    w1.invoke("c1", late);
    sr_message_clear(&late);
    ASSERT_TRUE(w1.wait([&] { return !hub_.invoked.empty(); }));
    EXPECT_EQ(hub_.invoked, std::vector<std::string>{"c1:ReadBeforeSuspend"});
    w1.pump();
    EXPECT_EQ(w1.count(SR_IPC_SEND), 0u) << "kept for the adopter";
    EXPECT_EQ(w2.find(SR_IPC_ADOPT), nullptr) << "ADOPT waits for the PARK";

    Bytes state = state_body("tok-live", {});
    send_bytes(w1, SR_IPC_PARK, "c1", state);
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_ADOPT) != nullptr; }));
    Adoption a = adoption(*w2.find(SR_IPC_ADOPT));
    EXPECT_EQ(a.ref, 9u);
    EXPECT_EQ(a.state, state);
    EXPECT_EQ(a.appended.size(), 1u);
    EXPECT_TRUE(hub_.disconnected.empty());
}

TEST_F(ParkingTest, AParkTooLateForItsResumeParksAndRefusesThatResume)
{
    FakeWorker w1(io_, path_);
    FakeWorker w2(io_, path_);
    hello(w1, 100);
    hello(w2, 200);
    open_with_token(w1, "c1", "tok-1");
    ASSERT_TRUE(w1.wait([&] { return registry_.has_connection("c1"); }));
    detach(w1, "c1", 30000, 100000);
    ASSERT_TRUE(w1.wait([&] { return w1.find(SR_IPC_RELEASE) != nullptr; }));
    resume(w2, "tok-1", 1);
    testing::run_for(io_, std::chrono::milliseconds(400));
    EXPECT_EQ(w2.find(SR_IPC_ADOPT), nullptr);

    send_bytes(w1, SR_IPC_PARK, "c1", state_body("tok-1", {}));
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_RESUME_FAILED) != nullptr; }));
    EXPECT_EQ(refusal(*w2.find(SR_IPC_RESUME_FAILED)).first, 1u)
        << "its worker gave up on that RESUME already";
    EXPECT_TRUE(lot_.holds("c1"));
    resume(w2, "tok-1", 2);
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_ADOPT) != nullptr; }));
    EXPECT_EQ(adoption(*w2.find(SR_IPC_ADOPT)).ref, 2u);
}

TEST_F(ParkingTest, ASuspendedConnectionWhoseParkNeverComesEnds)
{
    FakeWorker w1(io_, path_);
    FakeWorker w2(io_, path_);
    hello(w1, 100);
    hello(w2, 200);
    open_with_token(w1, "c1", "tok-1");
    ASSERT_TRUE(w1.wait([&] { return registry_.has_connection("c1"); }));

    resume(w2, "tok-1", 1);
    ASSERT_TRUE(w1.wait([&] { return w1.find(SR_IPC_SUSPEND) != nullptr; }));
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_RESUME_FAILED) != nullptr; }));
    EXPECT_EQ(hub_.disconnected, std::vector<std::string>{"c1"});
    EXPECT_FALSE(registry_.has_connection("c1"));
}

TEST_F(ParkingTest, ACloseOrALostLinkBeforeTheParkEndsTheConnection)
{
    FakeWorker w1(io_, path_);
    hello(w1, 100);
    w1.open("c1", "Test", "alice");
    w1.open("c2", "Test", "alice");
    ASSERT_TRUE(w1.wait([&] { return registry_.connection_count() == 2; }));
    detach(w1, "c1", 30000, 100000);
    detach(w1, "c2", 30000, 100000);
    ASSERT_TRUE(w1.wait([&] { return w1.count(SR_IPC_RELEASE) == 2; }));

    w1.send(SR_IPC_CLOSED, "c1", nullptr);
    ASSERT_TRUE(w1.wait([&] { return hub_.disconnected.size() == 1; }));
    EXPECT_EQ(hub_.disconnected[0], "c1");

    w1.close();
    ASSERT_TRUE(testing::run_until(io_, [&] { return hub_.disconnected.size() == 2; }));
    EXPECT_EQ(lot_.parked_count(), 0u);
}

TEST_F(ParkingTest, AParkedConnectionOutlivesItsWorkerLink)
{
    FakeWorker w2(io_, path_);
    hello(w2, 200);
    {
        FakeWorker w1(io_, path_);
        hello(w1, 100);
        open_and_park(w1, "c1", "tok-1");
        w1.close();
        ASSERT_TRUE(testing::run_until(io_, [&] { return server_->link_count() == 1; }));
    }
    EXPECT_TRUE(hub_.disconnected.empty());

    resume(w2, "tok-1", 1);
    ASSERT_TRUE(w2.wait([&] { return w2.find(SR_IPC_ADOPT) != nullptr; }));
    EXPECT_EQ(adoption(*w2.find(SR_IPC_ADOPT)).appended.size(), 2u);
}

TEST_F(ParkingTest, AHubClosingAParkedConnectionLeavesNothingToResume)
{
    FakeWorker w(io_, path_);
    hello(w, 100);
    open_and_park(w, "c1", "tok-1");

    registry_.close("c1", nullptr, false);
    EXPECT_EQ(hub_.disconnected, std::vector<std::string>{"c1"});
    EXPECT_FALSE(lot_.holds("c1"));
    resume(w, "tok-1", 2);
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_RESUME_FAILED) != nullptr; }));
}

TEST_F(ParkingTest, MalformedReconnectFramesDropTheLinkAndStrayOnesAreHarmless)
{
    FakeWorker w(io_, path_);
    hello(w, 100);

    // a DETACH for a connection the daemon does not hold still gets its RELEASE
    detach(w, "ghost", 1000, 1000);
    ASSERT_TRUE(w.wait([&] { return w.find(SR_IPC_RELEASE) != nullptr; }));
    EXPECT_EQ(w.find(SR_IPC_RELEASE)->conn, "ghost");
    // a PARK for it is ignored
    send_bytes(w, SR_IPC_PARK, "ghost", state_body("tok-ghost", {}));
    testing::run_for(io_, std::chrono::milliseconds(20));
    EXPECT_EQ(lot_.parked_count(), 0u);
    EXPECT_FALSE(w.closed());

    const Bytes junk = {0x93, 0x01};   // an array cut short, not a map
    send_bytes(w, SR_IPC_PARK, "ghost", junk);
    EXPECT_TRUE(w.wait([&] { return w.closed(); }));
}

TEST_F(ParkingTest, AMalformedResumeDropsTheLink)
{
    FakeWorker w(io_, path_);
    hello(w, 100);
    w.send(SR_IPC_RESUME, "", nullptr);
    EXPECT_TRUE(w.wait([&] { return w.closed(); }));
}

}  // namespace
}  // namespace signalrd
