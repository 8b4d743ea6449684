#include <cstdlib>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "config.h"
#include "test_util.h"

namespace signalrd {
namespace {

EnvLookup env_of(const std::map<std::string, std::string> &vars)
{
    return [vars](const char *name) -> const char * {
        auto it = vars.find(name);
        return it == vars.end() ? nullptr : it->second.c_str();
    };
}

class ConfigFile : public ::testing::Test {
protected:
    void SetUp() override { dir_ = testing::make_temp_dir(); }
    void TearDown() override { testing::remove_tree(dir_); }

    std::string write(const std::string &text)
    {
        std::string path = dir_ + "/signalrd.conf";
        std::ofstream(path) << text;
        return path;
    }

    std::string dir_;
};

TEST_F(ConfigFile, MissingDefaultFileGivesDefaults)
{
    auto c = load_config(dir_ + "/absent.conf", false, env_of({}));

    ASSERT_TRUE(c.is_ok()) << c.status().message();
    EXPECT_EQ(c->worker_socket, "/run/signalrd/signalrd.sock");
    EXPECT_EQ(c->http_socket, "/run/signalrd/api.sock");
    EXPECT_EQ(c->redis_url, "redis://127.0.0.1:6379");
    EXPECT_EQ(c->key_prefix, "signalr");
    EXPECT_EQ(c->demo_token_rate, 20u);
    EXPECT_EQ(c->demo_reply_tokens, 60u);
    EXPECT_EQ(c->history_messages, 25u);
    EXPECT_EQ(c->backlog_ttl, 300u);
    EXPECT_TRUE(c->dev_token_key.empty());
    EXPECT_EQ(c->log_level, LogLevel::info);
}

TEST_F(ConfigFile, MissingNamedFileIsAnError)
{
    auto c = load_config(dir_ + "/absent.conf", true, env_of({}));

    ASSERT_FALSE(c.is_ok());
    EXPECT_NE(c.status().message().find("absent.conf"), std::string::npos);
}

TEST_F(ConfigFile, ReadsKeysCommentsAndBlankLines)
{
    std::string path = write("# a comment\n\nworker_socket = /tmp/w.sock\n"
                             "  http_socket=/tmp/h.sock  \n"
                             "demo_token_rate = 200\nlog_level = debug\n"
                             "ai_api_key = sk-secret\nbacklog_ttl = 5\n");
    auto c = load_config(path, true, env_of({}));

    ASSERT_TRUE(c.is_ok()) << c.status().message();
    EXPECT_EQ(c->worker_socket, "/tmp/w.sock");
    EXPECT_EQ(c->http_socket, "/tmp/h.sock");
    EXPECT_EQ(c->demo_token_rate, 200u);
    EXPECT_EQ(c->log_level, LogLevel::debug);
    EXPECT_EQ(c->ai_api_key, "sk-secret");
    EXPECT_EQ(c->backlog_ttl, 5u);
}

TEST_F(ConfigFile, EnvironmentWinsOverTheFile)
{
    std::string path = write("redis_url = redis://10.0.0.1:6379\nkey_prefix = file\n");
    auto c = load_config(path, true,
                         env_of({{"REDIS_URL", "unix:///run/redis.sock"},
                                 {"SIGNALRD_DEMO_REPLY_TOKENS", "7"},
                                 {"SIGNALRD_DEV_TOKEN_KEY", "/k"},
                                 {"AI_MODEL", "m"}}));

    ASSERT_TRUE(c.is_ok()) << c.status().message();
    EXPECT_EQ(c->redis_url, "unix:///run/redis.sock");
    EXPECT_EQ(c->key_prefix, "file");
    EXPECT_EQ(c->demo_reply_tokens, 7u);
    EXPECT_EQ(c->dev_token_key, "/k");
    EXPECT_EQ(c->ai_model, "m");
}

TEST_F(ConfigFile, UnknownKeyNamesTheKeyAndTheLine)
{
    std::string path = write("worker_socket = /a\n\nworkr_socket = /b\n");
    auto c = load_config(path, true, env_of({}));

    ASSERT_FALSE(c.is_ok());
    EXPECT_NE(c.status().message().find("workr_socket"), std::string::npos)
        << c.status().message();
    EXPECT_NE(c.status().message().find(":3"), std::string::npos) << c.status().message();
}

TEST_F(ConfigFile, BadValuesAreRefused)
{
    EXPECT_FALSE(load_config(write("demo_token_rate = fast\n"), true, env_of({})).is_ok());
    EXPECT_FALSE(load_config(write("demo_token_rate = 0\n"), true, env_of({})).is_ok());
    EXPECT_FALSE(load_config(write("log_level = verbose\n"), true, env_of({})).is_ok());
    EXPECT_FALSE(load_config(write("no equals sign\n"), true, env_of({})).is_ok());
    EXPECT_FALSE(load_config(write(""), true, env_of({{"SIGNALRD_DEMO_TOKEN_RATE", "-1"}}))
                     .is_ok());
    EXPECT_FALSE(load_config(write("worker_socket = /x\nhttp_socket = /x\n"), true, env_of({}))
                     .is_ok())
        << "the two sockets must differ";
}

}  // namespace
}  // namespace signalrd
