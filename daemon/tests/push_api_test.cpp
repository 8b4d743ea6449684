#include <gtest/gtest.h>

#include <ctime>

#include "push_api.h"
#include "push_client.h"
#include "test_util.h"

namespace signalrd {
namespace {

using Kind = HubAudience::Kind;
const std::string key = "signalr-dev-access-key-0123456789abcdef";

PushRoute route_of(const std::string &method, const std::string &path)
{
    Result<PushRouteMatch> m = parse_push_route(method, path);
    EXPECT_TRUE(m.is_ok()) << method << " " << path;
    EXPECT_TRUE(m.is_ok() && m->route) << method << " " << path;
    return m.is_ok() && m->route ? *m->route : PushRoute{};
}

TEST(PushRoutes, SendsOfVersion20220601AndV1)
{
    PushRoute all = route_of("POST", "/api/hubs/Chat/:send");
    EXPECT_EQ(all.action, PushAction::send);
    EXPECT_EQ(all.scope, Kind::all);
    EXPECT_EQ(all.hub, "Chat");
    EXPECT_FALSE(all.v1);

    PushRoute user = route_of("POST", "/api/hubs/Chat/users/ali%20ce/:send");
    EXPECT_EQ(user.scope, Kind::user);
    EXPECT_EQ(user.name, "ali ce") << "segments are percent-decoded";
    EXPECT_EQ(route_of("POST", "/api/hubs/Chat/groups/g/:send").scope, Kind::group);
    EXPECT_EQ(route_of("POST", "/api/hubs/Chat/connections/c/:send").name, "c");

    PushRoute v1 = route_of("POST", "/api/v1/hubs/Chat");
    EXPECT_EQ(v1.action, PushAction::send);
    EXPECT_TRUE(v1.v1);
    EXPECT_EQ(route_of("POST", "/api/v1/hubs/Chat/users/u").scope, Kind::user);
    EXPECT_EQ(route_of("POST", "/api/v1/hubs/Chat/groups/g").name, "g");
}

TEST(PushRoutes, GroupsExistenceCloseAndPresence)
{
    PushRoute join = route_of("PUT", "/api/hubs/H/groups/g1/connections/c1");
    EXPECT_EQ(join.action, PushAction::join_group);
    EXPECT_EQ(join.scope, Kind::connection);
    EXPECT_EQ(join.name, "c1");
    EXPECT_EQ(join.group, "g1");

    PushRoute user_join = route_of("PUT", "/api/hubs/H/users/u1/groups/g1");
    EXPECT_EQ(user_join.scope, Kind::user);
    EXPECT_EQ(user_join.name, "u1");
    EXPECT_EQ(user_join.group, "g1");
    PushRoute v1_user_join = route_of("PUT", "/api/v1/hubs/H/groups/g1/users/u1");
    EXPECT_EQ(v1_user_join.name, "u1");
    EXPECT_EQ(v1_user_join.group, "g1");

    EXPECT_EQ(route_of("DELETE", "/api/hubs/H/users/u/groups/g").action, PushAction::leave_group);
    EXPECT_EQ(route_of("HEAD", "/api/hubs/H/users/u/groups/g").action,
              PushAction::user_in_group);
    EXPECT_EQ(route_of("DELETE", "/api/hubs/H/users/u/groups").action,
              PushAction::leave_all_groups);
    EXPECT_EQ(route_of("DELETE", "/api/hubs/H/connections/c/groups").scope, Kind::connection);
    EXPECT_EQ(route_of("HEAD", "/api/hubs/H/groups/g").action, PushAction::exists);
    EXPECT_EQ(route_of("GET", "/api/v1/hubs/H/users/u").action, PushAction::exists);
    EXPECT_EQ(route_of("DELETE", "/api/hubs/H/connections/c").action, PushAction::close);
    EXPECT_EQ(route_of("POST", "/api/hubs/H/groups/g/:closeConnections").scope, Kind::group);
    EXPECT_EQ(route_of("GET", "/api/hubs/H/presence").action, PushAction::presence);
    EXPECT_EQ(route_of("GET", "/api/hubs/H/users/u/presence").scope, Kind::user);
    EXPECT_TRUE(route_of("HEAD", "/api/health").hub.empty());
    EXPECT_TRUE(route_of("GET", "/api/v1/health").v1);
}

TEST(PushRoutes, WrongMethodsUnknownPathsAndBadSegments)
{
    Result<PushRouteMatch> m = parse_push_route("GET", "/api/hubs/H/groups/g/connections/c");
    ASSERT_TRUE(m.is_ok());
    EXPECT_FALSE(m->route);
    EXPECT_EQ(m->allow, "PUT, DELETE");

    m = parse_push_route("GET", "/api/hubs/H/nothing");
    ASSERT_TRUE(m.is_ok());
    EXPECT_FALSE(m->route);
    EXPECT_TRUE(m->allow.empty()) << "an unknown path allows nothing: 404";
    EXPECT_FALSE(parse_push_route("GET", "/api/other")->route);

    for (const char *bad : {"/api/hubs/H/users/%zz/:send", "/api/hubs/H/users/%4/:send",
                            "/api/hubs/H/users/%00/:send", "/api/hubs/H//:send",
                            "/api/hubs/1H/:send", "/api/hubs/H/users/a%0Ab/:send"}) {
        EXPECT_FALSE(parse_push_route("POST", bad).is_ok()) << bad;
    }
}

TEST(PushRoutes, QueryValuesKeepEveryRepeat)
{
    EXPECT_EQ(query_values("excluded=a&api-version=1&excluded=b%20c&excluded=d+e", "excluded"),
              (std::vector<std::string>{"a", "b c", "d e"}));
    EXPECT_EQ(query_values("ttl", "ttl"), std::vector<std::string>{""});
    EXPECT_TRUE(query_values("", "ttl").empty());
    EXPECT_TRUE(query_values("ttl=%zz", "ttl").empty()) << "a bad escape is no value";
}

TEST(PushAuth, AudienceIsThePublicUrlWithoutTheQuery)
{
    HttpRequest r;
    r.path = "/api/hubs/H/:send";
    r.query = "api-version=2022-06-01";
    r.headers = {{"host", "daemon"}};
    EXPECT_EQ(expected_audience(r), "http://daemon/api/hubs/H/:send");
    r.headers.emplace_back("x-forwarded-host", "edge.example:8443");
    r.headers.emplace_back("x-forwarded-proto", "https");
    EXPECT_EQ(expected_audience(r), "https://edge.example:8443/api/hubs/H/:send");
}

class PushApiTest : public ::testing::Test {
protected:
    PushApiTest()
        : endpoint(RedisEndpoint{"127.0.0.1", 1, "", "", 0}),
          redis(io.get_executor(), endpoint),
          store(redis, "t", "test-instance", 25, 300),
          backplane(io.get_executor(), endpoint, redis, store, bus, registry),
          groups(redis, "t"),
          presence(io.get_executor(), redis, "t", "test-instance", std::chrono::seconds(15),
                   {"NotificationHub"}),
          api(io.get_executor(), PushSettings{{"NotificationHub"}, {}, "", key},
              {"NotificationHub"}, backplane, groups, presence, redis)
    {
    }

    HttpRequest request(const std::string &method, const std::string &path,
                        const std::string &token_key)
    {
        HttpRequest r;
        r.method = method;
        r.path = path;
        r.target = path;
        r.headers = {{"host", "127.0.0.1:8080"}};
        if (!token_key.empty()) {
            auto token = sign_push_token("http://127.0.0.1:8080" + path, token_key,
                                         static_cast<int64_t>(std::time(nullptr)));
            r.headers.emplace_back("authorization", "Bearer " + *token);
        }
        r.body = R"({"target":"ReceiveNotification","arguments":[1]})";
        return r;
    }

    HttpResponse handle(const HttpRequest &r)
    {
        std::optional<HttpResponse> res = testing::run_coro(io, api.handle(r));
        return res.value_or(HttpResponse::empty(0));
    }

    asio::io_context io;
    // keeps io from stopping between requests, each run by run_coro
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    RedisEndpoint endpoint;
    RedisClient redis;   // never started: Redis is "down"
    ConversationStore store;
    FragmentBus bus;
    HubRegistry registry;
    Backplane backplane;
    GroupStore groups;
    Presence presence;
    PushApi api;
};

TEST_F(PushApiTest, TokensSignedWithTheKeyForThisUrlPass)
{
    EXPECT_TRUE(api.authenticate(request("POST", "/api/hubs/NotificationHub/:send", key)).is_ok());

    HttpRequest other_key = request("POST", "/api/hubs/NotificationHub/:send", "other-key");
    EXPECT_FALSE(api.authenticate(other_key).is_ok());
    HttpRequest other_url = request("POST", "/api/hubs/NotificationHub/:send", key);
    other_url.path = "/api/hubs/OrderHub/:send";
    Status s = api.authenticate(other_url);
    EXPECT_EQ(s.message(), "wrong audience");
    HttpRequest none = request("POST", "/api/hubs/NotificationHub/:send", "");
    EXPECT_FALSE(api.authenticate(none).is_ok());
    none.headers.emplace_back("authorization", "Basic dXNlcjpwYXNz");
    EXPECT_FALSE(api.authenticate(none).is_ok());

    auto expired = sign_push_token("http://127.0.0.1:8080/api/hubs/NotificationHub/:send", key,
                                   1000, 60);
    HttpRequest stale = request("POST", "/api/hubs/NotificationHub/:send", "");
    stale.headers.emplace_back("authorization", "Bearer " + *expired);
    EXPECT_EQ(api.authenticate(stale).message(), "token expired");
}

// A token that verified is remembered, for its own audience and its exact text only.
TEST_F(PushApiTest, AVerifiedTokenIsRememberedForItsAudienceOnly)
{
    HttpRequest good = request("POST", "/api/hubs/NotificationHub/:send", key);
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(api.authenticate(good).is_ok());
    }
    HttpRequest elsewhere = good;
    elsewhere.path = "/api/hubs/OrderHub/:send";
    EXPECT_EQ(api.authenticate(elsewhere).message(), "wrong audience");

    HttpRequest tampered = good;
    for (auto &[name, value] : tampered.headers) {
        if (name == "authorization") {
            value.back() = value.back() == 'A' ? 'B' : 'A';
        }
    }
    EXPECT_FALSE(api.authenticate(tampered).is_ok()) << "another text is verified anew";
    EXPECT_TRUE(api.authenticate(good).is_ok());
}

TEST_F(PushApiTest, AnswersInOrderBadPathThenAuthThenHub)
{
    EXPECT_EQ(handle(request("POST", "/api/hubs/NotificationHub/nothing", "")).status, 404);
    HttpResponse unauthorized = handle(request("POST", "/api/hubs/NoSuchHub/:send", ""));
    EXPECT_EQ(unauthorized.status, 401) << "strangers are not told which hubs exist";
    ASSERT_FALSE(unauthorized.headers.empty());
    EXPECT_EQ(unauthorized.headers[0].first, "WWW-Authenticate");
    EXPECT_EQ(handle(request("POST", "/api/hubs/NoSuchHub/:send", key)).status, 404);

    HttpResponse method = handle(request("GET", "/api/hubs/NotificationHub/:send", key));
    EXPECT_EQ(method.status, 405);
    HttpRequest bad_body = request("POST", "/api/hubs/NotificationHub/:send", key);
    bad_body.body = R"({"arguments":[]})";
    EXPECT_EQ(handle(bad_body).status, 400);
    HttpResponse hidden = handle(request("HEAD", "/api/hubs/NotificationHub/users/u", ""));
    EXPECT_EQ(hidden.status, 401);
    EXPECT_TRUE(hidden.body.empty()) << "HEAD answers carry no body";
}

TEST_F(PushApiTest, RedisDownIs503AndUnhealthy)
{
    EXPECT_EQ(handle(request("HEAD", "/api/health", "")).status, 503);
    EXPECT_EQ(handle(request("POST", "/api/hubs/notificationhub/:send", key)).status, 503)
        << "a hub name in another case is the same hub; the send fails on Redis";
    EXPECT_EQ(handle(request("HEAD", "/api/hubs/NotificationHub/users/u", key)).status, 503);
}

TEST(PushApiOff, WithoutAnAccessKeyEveryRouteIs404)
{
    asio::io_context io;
    RedisEndpoint endpoint{"127.0.0.1", 1, "", "", 0};
    RedisClient redis(io.get_executor(), endpoint);
    ConversationStore store(redis, "t", "i", 25, 300);
    FragmentBus bus;
    HubRegistry registry;
    Backplane backplane(io.get_executor(), endpoint, redis, store, bus, registry);
    GroupStore groups(redis, "t");
    Presence presence(io.get_executor(), redis, "t", "i", std::chrono::seconds(15), {});
    PushApi api(io.get_executor(), PushSettings{}, {"H"}, backplane, groups, presence, redis);
    HttpRequest r;
    r.method = "POST";
    r.path = "/api/hubs/H/:send";

    std::optional<HttpResponse> res = testing::run_coro(io, api.handle(r));
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->status, 404);
}

TEST(PushClient, EncodesComponentsAndSignsTheAudience)
{
    EXPECT_EQ(encode_component("a b/c:d~e"), "a%20b%2Fc%3Ad~e");
    auto token = sign_push_token("http://h/api/hubs/H/:send", key, 1700000000, 60);
    ASSERT_TRUE(token.is_ok());
    EXPECT_EQ(std::count(token->begin(), token->end(), '.'), 2);
}

}  // namespace
}  // namespace signalrd
