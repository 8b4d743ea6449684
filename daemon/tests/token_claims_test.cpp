#include <cstdio>
#include <ctime>

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <signalr/jwt.h>

#include "token_claims.h"

namespace signalrd {
namespace {

// Verifies token as the nginx module would: the repository's dev key loaded by the
// shared library, the dev issuer and audience.
Json verify(const std::string &token, time_t now)
{
    sr_error_t err;
    sr_jwt_keys_t *keys = sr_jwt_keys_new();
    const char *audiences[] = {dev_token_audience};
    sr_jwt_policy_t policy{dev_token_issuer, audiences, 1, 0, nullptr};
    sr_jwt_identity_t identity{};

    EXPECT_EQ(sr_jwt_keys_load_file(keys, SIGNALR_DEV_KEY_FILE, &err), SR_OK) << err.str;
    int rc = sr_jwt_verify(keys, &policy, token.data(), token.size(), now, &identity, &err);
    sr_jwt_keys_free(keys);
    EXPECT_EQ(rc, SR_OK) << err.str;
    if (rc != SR_OK) {
        return Json();
    }
    Json claims = Json::borrow(identity.claims);
    EXPECT_EQ(std::string(identity.user), json_string_value(json_object_get(claims.get(), "sub")));
    sr_jwt_identity_clear(&identity);
    return claims;
}

TEST(DevTokens, ClaimsCarryUserRoleScopeIssuerAudienceAndLifetime)
{
    auto claims = dev_token_claims({"alice", "", 3600, 1000});

    ASSERT_TRUE(claims.is_ok());
    EXPECT_EQ(json_text(claims->get()),
              "{\"sub\":\"alice\",\"role\":\"user\",\"roles\":[\"user\"],"
              "\"scope\":\"chatting_read chatting_write\",\"iss\":\"nginx-signalr-dev\","
              "\"aud\":\"nginx-signalr\",\"iat\":1000,\"exp\":4600}");
}

TEST(DevTokens, AGivenRoleIsAddedToUser)
{
    auto claims = dev_token_claims({"root", "admin", 60, 0});

    ASSERT_TRUE(claims.is_ok());
    EXPECT_STREQ(json_string_value(json_object_get(claims->get(), "role")), "admin");
    EXPECT_EQ(json_text(json_object_get(claims->get(), "roles")), "[\"user\",\"admin\"]");
}

TEST(DevTokens, BadSubjectRoleOrLifetimeIsRefused)
{
    EXPECT_FALSE(dev_token_claims({"", "", 60, 0}).is_ok());
    EXPECT_FALSE(dev_token_claims({"a b", "", 60, 0}).is_ok());
    EXPECT_FALSE(dev_token_claims({std::string(129, 'a'), "", 60, 0}).is_ok());
    EXPECT_FALSE(dev_token_claims({"a", "ad\"min", 60, 0}).is_ok());
    EXPECT_FALSE(dev_token_claims({"a", "", 0, 0}).is_ok());
}

TEST(DevTokens, SignedTokenVerifiesWithTheRepositoryDevKey)
{
    auto secret = read_secret_file(SIGNALR_DEV_KEY_FILE);
    ASSERT_TRUE(secret.is_ok()) << secret.status().message();
    EXPECT_NE(secret->back(), '\n') << "the trailing newline is not part of the secret";

    time_t now = std::time(nullptr);
    auto token = sign_dev_token({"alice", "admin", 600, static_cast<int64_t>(now)}, *secret);
    ASSERT_TRUE(token.is_ok()) << token.status().message();

    Json claims = verify(*token, now);
    ASSERT_TRUE(claims);
    EXPECT_STREQ(json_string_value(json_object_get(claims.get(), "role")), "admin");
}

struct CommandRun {
    int status;
    std::string out;
};

CommandRun signalrctl(const std::string &args)
{
    std::string cmd = std::string(SIGNALRCTL_PATH) + " " + args + " 2>&1";
    FILE *p = ::popen(cmd.c_str(), "r");
    CommandRun r{-1, ""};
    char buf[512];
    size_t n;

    while (p && (n = std::fread(buf, 1, sizeof(buf), p)) > 0) {
        r.out.append(buf, n);
    }
    int status = p ? ::pclose(p) : -1;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

TEST(Signalrctl, TokenPrintsAVerifiableToken)
{
    CommandRun r =
        signalrctl(std::string("token --sub bob --ttl 120 --key ") + SIGNALR_DEV_KEY_FILE);

    ASSERT_EQ(r.status, 0) << r.out;
    ASSERT_FALSE(r.out.empty());
    EXPECT_EQ(r.out.back(), '\n');
    r.out.pop_back();
    Json claims = verify(r.out, std::time(nullptr));
    ASSERT_TRUE(claims);
    EXPECT_STREQ(json_string_value(json_object_get(claims.get(), "sub")), "bob");
    json_int_t iat = json_integer_value(json_object_get(claims.get(), "iat"));
    EXPECT_EQ(json_integer_value(json_object_get(claims.get(), "exp")), iat + 120);
}

TEST(Signalrctl, ErrorsAreOneLineAndExitTwo)
{
    CommandRun no_sub = signalrctl(std::string("token --key ") + SIGNALR_DEV_KEY_FILE);
    CommandRun no_key = signalrctl("token --sub a --key /nonexistent/key");
    CommandRun bad_opt = signalrctl("token --sub a --colour red");
    CommandRun bad_cmd = signalrctl("frobnicate");

    for (const CommandRun &r : {no_sub, no_key, bad_opt, bad_cmd}) {
        EXPECT_EQ(r.status, 2) << r.out;
        EXPECT_EQ(r.out.rfind("signalrctl: ", 0), 0u) << r.out;
        EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
    }
}

}  // namespace
}  // namespace signalrd
