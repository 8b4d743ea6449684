#include "chat_api.h"
#include "chat_fixture.h"
#include "token_claims.h"

namespace signalrd {
namespace {

class ChatApiTest : public testing::ChatFixture {
protected:
    // 12 tokens at 100/s: a reply still runs when the next request comes, as the tests
    // that cancel it or find it busy need (at 1,000/s a slow test machine finished it
    // first now and then)
    uint32_t token_rate() const override { return 100; }

    void SetUp() override
    {
        ChatFixture::SetUp();
        api_ = std::make_unique<ChatApi>(*store_, *runner_, bus_, *redis_);
    }

    void TearDown() override
    {
        api_.reset();
        ChatFixture::TearDown();
    }

    HttpResponse call(const std::string &method, const std::string &target,
                      const std::string &body = "", const std::string &user = "alice")
    {
        HttpRequest r;
        r.method = method;
        r.target = target;
        size_t q = target.find('?');
        r.path = target.substr(0, q);
        r.query = q == std::string::npos ? "" : target.substr(q + 1);
        if (!user.empty()) {
            r.headers.emplace_back("x-signalr-user", user);
        }
        r.body = body;
        auto res = testing::run_coro(io_, api_->handle(r));
        EXPECT_TRUE(res) << method << " " << target << " did not finish";
        return res ? *res : HttpResponse::empty(0);
    }

    static Json body_of(const HttpResponse &res)
    {
        auto j = parse_json(res.body);
        return j.is_ok() ? *j : Json();
    }

    std::string post_chat(const std::string &text)
    {
        std::string body = "{\"prompt\":{\"text\":\"" + text + "\"}}";
        HttpResponse res = call("POST", "/api/v1/chats", body);
        EXPECT_EQ(res.status, 201) << res.body;
        Json id = body_of(res);
        return json_is_string(id.get()) ? json_string_value(id.get()) : "";
    }

    std::unique_ptr<ChatApi> api_;
};

std::string header(const HttpResponse &res, const std::string &name)
{
    for (const auto &[n, v] : res.headers) {
        if (n == name) {
            return v;
        }
    }
    return "";
}

TEST_F(ChatApiTest, PostCreatesAConversationAndStartsItsReply)
{
    HttpResponse res = call("POST", "/api/v1/chats", R"({"prompt":{"text":"Hi there"}})");

    ASSERT_EQ(res.status, 201) << res.body;
    Json id = body_of(res);
    ASSERT_TRUE(json_is_string(id.get())) << "the body is the id as a JSON string";
    std::string conv = json_string_value(id.get());
    EXPECT_TRUE(normalize_uuid(conv));
    EXPECT_EQ(header(res, "Location"), "/api/v1/chats/" + conv);
    EXPECT_TRUE(runner_->running(conv));

    ASSERT_TRUE(wait_reply(conv));
    HttpResponse got = call("GET", "/api/v1/chats/" + conv);
    ASSERT_EQ(got.status, 200);
    Json c = body_of(got);
    EXPECT_STREQ(json_get_string(c.get(), "id"), conv.c_str());
    EXPECT_STREQ(json_get_string(c.get(), "name"), "Hi there");
    ASSERT_TRUE(json_get_string(c.get(), "createdAt"));
    json_t *messages = json_object_get(c.get(), "messages");
    ASSERT_EQ(json_array_size(messages), 2u);
    json_t *reply = json_array_get(messages, 1);
    EXPECT_STREQ(json_get_string(reply, "role"), "assistant");
    EXPECT_STREQ(json_get_string(reply, "parentMessageId"),
                 json_get_string(json_array_get(messages, 0), "id"));
    EXPECT_TRUE(json_is_null(json_object_get(json_array_get(messages, 0), "parentMessageId")));
    EXPECT_EQ(json_object_get(reply, "fragments"), nullptr) << "internal fields stay inside";
}

TEST_F(ChatApiTest, EmptyOrMissingPromptTextIsA400NamingTheField)
{
    for (const char *body : {R"({"prompt":{"text":""}})", R"({"prompt":{"text":"   "}})",
                             R"({"prompt":{}})", R"({})", R"({"prompt":{"text":5}})"}) {
        HttpResponse res = call("POST", "/api/v1/chats", body);
        EXPECT_EQ(res.status, 400) << body;
        EXPECT_EQ(res.content_type, "application/problem+json");
        Json p = body_of(res);
        EXPECT_TRUE(json_object_get(json_object_get(p.get(), "errors"), "prompt.text")) << body;
    }
    EXPECT_EQ(call("POST", "/api/v1/chats", "not json").status, 400);
}

TEST_F(ChatApiTest, RequestsWithoutAUserAre401)
{
    HttpResponse res = call("GET", "/api/v1/chats", "", "");

    EXPECT_EQ(res.status, 401);
    EXPECT_EQ(header(res, "WWW-Authenticate"), "Bearer");
    EXPECT_EQ(call("POST", "/api/v1/chats", R"({"prompt":{"text":"x"}})", "").status, 401);
}

TEST_F(ChatApiTest, PutAddsATurnOnceTheReplyIsDoneAndChecksTheId)
{
    std::string id = post_chat("first");
    std::string body = "{\"id\":\"" + id + "\",\"prompt\":{\"text\":\"second\"}}";

    EXPECT_EQ(call("PUT", "/api/v1/chats/" + id, body).status, 409) << "a reply is running";
    ASSERT_TRUE(wait_reply(id));

    std::string other = "{\"id\":\"0190a6f4-3b2c-7d1e-8f00-0123456789ab\","
                        "\"prompt\":{\"text\":\"x\"}}";
    EXPECT_EQ(call("PUT", "/api/v1/chats/" + id, other).status, 400) << "id mismatch";

    HttpResponse res = call("PUT", "/api/v1/chats/" + id, body);
    EXPECT_EQ(res.status, 202) << res.body;
    ASSERT_TRUE(wait_reply(id));
    Json c = body_of(call("GET", "/api/v1/chats/" + id));
    EXPECT_EQ(json_array_size(json_object_get(c.get(), "messages")), 4u);
}

TEST_F(ChatApiTest, TheNextTurnIsTakenAsSoonAsTheFinalFragmentIsShown)
{
    std::string id = post_chat("first");
    std::string body = "{\"id\":\"" + id + "\",\"prompt\":{\"text\":\"second\"}}";
    std::optional<HttpResponse> put;

    // a client posts its next turn in the loop turn after it saw the final
    uint64_t handle = bus_.subscribe(id, [&](const ConversationEvent &e) {
        if (e.fragment.is_final && e.fragment.sender == sender_assistant && !put) {
            put = HttpResponse::empty(0);
            asio::post(io_, [&] {
                HttpRequest r;
                r.method = "PUT";
                r.target = r.path = "/api/v1/chats/" + id;
                r.headers.emplace_back("x-signalr-user", "alice");
                r.body = body;
                asio::co_spawn(io_, [&, r]() -> asio::awaitable<void> {
                    put = co_await api_->handle(r);
                }, asio::detached);
            });
        }
    });
    ASSERT_TRUE(testing::run_until(io_, [&] { return put && put->status != 0; }));
    bus_.unsubscribe(id, handle);

    EXPECT_EQ(put->status, 202) << put->body;
    ASSERT_TRUE(testing::run_until(io_, [&] {
        Json c = body_of(call("GET", "/api/v1/chats/" + id));
        return json_array_size(json_object_get(c.get(), "messages")) == 4u;
    })) << "both replies stored, in order";
}

TEST_F(ChatApiTest, AnotherUsersConversationIs404Everywhere)
{
    std::string id = post_chat("secret");
    ASSERT_TRUE(wait_reply(id));
    std::string put = "{\"id\":\"" + id + "\",\"prompt\":{\"text\":\"mine\"}}";

    EXPECT_EQ(call("GET", "/api/v1/chats/" + id, "", "bob").status, 404);
    EXPECT_EQ(call("PUT", "/api/v1/chats/" + id, put, "bob").status, 404);
    EXPECT_EQ(call("DELETE", "/api/v1/chats/" + id + "/cancel", "", "bob").status, 404);
    EXPECT_EQ(call("DELETE", "/api/v1/chats/" + id, "", "bob").status, 404);
    EXPECT_EQ(call("GET", "/api/v1/chats/" + id).status, 200) << "still there for alice";
    EXPECT_EQ(call("GET", "/api/v1/chats/not-a-uuid").status, 404);
}

TEST_F(ChatApiTest, ListFiltersByNameAndIncludesMessagesOnRequest)
{
    std::string a = post_chat("Apples and pears");
    std::string b = post_chat("Bananas");
    ASSERT_TRUE(wait_reply(a) && wait_reply(b));

    Json all = body_of(call("GET", "/api/v1/chats"));
    ASSERT_EQ(json_array_size(all.get()), 2u);
    EXPECT_EQ(json_object_get(json_array_get(all.get(), 0), "messages"), nullptr);

    Json some = body_of(call("GET", "/api/v1/chats?name=apple&includeMessages=true"));
    ASSERT_EQ(json_array_size(some.get()), 1u);
    EXPECT_STREQ(json_get_string(json_array_get(some.get(), 0), "id"), a.c_str());
    EXPECT_EQ(json_array_size(json_object_get(json_array_get(some.get(), 0), "messages")), 2u);

    EXPECT_EQ(json_array_size(body_of(call("GET", "/api/v1/chats", "", "bob")).get()), 0u);
    EXPECT_EQ(call("GET", "/api/v1/chats?includeMessages=maybe").status, 400);
}

TEST_F(ChatApiTest, DeleteRemovesAndCancelStopsTheReply)
{
    std::string id = post_chat("cancel me");
    EXPECT_EQ(call("DELETE", "/api/v1/chats/" + id + "/cancel").status, 204);
    ASSERT_TRUE(wait_reply(id));
    Json c = body_of(call("GET", "/api/v1/chats/" + id));
    json_t *reply = json_array_get(json_object_get(c.get(), "messages"), 1);
    std::string text = json_get_string(reply, "text");
    EXPECT_NE(text.find(cancelled_text), std::string::npos) << text;

    EXPECT_EQ(call("DELETE", "/api/v1/chats/" + id).status, 204);
    EXPECT_EQ(call("GET", "/api/v1/chats/" + id).status, 404);
    EXPECT_EQ(call("DELETE", "/api/v1/chats/" + id).status, 404);
}

TEST_F(ChatApiTest, WrongMethodsAre405AndUnknownPaths404)
{
    HttpResponse res = call("PATCH", "/api/v1/chats");
    EXPECT_EQ(res.status, 405);
    EXPECT_EQ(header(res, "Allow"), "GET, POST");
    EXPECT_EQ(call("POST", "/api/v1/chats/0190a6f4-3b2c-7d1e-8f00-0123456789ab").status, 405);
    EXPECT_EQ(call("GET", "/api/v1/chats/0190a6f4-3b2c-7d1e-8f00-0123456789ab/cancel").status,
              405);
    EXPECT_EQ(call("GET", "/api/v1/chatsx").status, 404);
    EXPECT_EQ(call("GET", "/elsewhere").status, 404);
    EXPECT_EQ(call("GET", "/dev/token?sub=a").status, 404) << "no dev key configured";
}

TEST_F(ChatApiTest, HealthReportsRedisAndDevTokensWorkWhenEnabled)
{
    HttpResponse up = call("GET", "/healthz", "", "");
    EXPECT_EQ(up.status, 200);
    Json h = body_of(up);
    EXPECT_STREQ(json_get_string(h.get(), "status"), "ok");
    EXPECT_STREQ(json_get_string(h.get(), "redis"), "up");

    api_->enable_dev_tokens("secret");
    HttpResponse token = call("GET", "/dev/token?sub=carol&role=admin", "", "");
    EXPECT_EQ(token.status, 200);
    EXPECT_EQ(token.content_type, "text/plain; charset=utf-8");
    EXPECT_EQ(std::count(token.body.begin(), token.body.end(), '.'), 2) << token.body;
    EXPECT_EQ(call("GET", "/dev/token", "", "").status, 400) << "sub is required";

    redis_server_.stop();
    ASSERT_TRUE(testing::run_until(io_, [this] { return !redis_->connected(); }));
    HttpResponse down = call("GET", "/healthz", "", "");
    EXPECT_EQ(down.status, 503);
    EXPECT_STREQ(json_get_string(body_of(down).get(), "redis"), "down");
    EXPECT_EQ(call("POST", "/api/v1/chats", R"({"prompt":{"text":"x"}})").status, 503);
}

}  // namespace
}  // namespace signalrd
