// The backlog and lease side of the backplane, against a real redis-server: coalesced
// entries, repeated writes, cancel requests and the list of running replies.

#include "chat_fixture.h"
#include "replay.h"
#include "uuid.h"

namespace signalrd {
namespace {

using BackplaneStore = testing::ChatFixture;

Fragment part(const std::string &reply_id, const std::string &text)
{
    return {reply_id, sender_assistant, text, new_uuid_v7(), false};
}

TEST_F(BackplaneStore, ACoalescedEntryIsReadBackFragmentByFragmentAndResumesExactly)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "coalesce"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;
    std::vector<Fragment> batch = {part(reply, "One "), part(reply, "two "),
                                   part(reply, "three ")};

    auto written = testing::run_coro(io_, store_->append_batch(id, batch));
    ASSERT_TRUE(written && written->is_ok()) << written->status().message();

    auto raw = testing::run_coro(io_, redis_->command({"XLEN", store_->backlog_key(id)}));
    EXPECT_EQ((*raw)->integer, 2) << "the user turn and one entry for the three fragments";

    auto s = load(id);
    ASSERT_EQ(s->backlog.size(), 4u);
    for (size_t i = 0; i < batch.size(); i++) {
        EXPECT_EQ(s->backlog[i + 1].fragment_id, batch[i].fragment_id);
        EXPECT_EQ(s->backlog[i + 1].text, batch[i].text);
        EXPECT_FALSE(s->backlog[i + 1].is_final);
    }

    // a client that saw "two " live resumes with exactly "three "
    ReplayPlan plan = plan_replay(*s, {reply, batch[1].fragment_id});
    ASSERT_EQ(plan.fragments.size(), 1u);
    EXPECT_EQ(plan.fragments[0].text, "three ");
    EXPECT_EQ(plan.fragments[0].fragment_id, batch[2].fragment_id);
}

TEST_F(BackplaneStore, ABatchSentAgainAfterAnUnknownOutcomeIsStoredOnce)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "repeat"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    std::vector<Fragment> batch = {part((*turn)->reply_id, "a"), part((*turn)->reply_id, "b")};

    auto first = testing::run_coro(io_, store_->append_batch(id, batch));
    auto again = testing::run_coro(io_, store_->append_batch(id, batch));
    ASSERT_TRUE(first && first->is_ok() && again && again->is_ok());
    EXPECT_EQ((*first)->entry_id, (*again)->entry_id) << "the repeat names the same entry";
    EXPECT_EQ(load(id)->backlog.size(), 3u) << "the turn, a and b: nothing twice";
}

TEST_F(BackplaneStore, AReplyTakenOverOrEndedElsewhereCannotWriteAnyMore)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "taken"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;

    RedisArgs other = {"SET", store_->lease_key(id), "instance-b " + reply, "PX", "15000"};
    ASSERT_TRUE(testing::run_coro(io_, redis_->command(other)));
    auto lost = testing::run_coro(io_, store_->append_batch(id, {part(reply, "late")}));
    ASSERT_TRUE(lost);
    EXPECT_EQ(lost->status().code(), StatusCode::conflict) << "another instance holds it";

    // the lease ran out while Redis was away and nobody took it: the writer takes it back
    ASSERT_TRUE(testing::run_coro(io_, redis_->command({"DEL", store_->lease_key(id)})));
    auto back = testing::run_coro(io_, store_->append_batch(id, {part(reply, "back")}));
    ASSERT_TRUE(back && back->is_ok()) << back->status().message();
    EXPECT_TRUE(load(id)->lease_is_ours);
}

TEST_F(BackplaneStore, ACancelRequestReachesTheLeaseHolderAndItsRenewal)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "cancel"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;

    auto renewed = testing::run_coro(io_, store_->renew_lease(id, reply));
    ASSERT_TRUE(renewed && renewed->is_ok());
    EXPECT_FALSE(**renewed) << "no cancel asked for yet";

    auto told = testing::run_coro(io_, store_->request_cancel(id));
    ASSERT_TRUE(told && told->is_ok());
    EXPECT_TRUE(**told) << "a reply runs, so its instance is told";
    auto again = testing::run_coro(io_, store_->renew_lease(id, reply));
    ASSERT_TRUE(again && again->is_ok());
    EXPECT_TRUE(**again) << "the renewal says a cancel was asked for";
    auto write = testing::run_coro(io_, store_->append_batch(id, {part(reply, "x")}));
    ASSERT_TRUE(write && write->is_ok());
    EXPECT_TRUE((*write)->cancel_requested) << "and so does the next write";
}

TEST_F(BackplaneStore, RunningRepliesAreListedUntilTheyEnd)
{
    std::string id = create("alice", "listed");
    auto listed = testing::run_coro(io_, store_->listed_replies(0, 100));
    ASSERT_TRUE(listed && listed->is_ok());
    ASSERT_EQ((*listed)->size(), 1u);
    EXPECT_EQ((**listed)[0].conversation_id, id);

    auto due = testing::run_coro(io_, store_->listed_replies(unix_now_ms(), 100));
    ASSERT_TRUE(due && due->is_ok());
    EXPECT_TRUE((*due)->empty()) << "its lease deadline is still ahead";

    ASSERT_TRUE(wait_reply(id));
    auto after = testing::run_coro(io_, store_->listed_replies(0, 100));
    ASSERT_TRUE(after && after->is_ok());
    EXPECT_TRUE((*after)->empty()) << "a finished reply is no longer listed";
}

TEST_F(BackplaneStore, AMalformedPartsFieldReadsAsOneFragmentNeverOutOfBounds)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "malformed"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    std::string fid = new_uuid_v7();
    for (const char *parts : {"x:99", "a:2,b:1", ":", "", "a:3", "a:2,b"}) {
        RedisArgs xadd = {"XADD", store_->backlog_key(id), "*", "id", (*turn)->reply_id,
                          "sender", "assistant", "text", "abc", "fragmentId", fid,
                          "isFinal", "0", "parts", parts};
        ASSERT_TRUE(testing::run_coro(io_, redis_->command(xadd)));
    }
    auto s = load(id);
    ASSERT_EQ(s->backlog.size(), 7u) << "each bad entry stays one whole fragment";
    for (size_t i = 1; i < s->backlog.size(); i++) {
        EXPECT_EQ(s->backlog[i].text, "abc");
    }
}

}  // namespace
}  // namespace signalrd
