#include <gtest/gtest.h>

#include <cstring>

#include "chat_fixture.h"
#include "config.h"
#include "push_config.h"
#include "push_hub.h"

namespace signalrd {
namespace {

ConnectionInfo connection_with(const std::string &hub, const char *claims_json)
{
    ConnectionInfo c;
    c.id = "c1";
    c.hub = hub;
    c.claims = std::move(*parse_json(claims_json));
    return c;
}

TEST(PushConfig, ParsesHubsRulesAndEventsGroup)
{
    Result<PushSettings> s = parse_push_settings(
        " NotificationHub  OrderHub ",
        "NotificationHub role=admin administrators, * dept=ops operators,", "administrators");

    ASSERT_TRUE(s.is_ok()) << s.status().message();
    EXPECT_EQ(s->hubs, (std::vector<std::string>{"NotificationHub", "OrderHub"}));
    ASSERT_EQ(s->rules.size(), 2u) << "the trailing comma adds no rule";
    EXPECT_EQ(s->rules[0].hub, "NotificationHub");
    EXPECT_EQ(s->rules[0].claim, "role");
    EXPECT_EQ(s->rules[0].value, "admin");
    EXPECT_EQ(s->rules[0].group, "administrators");
    EXPECT_EQ(s->rules[1].hub, "*");
    EXPECT_EQ(s->events_group, "administrators");
}

TEST(PushConfig, RejectsBadHubNamesAndRulesNamingTheProblem)
{
    Result<PushSettings> hub = parse_push_settings("9lives", "", "");
    ASSERT_FALSE(hub.is_ok());
    EXPECT_NE(hub.status().message().find("9lives"), std::string::npos);

    for (const char *rule : {"NotificationHub role=admin", "NotificationHub roleadmin g",
                             "NotificationHub =admin g", "NotificationHub role= g",
                             "bad-hub role=admin g", "NotificationHub role=admin a b"}) {
        Result<PushSettings> s = parse_push_settings("NotificationHub", rule, "");
        ASSERT_FALSE(s.is_ok()) << rule;
        EXPECT_NE(s.status().message().find("push_group_rules"), std::string::npos) << rule;
    }
    EXPECT_FALSE(parse_push_settings("", "", std::string("bad\x01group")).is_ok());
}

TEST(PushConfig, NamesFollowAzureRules)
{
    EXPECT_TRUE(valid_hub_name("Hub_1"));
    EXPECT_FALSE(valid_hub_name("_hub"));
    EXPECT_FALSE(valid_hub_name("hub-1"));
    EXPECT_FALSE(valid_hub_name(""));
    EXPECT_FALSE(valid_hub_name(std::string(129, 'a')));
    EXPECT_TRUE(valid_group_name("group with spaces/and:punctuation"));
    EXPECT_FALSE(valid_group_name(std::string(1025, 'g')));
    EXPECT_FALSE(valid_group_name("tab\there"));
}

TEST(PushConfig, ClaimRulesMatchStringsAndArraysOfTheirHub)
{
    Result<PushSettings> s = parse_push_settings(
        "NotificationHub OrderHub",
        "NotificationHub role=admin administrators, * roles=admin administrators, "
        "OrderHub role=admin order-admins",
        "");
    ASSERT_TRUE(s.is_ok());

    auto admin = connection_with("NotificationHub", R"({"role":"admin","roles":["user","admin"]})");
    EXPECT_EQ(groups_from_claims(s->rules, admin), std::vector<std::string>{"administrators"})
        << "two rules giving the same group give it once";
    auto array_only = connection_with("OrderHub", R"({"roles":["admin"]})");
    EXPECT_EQ(groups_from_claims(s->rules, array_only),
              std::vector<std::string>{"administrators"});
    auto user = connection_with("NotificationHub", R"({"role":"user","roles":["user"]})");
    EXPECT_TRUE(groups_from_claims(s->rules, user).empty());
    auto numeric = connection_with("NotificationHub", R"({"role":1})");
    EXPECT_TRUE(groups_from_claims(s->rules, numeric).empty());
}

TEST(PushConfig, KeysAreReadFromTheFileAndTheEnvironment)
{
    Config c;
    Status s = parse_config_text("push_hubs = A B\npush_group_rules = A role=x g\n"
                                 "push_access_key_file = /k\npresence_ttl = 9\n"
                                 "presence_events_group = admins\n",
                                 "test.conf", c);
    ASSERT_TRUE(s.is_ok()) << s.message();
    EXPECT_EQ(c.push_hubs, "A B");
    EXPECT_EQ(c.push_group_rules, "A role=x g");
    EXPECT_EQ(c.push_access_key_file, "/k");
    EXPECT_EQ(c.presence_ttl, 9u);
    EXPECT_EQ(c.presence_events_group, "admins");
    EXPECT_FALSE(parse_config_text("presence_ttl = 1\n", "test.conf", c).is_ok())
        << "a ttl under 3 s would expire live instances between heartbeats";

    auto env = [](const char *name) -> const char * {
        return std::strcmp(name, "SIGNALRD_PUSH_HUBS") == 0 ? "OrderHub" : nullptr;
    };
    ASSERT_TRUE(apply_environment(env, c).is_ok());
    EXPECT_EQ(c.push_hubs, "OrderHub");
}

TEST(PushConfig, LoadingReadsTheKeyAndRefusesTakenHubNames)
{
    Config c;
    c.push_hubs = "NotificationHub";
    c.push_access_key_file = SIGNALR_DEV_KEY_FILE;
    Result<PushSettings> s = load_push_settings(c, {"ChatStreamHub"});
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    EXPECT_FALSE(s->access_key.empty());
    EXPECT_NE(s->access_key.back(), '\n') << "the trailing newline is not part of the key";

    c.push_access_key_file = "/nonexistent/access.key";
    Result<PushSettings> missing = load_push_settings(c, {});
    ASSERT_FALSE(missing.is_ok());
    EXPECT_EQ(missing.status().message().rfind("push_access_key_file: ", 0), 0u);

    c.push_access_key_file.clear();
    c.push_hubs = "ChatStreamHub";
    EXPECT_FALSE(load_push_settings(c, {"ChatStreamHub"}).is_ok());
}

TEST(PushHub, AnswersEveryClientInvocationWithAnErrorCompletion)
{
    testing::RecordingSink sink;
    PushHub hub(sink);
    ConnectionInfo c;
    c.id = "c1";
    c.hub = "NotificationHub";
    sr_message_t msg;

    for (sr_message_type_t type : {SR_MSG_INVOCATION, SR_MSG_STREAM_INVOCATION}) {
        sr_message_init(&msg, type);
        msg.invocation_id = strdup(type == SR_MSG_INVOCATION ? "1" : "2");
        msg.target = strdup("ReceiveNotification");
        hub.on_message(c, msg);
        sr_message_clear(&msg);
    }
    sr_message_init(&msg, SR_MSG_INVOCATION);
    msg.target = strdup("Fire");
    hub.on_message(c, msg);   // no invocation id: nobody waits
    sr_message_clear(&msg);

    ASSERT_EQ(sink.sent.size(), 2u);
    for (const char *id : {"1", "2"}) {
        std::optional<std::string> error = sink.completion("c1", id);
        ASSERT_TRUE(error.has_value()) << id;
        EXPECT_NE(error->find("Unknown method 'ReceiveNotification'"), std::string::npos);
        EXPECT_NE(error->find("NotificationHub"), std::string::npos);
    }
}

}  // namespace
}  // namespace signalrd
