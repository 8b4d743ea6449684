#include "chat_fixture.h"

#include <algorithm>

namespace signalrd {
namespace {

using testing::ChatFixture;

// Replies slow enough (12 tokens at 100/s) for a test to act while one runs.
class SlowChat : public ChatFixture {
protected:
    uint32_t token_rate() const override { return 100; }
};

std::map<std::string, std::string> text_by_message(const std::vector<Fragment> &fragments)
{
    std::map<std::string, std::string> out;
    for (const Fragment &f : fragments) {
        out[f.message_id] += f.text;
    }
    return out;
}

std::map<std::string, std::string> stored_texts(const ConversationSnapshot &s)
{
    std::map<std::string, std::string> out;
    for (const StoredMessage &m : s.messages) {
        out[m.id] = m.text;
    }
    return out;
}

void expect_strictly_increasing(const std::vector<Fragment> &fragments)
{
    for (size_t i = 1; i < fragments.size(); i++) {
        EXPECT_LT(fragments[i - 1].fragment_id, fragments[i].fragment_id) << "fragment " << i;
    }
}

TEST_F(SlowChat, StreamSendsTheUserTurnThenTheReplyLive)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "Tell me about streams");

    stream(alice, "1", id);
    ASSERT_TRUE(wait_final("c1", "1"));
    auto got = sink_.fragments("c1", "1");

    ASSERT_GE(got.size(), 2u);
    EXPECT_EQ(got[0].sender, "user");
    EXPECT_EQ(got[0].text, "Tell me about streams");
    EXPECT_TRUE(got[0].is_final);
    EXPECT_GT(got.size(), 5u) << "the reply arrived fragment by fragment";
    for (size_t i = 1; i < got.size(); i++) {
        EXPECT_EQ(got[i].sender, "assistant");
        EXPECT_EQ(got[i].is_final, i + 1 == got.size());
    }
    expect_strictly_increasing(got);

    ASSERT_TRUE(wait_reply(id));
    auto s = load(id);
    ASSERT_TRUE(s);
    ASSERT_EQ(s->messages.size(), 2u);
    EXPECT_EQ(text_by_message(got), stored_texts(*s)) << "streamed text equals stored text";
    EXPECT_FALSE(sink_.completion("c1", "1")) << "a stream never completes by itself";
}

TEST_F(SlowChat, EveryResumePointYieldsExactlyWhatWasMissed)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "resume me");
    stream(alice, "live", id);
    ASSERT_TRUE(wait_final("c1", "live"));
    ASSERT_TRUE(wait_reply(id));
    auto full = sink_.fragments("c1", "live");
    auto expected = stored_texts(*load(id));

    for (int expired = 0; expired < 2; expired++) {
        if (expired) {
            // the backlog's TTL ran out: only the stored messages remain
            auto r = testing::run_coro(io_, redis_->command({"DEL", store_->backlog_key(id)}));
            ASSERT_TRUE(r && r->is_ok());
        }
        for (size_t k = 0; k < full.size(); k++) {
            std::string inv = "r" + std::to_string(expired) + "-" + std::to_string(k);
            stream(alice, inv, id, {full[k].message_id, full[k].fragment_id});
            // the replay is one Redis read away; nothing live follows a finished reply
            testing::run_for(io_, std::chrono::milliseconds(50));

            std::vector<Fragment> seen(full.begin(), full.begin() + k + 1);
            auto rest = sink_.fragments("c1", inv);
            for (const Fragment &f : rest) {
                EXPECT_GT(f.fragment_id, full[k].fragment_id) << "nothing the client had";
            }
            seen.insert(seen.end(), rest.begin(), rest.end());
            EXPECT_EQ(text_by_message(seen), expected)
                << "resume after fragment " << k << (expired ? " (backlog expired)" : "");
            cancel(alice, inv);
        }
    }
}

TEST_F(SlowChat, ResumingMidReplyGetsTheRestOfTheMessageInProgress)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "a long answer please");

    stream(alice, "a", id);
    ASSERT_TRUE(testing::run_until(io_, [&] { return sink_.fragments("c1", "a").size() >= 4; }));
    cancel(alice, "a");
    auto before = sink_.fragments("c1", "a");
    ASSERT_TRUE(runner_->running(id)) << "the reply must still be running for this test";

    stream(alice, "b", id, {before.back().message_id, before.back().fragment_id});
    ASSERT_TRUE(wait_final("c1", "b"));
    ASSERT_TRUE(wait_reply(id));

    std::vector<Fragment> all = before;
    auto after = sink_.fragments("c1", "b");
    all.insert(all.end(), after.begin(), after.end());
    expect_strictly_increasing(all);
    EXPECT_EQ(text_by_message(all), stored_texts(*load(id)));
    EXPECT_EQ(sink_.completion("c1", "a"), "") << "CancelInvocation gets an empty Completion";
}

TEST_F(SlowChat, EveryStreamOfAConversationReceivesTheReply)
{
    auto tab1 = connection("t1", "alice");
    auto tab2 = connection("t2", "alice");
    std::string id = create("alice", "two tabs");

    stream(tab1, "1", id);
    stream(tab2, "1", id);
    ASSERT_TRUE(wait_final("t1", "1"));
    ASSERT_TRUE(wait_final("t2", "1"));

    EXPECT_EQ(text_by_message(sink_.fragments("t1", "1")),
              text_by_message(sink_.fragments("t2", "1")));
}

TEST_F(SlowChat, CancellingTheReplyEndsItWithACancelledFragment)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "stop me");

    stream(alice, "1", id);
    ASSERT_TRUE(testing::run_until(io_, [&] { return sink_.fragments("c1", "1").size() >= 3; }));
    EXPECT_TRUE(runner_->cancel(id));
    ASSERT_TRUE(wait_final("c1", "1"));
    ASSERT_TRUE(wait_reply(id));

    auto got = sink_.fragments("c1", "1");
    EXPECT_EQ(got.back().text, cancelled_text);
    EXPECT_LT(got.size(), reply_tokens + 1) << "the reply was cut short";
    auto s = load(id);
    EXPECT_EQ(text_by_message(got), stored_texts(*s));
}

// Holds the daemon's Redis writes back for a while (reads still pass, on other
// connections): what a stream is shown meanwhile is not stored yet.
void pause_writes(asio::io_context &io, RedisClient &redis, int ms)
{
    auto r = testing::run_coro(io, redis.command({"CLIENT", "PAUSE", std::to_string(ms),
                                                  "WRITE"}));
    ASSERT_TRUE(r && r->is_ok());
}

size_t assistant_count(const std::vector<Fragment> &fragments)
{
    return std::count_if(fragments.begin(), fragments.end(),
                         [](const Fragment &f) { return f.sender == "assistant"; });
}

TEST_F(SlowChat, AFragmentIsShownBeforeRedisHoldsIt)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "quick");

    stream(alice, "1", id);
    ASSERT_TRUE(testing::run_until(io_, [&] { return !sink_.fragments("c1", "1").empty(); }));
    pause_writes(io_, *redis_, 400);
    auto paused_at = std::chrono::steady_clock::now();

    ASSERT_TRUE(testing::run_until(
        io_, [&] { return assistant_count(sink_.fragments("c1", "1")) >= 3; }));
    EXPECT_LT(std::chrono::steady_clock::now() - paused_at, std::chrono::milliseconds(300))
        << "shown while Redis held the writes back";
    auto unstored = runner_->unstored(id);
    ASSERT_FALSE(unstored.empty()) << "what was shown and not stored yet is known";
    EXPECT_EQ(unstored.front().fragment_id, sink_.fragments("c1", "1")[1].fragment_id)
        << "the first assistant fragment waits for its write";

    ASSERT_TRUE(wait_final("c1", "1"));
    ASSERT_TRUE(wait_reply(id));
    EXPECT_TRUE(runner_->unstored(id).empty());
    auto got = sink_.fragments("c1", "1");
    expect_strictly_increasing(got);
    EXPECT_EQ(text_by_message(got), stored_texts(*load(id))) << "all of it stored after all";
}

TEST_F(SlowChat, AStreamStartedWhileFragmentsAreUnstoredGetsEachOnce)
{
    auto tab1 = connection("t1", "alice");
    auto tab2 = connection("t2", "alice");
    std::string id = create("alice", "late tab");

    stream(tab1, "1", id);
    ASSERT_TRUE(testing::run_until(io_, [&] { return !sink_.fragments("t1", "1").empty(); }));
    pause_writes(io_, *redis_, 300);
    ASSERT_TRUE(testing::run_until(
        io_, [&] { return assistant_count(sink_.fragments("t1", "1")) >= 3; }));
    ASSERT_FALSE(runner_->unstored(id).empty());

    stream(tab2, "1", id);
    ASSERT_TRUE(wait_final("t1", "1"));
    ASSERT_TRUE(wait_final("t2", "1"));

    auto first = sink_.fragments("t1", "1");
    auto second = sink_.fragments("t2", "1");
    expect_strictly_increasing(second);
    ASSERT_EQ(second.size(), first.size()) << "each fragment once, none missing";
    for (size_t i = 0; i < first.size(); i++) {
        EXPECT_EQ(second[i].fragment_id, first[i].fragment_id) << "fragment " << i;
    }
}

TEST_F(SlowChat, WhoSawTheFinalFragmentAndReadsTheChatFindsTheReply)
{
    // the fixture's Redis is new, as after a restart: it has only the scripts that the
    // client loaded when it connected (without them, the final's write would meet
    // NOSCRIPT and be sent again behind the read)
    std::string id = create("alice", "read me back");
    std::optional<ConversationSnapshot> read;

    // a client's next request comes in a later turn of the loop than the final
    uint64_t handle = bus_.subscribe(id, [&](const ConversationEvent &e) {
        if (e.fragment.is_final && e.fragment.sender == sender_assistant) {
            asio::post(io_, [&] {
                asio::co_spawn(io_, [&]() -> asio::awaitable<void> {
                    auto s = co_await store_->load(id);
                    if (s.is_ok()) {
                        read = *s;
                    }
                }, asio::detached);
            });
        }
    });
    ASSERT_TRUE(testing::run_until(io_, [&] { return read.has_value(); }));
    bus_.unsubscribe(id, handle);

    ASSERT_EQ(read->messages.size(), 2u) << "the user's turn and the reply";
    EXPECT_EQ(read->messages.back().role, "assistant");
    EXPECT_FALSE(read->reply_running);
}

TEST_F(SlowChat, WithStoreBeforeShowNothingIsShownThatRedisDoesNotHold)
{
    auto alice = connection("c1", "alice");
    runner_->set_store_before_show(true);
    std::string id = create("alice", "strict");

    stream(alice, "1", id);
    ASSERT_TRUE(testing::run_until(io_, [&] { return !sink_.fragments("c1", "1").empty(); }));
    size_t before = assistant_count(sink_.fragments("c1", "1"));
    pause_writes(io_, *redis_, 300);

    testing::run_for(io_, std::chrono::milliseconds(150));
    EXPECT_EQ(assistant_count(sink_.fragments("c1", "1")), before)
        << "nothing new shown while the writes are held back";
    EXPECT_TRUE(runner_->unstored(id).empty());

    ASSERT_TRUE(wait_final("c1", "1"));
    EXPECT_EQ(text_by_message(sink_.fragments("c1", "1")), stored_texts(*load(id)));
}

TEST_F(ChatFixture, AnotherUsersConversationIsNotFound)
{
    auto mallory = connection("c2", "mallory");
    std::string id = create("alice", "private");
    ASSERT_TRUE(wait_reply(id));

    stream(mallory, "1", id);
    stream(mallory, "2", "0190a6f4-3b2c-7d1e-8f00-0123456789ab");
    ASSERT_TRUE(testing::run_until(io_, [&] {
        return sink_.completion("c2", "1") && sink_.completion("c2", "2");
    }));

    EXPECT_EQ(sink_.completion("c2", "1"), "Conversation not found.");
    EXPECT_EQ(sink_.completion("c2", "2"), "Conversation not found.")
        << "an unknown id and a foreign one look the same";
    EXPECT_TRUE(sink_.fragments("c2", "1").empty());
    EXPECT_EQ(hub_->stream_count(), 0u);
}

TEST_F(ChatFixture, MalformedArgumentsGetAnErrorCompletion)
{
    auto alice = connection("c1", "alice");

    invoke(alice, SR_MSG_STREAM_INVOCATION, "1", "Stream", json_pack("[i]", 42));
    invoke(alice, SR_MSG_STREAM_INVOCATION, "2", "Stream", json_array());
    invoke(alice, SR_MSG_STREAM_INVOCATION, "3", "Stream", json_pack("[s]", "not-a-uuid"));
    invoke(alice, SR_MSG_STREAM_INVOCATION, "4", "Stream",
           json_pack("[s {s:s}]", "0190a6f4-3b2c-7d1e-8f00-0123456789ab", "lastFragmentId",
                     "zzz"));
    invoke(alice, SR_MSG_STREAM_INVOCATION, "5", "Stream",
           json_pack("[s i]", "0190a6f4-3b2c-7d1e-8f00-0123456789ab", 7));

    for (const char *inv : {"1", "2", "3", "4", "5"}) {
        EXPECT_EQ(sink_.completion("c1", inv), "Invalid arguments for 'Stream'.") << inv;
    }
    EXPECT_EQ(hub_->stream_count(), 0u);
}

TEST_F(ChatFixture, UnknownMethodsGetErrorsAndFireAndForgetCallsAreIgnored)
{
    auto alice = connection("c1", "alice");

    invoke(alice, SR_MSG_STREAM_INVOCATION, "1", "Nope", json_array());
    invoke(alice, SR_MSG_INVOCATION, "2", "Nope", json_array());
    invoke(alice, SR_MSG_INVOCATION, "3", "Stream", json_array());
    invoke(alice, SR_MSG_INVOCATION, nullptr, "Nope", json_array());

    EXPECT_EQ(sink_.completion("c1", "1"), "Unknown method 'Nope'.");
    EXPECT_EQ(sink_.completion("c1", "2"), "Unknown method 'Nope'.");
    ASSERT_TRUE(sink_.completion("c1", "3"));
    EXPECT_NE(sink_.completion("c1", "3")->find("streaming method"), std::string::npos);
    EXPECT_EQ(sink_.sent.size(), 3u) << "the call without an invocation id got no answer";
}

TEST_F(SlowChat, CancelAndDisconnectFreeTheStreams)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "free me");

    stream(alice, "1", id);
    stream(alice, "2", id);
    stream(alice, "2", id);
    EXPECT_EQ(sink_.completion("c1", "2"), "Invocation id is already in use.");
    ASSERT_TRUE(testing::run_until(io_, [&] { return sink_.fragments("c1", "1").size() >= 2; }));

    cancel(alice, "1");
    size_t after_cancel = sink_.fragments("c1", "1").size();
    EXPECT_EQ(hub_->stream_count(), 1u);
    hub_->on_disconnected(alice);
    EXPECT_EQ(hub_->stream_count(), 0u);
    EXPECT_EQ(bus_.listener_count(id), 0u) << "nothing left subscribed";

    ASSERT_TRUE(wait_reply(id));
    EXPECT_EQ(sink_.fragments("c1", "1").size(), after_cancel) << "nothing after the cancel";
}

TEST_F(ChatFixture, AReplyLeftUnfinishedByADeadInstanceIsEndedWhenStreamed)
{
    auto alice = connection("c1", "alice");
    auto turn = testing::run_coro(io_, store_->create("alice", "interrupted"));
    ASSERT_TRUE(turn && turn->is_ok());
    const NewTurn &t = **turn;
    // as if an instance wrote two fragments and died: its lease then expires
    for (const char *text : {"Half ", "done "}) {
        Fragment f{t.reply_id, "assistant", text, new_uuid_v7(), false};
        auto s = testing::run_coro(io_, store_->append_fragment(t.conversation_id, f));
        ASSERT_TRUE(s && s->is_ok());
    }
    RedisArgs del_lease = {"DEL", store_->lease_key(t.conversation_id)};
    auto del = testing::run_coro(io_, redis_->command(del_lease));
    ASSERT_TRUE(del && del->is_ok());

    stream(alice, "1", t.conversation_id);
    ASSERT_TRUE(wait_final("c1", "1"));

    auto got = sink_.fragments("c1", "1");
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[1].text, "Half ");
    EXPECT_EQ(got[3].text, interrupted_text);
    auto s = load(t.conversation_id);
    ASSERT_EQ(s->messages.size(), 2u);
    EXPECT_EQ(s->messages[1].text, std::string("Half done ") + interrupted_text);
}

TEST_F(ChatFixture, ARestartedInstanceEndsTheRepliesItsPreviousRunLeft)
{
    auto alice = connection("c1", "alice");
    auto turn = testing::run_coro(io_, store_->create("alice", "crash"));
    ASSERT_TRUE(turn && turn->is_ok());
    const NewTurn &t = **turn;
    Fragment f{t.reply_id, "assistant", "Partial ", new_uuid_v7(), false};
    ASSERT_TRUE(testing::run_coro(io_, store_->append_fragment(t.conversation_id, f)));
    // the lease is still there, but it names this instance and nothing runs here

    stream(alice, "1", t.conversation_id);
    ASSERT_TRUE(wait_final("c1", "1"));

    auto got = sink_.fragments("c1", "1");
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[2].text, interrupted_text);
    EXPECT_FALSE(load(t.conversation_id)->reply_running) << "the lease was released";
}

TEST_F(ChatFixture, AReplyLeasedByAnotherLiveInstanceIsLeftToIt)
{
    auto alice = connection("c1", "alice");
    auto turn = testing::run_coro(io_, store_->create("alice", "elsewhere"));
    ASSERT_TRUE(turn && turn->is_ok());
    const NewTurn &t = **turn;
    Fragment f{t.reply_id, "assistant", "Streaming ", new_uuid_v7(), false};
    ASSERT_TRUE(testing::run_coro(io_, store_->append_fragment(t.conversation_id, f)));
    RedisArgs other = {"SET", store_->lease_key(t.conversation_id), "instance-b " + t.reply_id,
                       "PX", "15000"};
    ASSERT_TRUE(testing::run_coro(io_, redis_->command(other)));

    stream(alice, "1", t.conversation_id);
    testing::run_for(io_, std::chrono::milliseconds(100));

    auto got = sink_.fragments("c1", "1");
    ASSERT_EQ(got.size(), 2u) << "the turn and the fragment so far, then it waits";
    EXPECT_FALSE(got[1].is_final);
    EXPECT_TRUE(load(t.conversation_id)->reply_running);
}

TEST_F(ChatFixture, DeletingTheConversationEndsItsStreams)
{
    auto alice = connection("c1", "alice");
    std::string id = create("alice", "delete me");
    ASSERT_TRUE(wait_reply(id));
    stream(alice, "1", id);
    ASSERT_TRUE(wait_final("c1", "1"));

    bus_.publish(id, {ConversationEvent::Kind::deleted, {}});

    EXPECT_EQ(sink_.completion("c1", "1"), "The conversation was deleted.");
    EXPECT_EQ(hub_->stream_count(), 0u);
}

}  // namespace
}  // namespace signalrd
