#include "chat_fixture.h"

namespace signalrd {
namespace {

using Store = testing::ChatFixture;

TEST(FragmentJson, IsWrittenAsJanssonWritesIt)
{
    const std::vector<std::string> texts = {
        "", "plain words ", "quote \" and \\ back", "tab\tnew\nline\rcr\bbs\fff",
        std::string("nul \0 byte", 10), "\x01\x1f\x7f", "slash / and <tags>",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\xe2\x80\xa8 line separator"};
    for (const std::string &text : texts) {
        for (bool final : {false, true}) {
            Fragment f{"m-1", sender_assistant, text, "f-1", final};
            std::string mine;
            ASSERT_TRUE(append_fragment_json(mine, f));
            EXPECT_EQ(mine, json_text(fragment_to_json(f).get())) << text;
        }
    }
}

TEST(FragmentJson, RefusesTextThatIsNotUtf8)
{
    const std::vector<std::string> bad = {
        "\xff", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "ok then \xe2\x82"};
    for (const std::string &text : bad) {
        std::string out;
        EXPECT_FALSE(append_json_string(out, text)) << "byte " << int(uint8_t(text.back()));
        EXPECT_EQ(json_stringn(text.data(), text.size()), nullptr) << "jansson agrees";
    }
}

TEST_F(Store, TheFragmentsPayloadIsValidJsonEvenForTextThatIsNotUtf8)
{
    Fragment good{"m-1", sender_assistant, "a \"b\"", "f-1", false};
    Fragment bad{"m-1", sender_assistant, "\xff", "f-2", false};

    for (const auto &fragments : {std::vector<Fragment>{good, good},
                                  std::vector<Fragment>{good, bad}}) {
        std::string payload = store_->fragments_payload(fragments);
        auto parsed = parse_json(payload);
        ASSERT_TRUE(parsed.is_ok()) << payload;
        const char *origin = json_get_string(parsed->get(), "origin");
        ASSERT_NE(origin, nullptr) << payload;
        EXPECT_EQ(origin, store_->origin());
        EXPECT_EQ(json_array_size(json_object_get(parsed->get(), "fragments")), 2u);
        // what the backplane tells its own messages by, without parsing them
        EXPECT_TRUE(payload.starts_with(store_->own_fragments_prefix())) << payload;
    }
}

TEST_F(Store, CreateStoresTheConversationItsFirstTurnAndALease)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "  What   is\na hub?  "));
    ASSERT_TRUE(turn && turn->is_ok());
    const NewTurn &t = **turn;

    auto s = load(t.conversation_id);
    ASSERT_TRUE(s && s->exists);
    EXPECT_EQ(s->owner, "alice");
    EXPECT_EQ(s->name, "What is a hub?") << "the name is the prompt, whitespace folded";
    ASSERT_EQ(s->messages.size(), 1u);
    EXPECT_EQ(s->messages[0].text, "  What   is\na hub?  ");
    EXPECT_EQ(s->messages[0].role, "user");
    EXPECT_TRUE(s->messages[0].parent_id.empty());
    ASSERT_EQ(s->backlog.size(), 1u);
    EXPECT_EQ(s->backlog[0].fragment_id, t.user_fragment.fragment_id);
    EXPECT_TRUE(s->reply_running) << "create takes the reply lease";
    EXPECT_EQ(t.history.size(), 1u);
}

TEST_F(Store, AddTurnIsRefusedWhileAReplyRunsAndForOtherUsers)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "first"));
    ASSERT_TRUE(turn && turn->is_ok());
    std::string id = (*turn)->conversation_id;

    auto busy = testing::run_coro(io_, store_->add_turn(id, "alice", "second"));
    ASSERT_TRUE(busy);
    EXPECT_EQ(busy->status().code(), StatusCode::conflict);

    auto foreign = testing::run_coro(io_, store_->add_turn(id, "bob", "mine now"));
    ASSERT_TRUE(foreign);
    EXPECT_EQ(foreign->status().code(), StatusCode::not_found);

    auto absent = testing::run_coro(
        io_, store_->add_turn("0190a6f4-3b2c-7d1e-8f00-0123456789ab", "alice", "x"));
    ASSERT_TRUE(absent);
    EXPECT_EQ(absent->status().code(), StatusCode::not_found);
}

TEST_F(Store, AFinishedReplyReleasesTheLeaseAndStartsTheBacklogExpiry)
{
    std::string id = create("alice", "hello");
    ASSERT_TRUE(wait_reply(id));

    auto s = load(id);
    ASSERT_EQ(s->messages.size(), 2u);
    EXPECT_FALSE(s->reply_running);
    EXPECT_EQ(s->messages[1].parent_id, s->messages[0].id);
    EXPECT_EQ(s->messages[1].fragments.size(), reply_tokens);

    auto ttl = testing::run_coro(io_, redis_->command({"TTL", store_->backlog_key(id)}));
    ASSERT_TRUE(ttl && ttl->is_ok());
    EXPECT_GT((*ttl)->integer, 290);
    EXPECT_LE((*ttl)->integer, 300);

    auto next = testing::run_coro(io_, store_->add_turn(id, "alice", "again"));
    ASSERT_TRUE(next && next->is_ok());
    EXPECT_EQ((*next)->user_message.parent_id, s->messages[1].id) << "parent is the last reply";
    EXPECT_EQ((*next)->history.size(), 3u);
    ttl = testing::run_coro(io_, redis_->command({"TTL", store_->backlog_key(id)}));
    EXPECT_EQ((*ttl)->integer, -1) << "a running reply keeps its backlog";
}

TEST_F(Store, ListsOnlyTheOwnersConversationsOldestFirst)
{
    std::string a = create("alice", "one");
    std::string b = create("alice", "two");
    create("bob", "other");
    ASSERT_TRUE(wait_reply(a) && wait_reply(b));

    auto list = testing::run_coro(io_, store_->list("alice", true));
    ASSERT_TRUE(list && list->is_ok());
    ASSERT_EQ((*list)->size(), 2u);
    EXPECT_EQ((**list)[0].id, a);
    EXPECT_EQ((**list)[1].id, b);
    EXPECT_EQ((**list)[1].messages.size(), 2u);
}

TEST_F(Store, RemoveDeletesEveryKeyAndAnUnfinishedReplyCannotBringThemBack)
{
    auto turn = testing::run_coro(io_, store_->create("alice", "bye"));
    ASSERT_TRUE(turn && turn->is_ok());
    std::string id = (*turn)->conversation_id;

    auto wrong = testing::run_coro(io_, store_->remove(id, "bob"));
    EXPECT_EQ(wrong->code(), StatusCode::not_found);
    auto ok = testing::run_coro(io_, store_->remove(id, "alice"));
    ASSERT_TRUE(ok && ok->is_ok());

    Fragment late{(*turn)->reply_id, "assistant", "late", new_uuid_v7(), false};
    auto appended = testing::run_coro(io_, store_->append_fragment(id, late));
    EXPECT_EQ(appended->code(), StatusCode::not_found);

    auto keys = testing::run_coro(io_, redis_->command({"KEYS", "test:*"}));
    ASSERT_TRUE(keys && keys->is_ok());
    EXPECT_TRUE((*keys)->elements.empty()) << "no key of the conversation is left";
    EXPECT_FALSE(load(id)->exists);
}

TEST_F(Store, CommandsFailFastWhenRedisIsDown)
{
    redis_server_.stop();
    ASSERT_TRUE(testing::run_until(io_, [this] { return !redis_->connected(); }));

    auto turn = testing::run_coro(io_, store_->create("alice", "x"), std::chrono::seconds(2));
    ASSERT_TRUE(turn) << "the call returned instead of hanging";
    EXPECT_EQ(turn->status().code(), StatusCode::unavailable);
}

TEST(RedisUrl, ParsesTcpAndUnixForms)
{
    auto a = parse_redis_url("redis://127.0.0.1:6390");
    ASSERT_TRUE(a.is_ok());
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 6390);

    auto b = parse_redis_url("redis://:pw@cache/2");
    ASSERT_TRUE(b.is_ok());
    EXPECT_EQ(b->host, "cache");
    EXPECT_EQ(b->port, 6379);
    EXPECT_EQ(b->password, "pw");
    EXPECT_EQ(b->db, 2);
    EXPECT_EQ(b->describe(), "cache:6379") << "the password never shows";

    auto c = parse_redis_url("unix:///run/redis/redis.sock");
    ASSERT_TRUE(c.is_ok());
    EXPECT_EQ(c->unix_path, "/run/redis/redis.sock");

    EXPECT_FALSE(parse_redis_url("http://x").is_ok());
    EXPECT_FALSE(parse_redis_url("redis://host:99999").is_ok());
    EXPECT_FALSE(parse_redis_url("unix://relative").is_ok());
}

}  // namespace
}  // namespace signalrd
