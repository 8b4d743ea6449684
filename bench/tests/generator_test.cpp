// The real generator, coordinator and worker processes included, run
// against the in-process mock hub: what it reports must match what the
// hub did.

#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <jansson.h>

#include "mock_hub.h"

namespace bench {
namespace {

class GeneratorTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        char  dir[] = "/tmp/bench-test-XXXXXX";

        ASSERT_NE(mkdtemp(dir), nullptr);
        output_ = std::string(dir) + "/report.json";
        dir_ = dir;
    }

    void TearDown() override
    {
        unlink(output_.c_str());
        rmdir(dir_.c_str());
        json_decref(report_);
    }

    // Runs signalr-bench with args and the mock's URL; loads the report.
    //
    // The program is started, not called: its coordinator forks its
    // workers, and a fork of this process, whose mock hub thread may
    // hold the allocator's lock at that moment (ASan's does), can hang
    // in its first allocation.
    int run(std::vector<std::string> args, int port)
    {
        std::vector<char *>  argv;
        pid_t                pid;
        int                  status = 0;

        args.insert(args.begin(), SIGNALR_BENCH_BIN);
        args.push_back("--url");
        args.push_back("http://127.0.0.1:" + std::to_string(port));
        args.push_back("--output");
        args.push_back(output_);
        for (auto &a : args) {
            argv.push_back(a.data());
        }

        argv.push_back(nullptr);
        EXPECT_EQ(posix_spawn(&pid, SIGNALR_BENCH_BIN, nullptr, nullptr,
                              argv.data(), environ), 0);
        EXPECT_EQ(waitpid(pid, &status, 0), pid);

        int  rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

        json_decref(report_);
        report_ = json_load_file(output_.c_str(), 0, nullptr);
        EXPECT_NE(report_, nullptr) << "no report written";

        return rc;
    }

    long long number(const char *section, const char *key) const
    {
        json_t  *s = json_object_get(report_, section);

        return json_integer_value(json_object_get(s, key));
    }

    long long latency_count(const char *key) const
    {
        json_t  *l = json_object_get(json_object_get(report_, "latency_ms"),
                                     key);

        return json_integer_value(json_object_get(l, "count"));
    }

    std::string  dir_, output_;
    json_t      *report_ = nullptr;
};


TEST_F(GeneratorTest, InvokeCountsEveryRoundTripTheHubAnswered)
{
    MockHub  hub({});

    ASSERT_TRUE(hub.start().ok());
    ASSERT_EQ(run({"invoke", "--connections", "20", "--procs", "2",
                   "--warmup", "0", "--duration", "1"}, hub.port()), 0);
    hub.stop();

    long long  delivered = json_integer_value(json_object_get(report_,
                                                              "delivered"));
    EXPECT_EQ(number("setup", "ready"), 20);
    EXPECT_EQ(number("setup", "failed"), 0);
    EXPECT_EQ(hub.counts().handshakes, 20);
    EXPECT_GT(delivered, 100) << "a loopback round trip takes well under "
                                 "10 ms";
    EXPECT_LE(delivered, hub.counts().invocations);
    EXPECT_EQ(number("counters", "error_completions"), delivered);
    EXPECT_EQ(latency_count("round_trip"), delivered);
    EXPECT_EQ(number("errors", "Completion: Method does not exist."),
              delivered);
    EXPECT_GT(json_real_value(json_object_get(report_, "delivered_per_s")),
              100.0);
}


TEST_F(GeneratorTest, InvokeReportsTheCpuOfTheNamedServerPerRoundTrip)
{
    MockHub      hub({});
    std::string  self = std::to_string(getpid());

    ASSERT_TRUE(hub.start().ok());
    ASSERT_EQ(run({"invoke", "--connections", "20", "--procs", "2",
                   "--warmup", "0.2", "--duration", "1", "--pids", self},
                  hub.port()), 0);
    hub.stop();

    double  delivered = double(json_integer_value(
        json_object_get(report_, "delivered")));
    json_t  *cpu = json_object_get(report_, "server_cpu");

    EXPECT_EQ(json_object_get(report_, "processes"), nullptr)
        << "memory is the idle scenario's";
    ASSERT_EQ(json_array_size(cpu), 1u);

    json_t  *p = json_array_get(cpu, 0);
    double   cpu_s = json_real_value(json_object_get(p, "cpu_s"));

    EXPECT_STREQ(json_string_value(json_object_get(p, "role")), "process");
    EXPECT_TRUE(json_is_true(json_object_get(p, "complete")));
    EXPECT_GT(cpu_s, 0.0) << "the hub answered every round trip";
    ASSERT_GT(delivered, 0.0);
    EXPECT_NEAR(json_real_value(json_object_get(p, "us_per_delivery")),
                1e6 * cpu_s / delivered, 1e-6);
}


void
expect_whole_replies(json_t *report, long long conversations, int tokens)
{
    json_t  *c = json_object_get(report, "counters");
    json_t  *l = json_object_get(report, "latency_ms");

    auto  counter = [c](const char *k) {
        return json_integer_value(json_object_get(c, k));
    };
    auto  count = [l](const char *k) {
        return json_integer_value(json_object_get(json_object_get(l, k),
                                                  "count"));
    };

    EXPECT_EQ(counter("conversations_completed"), conversations);
    EXPECT_EQ(counter("assistant_fragments"), conversations * tokens);
    EXPECT_EQ(counter("user_fragments"), conversations);
    EXPECT_EQ(counter("delivered"), conversations * (tokens + 1));
    EXPECT_EQ(counter("fragments_out_of_order"), 0);
    EXPECT_EQ(counter("replies_differing"), 0);
    EXPECT_EQ(count("ttff"), conversations);
    EXPECT_EQ(count("gap"), conversations * (tokens - 1));
    EXPECT_EQ(count("fragment_age"), conversations * tokens);
}


TEST_F(GeneratorTest, ChatReadsEveryReplyToItsFinalFragmentInJson)
{
    MockHub  hub({200, 8});

    ASSERT_TRUE(hub.start().ok());
    ASSERT_EQ(run({"chat", "--conversations", "10", "--procs", "2",
                   "--token-rate", "200"}, hub.port()), 0);
    hub.stop();

    expect_whole_replies(report_, 10, 8);
    EXPECT_EQ(hub.counts().cancels, 10) << "every stream is cancelled";

    // 8 tokens at 200/s: the median gap is near the nominal 5 ms.
    json_t  *gap = json_object_get(json_object_get(report_, "latency_ms"),
                                   "gap");
    EXPECT_GT(json_real_value(json_object_get(gap, "p50")), 4.0);
    EXPECT_LT(json_real_value(json_object_get(gap, "p50")), 50.0);
}


TEST_F(GeneratorTest, ChatLogsEveryFragmentWhenAsked)
{
    MockHub      hub({200, 8});
    std::string  prefix = dir_ + "/fragments";

    ASSERT_TRUE(hub.start().ok());
    ASSERT_EQ(run({"chat", "--conversations", "10", "--procs", "2",
                   "--token-rate", "200", "--fragment-log", prefix},
                  hub.port()), 0);
    hub.stop();
    expect_whole_replies(report_, 10, 8);

    // one file a process, named by its first conversation
    size_t  lines = 0, finals = 0;

    for (const char *first : {"0", "5"}) {
        std::string  name = prefix + "." + first;
        FILE        *f = fopen(name.c_str(), "r");
        long long    read_ns, age_us;
        size_t       conv;
        int          is_final;

        ASSERT_NE(f, nullptr) << name;
        while (fscanf(f, "%lld %lld %zu %d", &read_ns, &age_us, &conv,
                      &is_final) == 4)
        {
            lines++;
            finals += is_final;
            EXPECT_GE(age_us, 0);
            EXPECT_GT(read_ns, 1700000000LL * 1000000000LL) << "Unix time";
            EXPECT_LT(conv, 10u);
        }
        fclose(f);
        unlink(name.c_str());
    }

    EXPECT_EQ(lines, 10u * 8) << "every assistant fragment";
    EXPECT_EQ(finals, 10u) << "one final a conversation";
}


TEST_F(GeneratorTest, ChatReadsEveryReplyInMessagePack)
{
    MockHub  hub({500, 5});

    ASSERT_TRUE(hub.start().ok());
    ASSERT_EQ(run({"chat", "--conversations", "6", "--protocol",
                   "messagepack", "--token-rate", "500"}, hub.port()), 0);
    hub.stop();

    expect_whole_replies(report_, 6, 5);
}


TEST_F(GeneratorTest, IdleHoldsConnectionsAndSamplesTheNamedProcess)
{
    MockHub      hub({});
    std::string  self = std::to_string(getpid());

    ASSERT_TRUE(hub.start().ok());
    ASSERT_EQ(run({"idle", "--connections", "12", "--hold", "1.5",
                   "--keepalive", "0.5", "--pids", self}, hub.port()), 0);
    hub.stop();

    EXPECT_EQ(number("counters", "open_at_end"), 12);
    EXPECT_GE(hub.counts().pings, 12) << "each connection kept alive";

    json_t  *procs = json_object_get(report_, "processes");
    ASSERT_EQ(json_array_size(procs), 1u);
    json_t  *p = json_array_get(procs, 0);
    EXPECT_STREQ(json_string_value(json_object_get(p, "role")), "process");
    EXPECT_GT(json_integer_value(json_object_get(p, "rss_kb_after")), 0);
}


TEST_F(GeneratorTest, ARefusedSetupIsReportedWithItsReason)
{
    MockHub  hub({});

    ASSERT_TRUE(hub.start().ok());
    EXPECT_EQ(run({"invoke", "--connections", "3", "--duration", "0.2",
                   "--warmup", "0", "--hub", "/elsewhere"}, hub.port()), 1);
    hub.stop();

    EXPECT_EQ(number("setup", "ready"), 0);
    EXPECT_EQ(number("setup", "failed"), 3);
    json_t  *errors = json_object_get(json_object_get(report_, "setup"),
                                      "errors");
    EXPECT_EQ(json_integer_value(json_object_get(errors,
                                                 "negotiate: HTTP 404")), 3);
}


TEST_F(GeneratorTest, NothingListeningFailsEveryConnection)
{
    MockHub  hub({});

    ASSERT_TRUE(hub.start().ok());
    int  port = hub.port();
    hub.stop();   // the port is free again: connections are refused

    EXPECT_EQ(run({"invoke", "--connections", "2", "--duration", "0.2",
                   "--warmup", "0"}, port), 1);
    EXPECT_EQ(number("setup", "failed"), 2);
}

}  // namespace
}  // namespace bench
