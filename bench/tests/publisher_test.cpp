#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstdlib>
#include <ctime>
#include <string>

#include <jansson.h>

#include <signalr/jwt.h>

#include "payload.h"
#include "publisher.h"

namespace bench {
namespace {

TEST(Endpoint, TcpWithPathAndQuery)
{
    Endpoint  e;

    ASSERT_TRUE(parse_endpoint("http://127.0.0.1:8080/api/hubs/h/groups/g"
                               "/:send?api-version=2022-06-01", &e).ok());
    EXPECT_TRUE(e.unix_path.empty());
    EXPECT_EQ(e.host, "127.0.0.1:8080");
    EXPECT_EQ(e.target, "/api/hubs/h/groups/g/:send?api-version=2022-06-01");
    EXPECT_EQ(ntohs(e.addr.sin_port), 8080);
}


TEST(Endpoint, UnixSocket)
{
    Endpoint  e;

    ASSERT_TRUE(parse_endpoint("unix:/run/x/api.sock:/admin/v1/hubs/H", &e)
                .ok());
    EXPECT_EQ(e.unix_path, "/run/x/api.sock");
    EXPECT_EQ(e.target, "/admin/v1/hubs/H");
}


TEST(Endpoint, RefusesWhatItCannotReach)
{
    Endpoint  e;

    for (const char *url : {"https://127.0.0.1:1/x", "http://localhost:80/x",
                            "http://127.0.0.1:0/x", "http://127.0.0.1:70000/",
                            "unix:/a.sock", "unix::/x", "unix:/a.sock:x",
                            "ftp://x"})
    {
        EXPECT_FALSE(parse_endpoint(url, &e).ok()) << url;
    }
}


TEST(PublishRequest, SignalRBodyCarriesThePayloadAsTheOnlyArgument)
{
    PublishTarget  t;
    std::string    payload = make_payload(7, 99, 100);

    ASSERT_TRUE(parse_endpoint("http://127.0.0.1:9/pub", &t.endpoint).ok());
    t.authorization = "Bearer abc";

    std::string  req = publish_request(t, payload);
    std::string  body = req.substr(req.find("\r\n\r\n") + 4);
    json_t      *doc = json_loads(body.c_str(), 0, nullptr);

    EXPECT_EQ(req.rfind("POST /pub HTTP/1.1\r\n", 0), 0u);
    EXPECT_NE(req.find("\r\nAuthorization: Bearer abc\r\n"), std::string::npos);
    ASSERT_NE(doc, nullptr) << body;
    EXPECT_STREQ(json_string_value(json_object_get(doc, "target")),
                 "broadcast");
    EXPECT_EQ(json_array_size(json_object_get(doc, "arguments")), 1u);
    EXPECT_EQ(json_string_value(json_array_get(json_object_get(doc,
                                                               "arguments"),
                                               0)),
              payload);
    json_decref(doc);
}


TEST(PublishRequest, RawBodyIsThePayload)
{
    PublishTarget  t;
    std::string    payload = make_payload(7, 99, 100);

    ASSERT_TRUE(parse_endpoint("http://127.0.0.1:9/pub?id=c", &t.endpoint)
                .ok());
    t.signalr_body = false;

    std::string  req = publish_request(t, payload);

    EXPECT_EQ(req.rfind("POST /pub?id=c HTTP/1.1\r\n", 0), 0u);
    EXPECT_EQ(req.substr(req.find("\r\n\r\n") + 4), payload);
    EXPECT_EQ(req.find("Authorization"), std::string::npos);
}


// The token must pass the verifier the edge itself uses, for that
// audience only.
TEST(AccessToken, VerifiesWithTheKeyForItsAudience)
{
    const std::string   key = "an access key of the service";
    const std::string   aud = "http://127.0.0.1:8080/api/hubs/h/groups/g/:send";
    time_t              now = time(nullptr);
    std::string         token = sign_access_token(key, aud, now);
    sr_jwt_keys_t      *keys = sr_jwt_keys_new();
    sr_jwt_identity_t   id {};
    sr_error_t          err;
    const char         *good[] = {aud.c_str()};
    const char         *other[] = {"http://127.0.0.1:8080/elsewhere"};
    sr_jwt_policy_t     policy {};

    ASSERT_FALSE(token.empty());
    ASSERT_EQ(sr_jwt_keys_add_secret(keys, nullptr,
                  reinterpret_cast<const unsigned char *>(key.data()),
                  key.size(), &err), SR_OK);

    policy.audiences = good;
    policy.audiences_n = 1;
    policy.user_claim = "aud";
    ASSERT_EQ(sr_jwt_verify(keys, &policy, token.data(), token.size(), now,
                            &id, &err), SR_OK) << err.str;
    sr_jwt_identity_clear(&id);

    policy.audiences = other;
    EXPECT_NE(sr_jwt_verify(keys, &policy, token.data(), token.size(), now,
                            &id, &err), SR_OK);

    policy.audiences = good;
    EXPECT_NE(sr_jwt_verify(keys, &policy, token.data(), token.size(),
                            now + 7200, &id, &err), SR_OK);

    sr_jwt_keys_free(keys);
}

}  // namespace
}  // namespace bench
