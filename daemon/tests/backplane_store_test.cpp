// The backlog and lease side of the backplane, against a real redis-server: coalesced
// entries, repeated writes, cancel requests, the list of running replies and the bound
// of the backlog by the history length.

#include <cstdlib>
#include <set>

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

// The calls Redis counted for a command since the last CONFIG RESETSTAT.
long long command_calls(asio::io_context &io, RedisClient &redis, const std::string &name)
{
    auto info = testing::run_coro(io, redis.command({"INFO", "commandstats"}));
    if (!info || !info->is_ok()) {
        return -1;
    }
    const std::string key = "cmdstat_" + name + ":calls=";
    size_t at = (*info)->str.find(key);
    return at == std::string::npos ? 0 : std::atoll((*info)->str.c_str() + at + key.size());
}

TEST_F(BackplaneStore, FirstSendsOfSeveralRepliesInOneTurnShareOneScriptCall)
{
    std::vector<NewTurn> turns;
    for (int i = 0; i < 3; i++) {
        auto turn = testing::run_coro(io_, store_->create("alice", "together " +
                                                                   std::to_string(i)));
        ASSERT_TRUE(turn && turn->is_ok());
        turns.push_back(**turn);
    }
    // each reply has stored its first batch already (that one starts its message)
    for (const NewTurn &t : turns) {
        auto w = testing::run_coro(io_, store_->append_batch(t.conversation_id,
                                                             {part(t.reply_id, "one ")},
                                                             {true, true}));
        ASSERT_TRUE(w && w->is_ok());
    }
    ASSERT_TRUE(testing::run_coro(io_, redis_->command({"SET", store_->cancel_key(
                                                            turns[1].conversation_id),
                                                        turns[1].reply_id})));
    ASSERT_TRUE(testing::run_coro(io_, redis_->command({"CONFIG", "RESETSTAT"})));

    // three writers woken in the same turn, as the replies' timers wake them
    std::vector<std::optional<Result<AppendResult>>> results(turns.size());
    std::vector<std::vector<Fragment>> batches;
    for (const NewTurn &t : turns) {
        batches.push_back({part(t.reply_id, "two "), part(t.reply_id, "three ")});
    }
    for (size_t i = 0; i < turns.size(); i++) {
        asio::co_spawn(io_, store_->append_batch(turns[i].conversation_id, batches[i],
                                                 {true, false}),
                       [&results, i](std::exception_ptr, Result<AppendResult> r) {
                           results[i] = std::move(r);
                       });
    }
    ASSERT_TRUE(testing::run_until(io_, [&] {
        return results[0] && results[1] && results[2];
    }));
    EXPECT_EQ(command_calls(io_, *redis_, "evalsha"), 1) << "one call for the three";
    EXPECT_EQ(command_calls(io_, *redis_, "xadd"), 3);
    EXPECT_EQ(command_calls(io_, *redis_, "publish"), 3);

    for (size_t i = 0; i < turns.size(); i++) {
        ASSERT_TRUE(results[i]->is_ok()) << results[i]->status().message();
        EXPECT_EQ((*results[i])->cancel_requested, i == 1) << "only the second was cancelled";
        auto s = load(turns[i].conversation_id);
        ASSERT_TRUE(s);
        ASSERT_EQ(s->backlog.size(), 4u) << "the turn, one, and two and three in one entry";
        EXPECT_EQ(s->backlog[2].text, "two ");
        EXPECT_EQ(s->backlog[2].fragment_id, batches[i][0].fragment_id);
        EXPECT_EQ(s->backlog[3].text, "three ");
        EXPECT_EQ(s->backlog[3].fragment_id, batches[i][1].fragment_id);
        ReplayPlan plan = plan_replay(*s, {turns[i].reply_id, batches[i][0].fragment_id});
        ASSERT_EQ(plan.fragments.size(), 1u);
        EXPECT_EQ(plan.fragments[0].text, "three ");
    }
}

TEST_F(BackplaneStore, AFirstSendWhoseLeaseIsNotItsOwnWritesNothingAndSaysWhy)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "taken on a first send"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;
    auto first = testing::run_coro(io_, store_->append_batch(id, {part(reply, "one ")},
                                                             {true, true}));
    ASSERT_TRUE(first && first->is_ok());

    RedisArgs other = {"SET", store_->lease_key(id), "instance-b " + reply, "PX", "15000"};
    ASSERT_TRUE(testing::run_coro(io_, redis_->command(other)));
    auto lost = testing::run_coro(io_, store_->append_batch(id, {part(reply, "late")},
                                                            {true, false}));
    ASSERT_TRUE(lost);
    EXPECT_EQ(lost->status().code(), StatusCode::conflict) << "another instance holds it";
    EXPECT_EQ(load(id)->backlog.size(), 2u) << "the turn and one: nothing of the late one";

    // run out while Redis was away, and nobody took it: taken back, the batch stored once
    ASSERT_TRUE(testing::run_coro(io_, redis_->command({"DEL", store_->lease_key(id)})));
    auto back = testing::run_coro(io_, store_->append_batch(id, {part(reply, "back")},
                                                            {true, false}));
    ASSERT_TRUE(back && back->is_ok()) << back->status().message();
    auto s = load(id);
    EXPECT_TRUE(s->lease_is_ours);
    ASSERT_EQ(s->backlog.size(), 3u);
    EXPECT_EQ(s->backlog[2].text, "back");

    // a deleted conversation takes its lease with it: nothing comes back to life
    ASSERT_TRUE(testing::run_coro(io_, store_->remove(id, "alice"))->is_ok());
    auto gone = testing::run_coro(io_, store_->append_batch(id, {part(reply, "ghost")},
                                                            {true, false}));
    ASSERT_TRUE(gone);
    EXPECT_EQ(gone->status().code(), StatusCode::not_found);
    auto exists = testing::run_coro(io_, redis_->command({"EXISTS", store_->backlog_key(id)}));
    EXPECT_EQ((*exists)->integer, 0) << "no backlog made again";
}

TEST_F(BackplaneStore, WritesGoOnAfterRedisForgetsItsScripts)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "flush"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;

    auto before = testing::run_coro(io_, store_->append_batch(id, {part(reply, "one ")}));
    ASSERT_TRUE(before && before->is_ok());
    // what a restarted or failed-over Redis looks like to the scripts' callers
    ASSERT_TRUE(testing::run_coro(io_, redis_->command({"SCRIPT", "FLUSH"})));
    auto after = testing::run_coro(io_, store_->append_batch(id, {part(reply, "two ")}));
    ASSERT_TRUE(after && after->is_ok()) << after->status().message();
    EXPECT_TRUE(testing::run_coro(io_, store_->renew_lease(id, reply))->is_ok());

    auto s = load(id);
    ASSERT_TRUE(s);
    ASSERT_EQ(s->backlog.size(), 3u) << "the turn, one and two, each once";
    EXPECT_EQ(s->backlog[1].text, "one ");
    EXPECT_EQ(s->backlog[2].text, "two ");

    auto loaded = testing::run_coro(io_, redis_->command({"SCRIPT", "EXISTS",
                                                          RedisScript("return 1").sha1()}));
    ASSERT_TRUE(loaded && loaded->is_ok());
    ASSERT_EQ((*loaded)->elements.size(), 1u);
    EXPECT_EQ((*loaded)->elements[0].integer, 0) << "a script never run is not cached";
}

TEST_F(BackplaneStore, ARedisScriptIsNamedAsRedisNamesIt)
{
    RedisScript script("return 'named'");
    auto loaded = testing::run_coro(io_, redis_->command({"SCRIPT", "LOAD", script.body()}));
    ASSERT_TRUE(loaded && loaded->is_ok());
    EXPECT_EQ((*loaded)->str, script.sha1());

    auto r = testing::run_coro(io_, redis_->eval(script, {"0"}));
    ASSERT_TRUE(r && r->is_ok());
    EXPECT_EQ((*r)->str, "named");

    auto bad = testing::run_coro(io_, redis_->eval(RedisScript("return redis.call('NOPE')"),
                                                   {"0"}));
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status().code(), StatusCode::internal) << "a script's error is no NOSCRIPT";
}

TEST_F(BackplaneStore, ArgumentsReachRedisByteForByte)
{
    // the client writes the commands' wire form itself: lengths, not delimiters, frame
    // each argument
    std::string binary("a\r\nb\0c$3\r\n*2", 13);
    std::string large(100000, 'x');
    large[50000] = '\n';
    RedisScript echo("return ARGV");

    auto r = testing::run_coro(io_, redis_->eval(echo, {"0", binary, "", large, "\xff"}));
    ASSERT_TRUE(r && r->is_ok()) << (r ? r->status().message() : "no answer");
    ASSERT_EQ((*r)->elements.size(), 4u);
    EXPECT_EQ((*r)->elements[0].str, binary);
    EXPECT_EQ((*r)->elements[1].str, "");
    EXPECT_EQ((*r)->elements[2].str, large);
    EXPECT_EQ((*r)->elements[3].str, "\xff");

    ASSERT_TRUE(testing::run_coro(io_, redis_->command({"SET", "signalrd:test:bytes", binary})));
    auto got = testing::run_coro(io_, redis_->command({"GET", "signalrd:test:bytes"}));
    ASSERT_TRUE(got && got->is_ok());
    EXPECT_EQ((*got)->str, binary);
    testing::run_coro(io_, redis_->command({"DEL", "signalrd:test:bytes"}));
}

TEST_F(BackplaneStore, AFirstSendSkipsTheRepeatCheckButKeepsTheOtherGuarantees)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "hints"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;
    std::vector<Fragment> first = {part(reply, "a ")};
    std::vector<Fragment> second = {part(reply, "b ")};

    auto w1 = testing::run_coro(io_, store_->append_batch(id, first, {true, true}));
    auto w2 = testing::run_coro(io_, store_->append_batch(id, second, {true, false}));
    ASSERT_TRUE(w1 && w1->is_ok() && w2 && w2->is_ok());
    // sent again after an unknown outcome, without the hint: recognised
    auto again = testing::run_coro(io_, store_->append_batch(id, second));
    ASSERT_TRUE(again && again->is_ok());
    EXPECT_EQ((*again)->entry_id, (*w2)->entry_id);
    EXPECT_EQ(load(id)->backlog.size(), 3u);

    // the message's start was noted once: the starts list names the first reply entry
    auto starts = testing::run_coro(io_, redis_->command({"LRANGE", store_->starts_key(id),
                                                          "0", "-1"}));
    ASSERT_TRUE(starts && starts->is_ok());
    ASSERT_EQ((*starts)->elements.size(), 1u);
    EXPECT_EQ((*starts)->elements[0].str, (*w1)->entry_id);

    // ended: nothing more is appended, first send or not
    StoredMessage m{reply, sender_assistant, "a b ", "", unix_now_ms(), {}};
    Fragment fin{reply, sender_assistant, "", new_uuid_v7(), true};
    m.fragments = {{first[0].fragment_id, 2}, {second[0].fragment_id, 4},
                   {fin.fragment_id, 4}};
    ASSERT_TRUE(testing::run_coro(io_, store_->complete_reply(id, m, fin))->is_ok());
    auto late = testing::run_coro(io_, store_->append_batch(id, {part(reply, "late")},
                                                            {true, false}));
    ASSERT_TRUE(late);
    EXPECT_EQ(late->status().code(), StatusCode::conflict);
    EXPECT_EQ(load(id)->backlog.size(), 4u) << "the turn, a, b and the final fragment";
}

TEST_F(BackplaneStore, AFirstEndUnderItsLeaseStoresTheReplyAndAnotherLeaseRefusesIt)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "quick end"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;
    auto w = testing::run_coro(io_, store_->append_batch(id, {part(reply, "a ")}, {true, true}));
    ASSERT_TRUE(w && w->is_ok());

    // another instance took the lease over: the first end checks, and is refused
    auto lease = store_->lease_key(id);
    auto ours = testing::run_coro(io_, redis_->command({"GET", lease}));
    ASSERT_TRUE(ours && ours->is_ok() && (*ours)->is_string());
    auto taken = testing::run_coro(io_, redis_->command({"SET", lease, "instance-b x"}));
    ASSERT_TRUE(taken && taken->is_ok());
    StoredMessage m{reply, sender_assistant, "a ", "", unix_now_ms(), {}};
    Fragment fin{reply, sender_assistant, "", new_uuid_v7(), true};
    m.fragments = {{fin.fragment_id, 2}};
    auto refused = testing::run_coro(io_, store_->complete_reply(id, m, fin, {true, false}));
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->code(), StatusCode::conflict);
    EXPECT_TRUE(load(id)->messages.size() == 1) << "only the user's turn";

    // under its own lease it stores the message, and a repeat is recognised
    auto back = testing::run_coro(io_, redis_->command({"SET", lease, (*ours)->str}));
    ASSERT_TRUE(back && back->is_ok());
    ASSERT_TRUE(testing::run_coro(io_, store_->complete_reply(id, m, fin, {true, false}))
                    ->is_ok());
    ASSERT_TRUE(testing::run_coro(io_, store_->complete_reply(id, m, fin))->is_ok());
    auto s = load(id);
    ASSERT_EQ(s->messages.size(), 2u);
    EXPECT_EQ(s->messages.back().text, "a ");
    EXPECT_FALSE(s->reply_running) << "the end released the lease";
    EXPECT_EQ(s->backlog.size(), 3u) << "the turn, a and the final fragment, once";
}

TEST_F(BackplaneStore, ALeaseIsNeverSetAgainForAnEndedReplyOrADeletedConversation)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "gone"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    const std::string reply = (*turn)->reply_id;

    // ended: a late renewal or claim must not bring the lease back, as a later write
    // under it would skip the end check
    StoredMessage m{reply, sender_assistant, "x", "", unix_now_ms(), {}};
    Fragment fin{reply, sender_assistant, "x", new_uuid_v7(), true};
    m.fragments = {{fin.fragment_id, 1}};
    ASSERT_TRUE(testing::run_coro(io_, store_->complete_reply(id, m, fin))->is_ok());
    EXPECT_EQ(testing::run_coro(io_, store_->renew_lease(id, reply))->status().code(),
              StatusCode::not_found);
    EXPECT_EQ(testing::run_coro(io_, store_->claim_lease(id, reply))->code(),
              StatusCode::conflict);
    EXPECT_FALSE(load(id)->reply_running);

    // deleted mid-reply: neither brings the lease nor the backlog back
    auto other = testing::run_coro(io_, store_->create("alice", "deleted"));
    ASSERT_TRUE(other && other->is_ok());
    const std::string gone = (*other)->conversation_id;
    const std::string gone_reply = (*other)->reply_id;
    ASSERT_TRUE(testing::run_coro(io_, store_->remove(gone, "alice"))->is_ok());
    EXPECT_FALSE(testing::run_coro(io_, store_->renew_lease(gone, gone_reply))->is_ok());
    EXPECT_FALSE(testing::run_coro(io_, store_->claim_lease(gone, gone_reply))->is_ok());
    auto write = testing::run_coro(io_, store_->append_batch(gone, {part(gone_reply, "z")},
                                                             {true, false}));
    ASSERT_TRUE(write);
    EXPECT_EQ(write->status().code(), StatusCode::not_found);
    for (const std::string &key : {store_->lease_key(gone), store_->backlog_key(gone)}) {
        auto exists = testing::run_coro(io_, redis_->command({"EXISTS", key}));
        ASSERT_TRUE(exists && exists->is_ok());
        EXPECT_EQ((*exists)->integer, 0) << key;
    }
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

// Writes a reply as the runner does: its fragments in batches (the first one coalesced),
// then its final fragment and the finished message. Returns the message.
StoredMessage write_reply(asio::io_context &io, ConversationStore &store, const std::string &id,
                          const std::string &reply_id, const std::vector<std::string> &texts)
{
    StoredMessage m{reply_id, sender_assistant, "", "", unix_now_ms(), {}};
    std::vector<Fragment> batch;

    for (const std::string &t : texts) {
        batch.push_back(part(reply_id, t));
        m.text += t;
        m.fragments.emplace_back(batch.back().fragment_id, m.text.size());
    }
    Fragment fin = batch.back();
    batch.pop_back();
    fin.is_final = true;
    auto first = testing::run_coro(io, store.append_batch(id, {batch[0], batch[1]}));
    EXPECT_TRUE(first && first->is_ok());
    for (size_t i = 2; i < batch.size(); i++) {
        auto one = testing::run_coro(io, store.append_batch(id, {batch[i]}));
        EXPECT_TRUE(one && one->is_ok());
    }
    auto done = testing::run_coro(io, store.complete_reply(id, m, fin));
    EXPECT_TRUE(done && done->is_ok());
    return m;
}

// The distinct message ids in the backlog, in the order of their first entry.
std::vector<std::string> backlog_messages(asio::io_context &io, RedisClient &redis,
                                          const std::string &key)
{
    std::vector<std::string> ids;

    auto raw = testing::run_coro(io, redis.command({"XRANGE", key, "-", "+"}));
    EXPECT_TRUE(raw && raw->is_ok());
    for (const RedisValue &entry : (*raw)->elements) {
        const RedisValue &fields = entry.elements.at(1);
        for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
            if (fields.elements[i].str == "id" &&
                (ids.empty() || ids.back() != fields.elements[i + 1].str)) {
                ids.push_back(fields.elements[i + 1].str);
            }
        }
    }
    return ids;
}

TEST_F(BackplaneStore, TheBacklogHoldsTheLastHistoryMessagesAndResumingStaysExact)
{
    constexpr uint32_t keep = 3;
    ConversationStore store(*redis_, "bounded", "instance-a", keep, 300);
    std::vector<StoredMessage> written;

    auto turn = testing::run_coro(io_, store.create("alice", "turn 0"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    written.push_back((*turn)->user_message);
    written.push_back(write_reply(io_, store, id, (*turn)->reply_id,
                                  {"Zero ", "one ", "two ", "three"}));
    for (int t = 1; t <= 4; t++) {
        auto next = testing::run_coro(io_, store.add_turn(id, "alice", "turn " +
                                                          std::to_string(t)));
        ASSERT_TRUE(next && next->is_ok());
        written.push_back((*next)->user_message);
        EXPECT_LE(backlog_messages(io_, *redis_, store.backlog_key(id)).size(), keep);
        written.push_back(write_reply(io_, store, id, (*next)->reply_id,
                                      {"a" + std::to_string(t), "b", "c"}));
        EXPECT_LE(backlog_messages(io_, *redis_, store.backlog_key(id)).size(), keep);
    }

    // ten messages written; the backlog holds the entries of the last three, all of them
    std::vector<std::string> expected;
    for (size_t i = written.size() - keep; i < written.size(); i++) {
        expected.push_back(written[i].id);
    }
    EXPECT_EQ(backlog_messages(io_, *redis_, store.backlog_key(id)), expected);
    auto s = testing::run_coro(io_, store.load(id));
    ASSERT_TRUE(s && s->is_ok());
    ASSERT_EQ((*s)->messages.size(), written.size()) << "the messages themselves all stay";
    size_t kept = 0;
    for (const Fragment &f : (*s)->backlog) {
        kept += f.message_id == written.back().id ? 1 : 0;
    }
    EXPECT_EQ(kept, 3u) << "the newest reply keeps every fragment";

    // the first reply was trimmed long ago; a client that saw its "one " (in the middle
    // of a coalesced entry) gets exactly the rest, then every later message whole
    const StoredMessage &first_reply = written[1];
    ReplayPlan plan = plan_replay(**s, {first_reply.id, first_reply.fragments[1].first});
    ASSERT_EQ(plan.fragments.size(), written.size() - 1);
    EXPECT_EQ(plan.fragments[0].message_id, first_reply.id);
    EXPECT_EQ(plan.fragments[0].text, "two three");
    EXPECT_EQ(plan.fragments[0].fragment_id, first_reply.final_fragment_id());
    for (size_t i = 1; i < plan.fragments.size(); i++) {
        EXPECT_EQ(plan.fragments[i].message_id, written[i + 1].id);
        EXPECT_EQ(plan.fragments[i].text, written[i + 1].text);
        EXPECT_TRUE(plan.fragments[i].is_final);
    }
}

TEST_F(BackplaneStore, ATrimmedMessageResumesExactlyWhileAReplyIsInProgress)
{
    ConversationStore store(*redis_, "bounded", "instance-a", 2, 300);

    auto turn = testing::run_coro(io_, store.create("alice", "first"));
    ASSERT_TRUE(turn && turn->is_ok());
    const std::string id = (*turn)->conversation_id;
    StoredMessage old = write_reply(io_, store, id, (*turn)->reply_id, {"x", "y", "z"});
    auto next = testing::run_coro(io_, store.add_turn(id, "alice", "second"));
    ASSERT_TRUE(next && next->is_ok());
    const std::string reply = (*next)->reply_id;
    std::vector<Fragment> live = {part(reply, "p"), part(reply, "q")};
    auto w = testing::run_coro(io_, store.append_batch(id, live));
    ASSERT_TRUE(w && w->is_ok());

    // the reply in progress is the second message of two: "first" and its reply are gone
    std::vector<std::string> expected = {(*next)->user_message.id, reply};
    EXPECT_EQ(backlog_messages(io_, *redis_, store.backlog_key(id)), expected);

    auto s = testing::run_coro(io_, store.load(id));
    ASSERT_TRUE(s && s->is_ok());
    ReplayPlan plan = plan_replay(**s, {old.id, old.fragments[0].first});
    ASSERT_EQ(plan.fragments.size(), 4u);
    EXPECT_EQ(plan.fragments[0].text, "yz");
    EXPECT_EQ(plan.fragments[1].text, "second");
    EXPECT_EQ(plan.fragments[2].fragment_id, live[0].fragment_id);
    EXPECT_EQ(plan.fragments[3].fragment_id, live[1].fragment_id);
    EXPECT_FALSE(plan.fragments[3].is_final);

    // deleting the conversation takes the starts list with it
    auto gone = testing::run_coro(io_, store.remove(id, "alice"));
    ASSERT_TRUE(gone && gone->is_ok());
    auto left = testing::run_coro(io_, redis_->command({"EXISTS", store.starts_key(id)}));
    ASSERT_TRUE(left && left->is_ok());
    EXPECT_EQ((*left)->integer, 0);
}

}  // namespace
}  // namespace signalrd
