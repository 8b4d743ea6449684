#include <gtest/gtest.h>

#include "demo_provider.h"
#include "test_util.h"

namespace signalrd {
namespace {

TEST(DemoProvider, SamePromptGivesSameReplyOfTheConfiguredLength)
{
    DemoProvider provider(1000, 12);
    auto a = provider.reply_tokens("What is SignalR?");
    auto b = provider.reply_tokens("What is SignalR?");
    auto c = provider.reply_tokens("Something else");

    EXPECT_EQ(a.size(), 12u);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    EXPECT_EQ(a.back().back(), '.') << "the reply ends a sentence";
}

TEST(DemoProvider, StreamsEveryTokenAtTheConfiguredRate)
{
    asio::io_context io;
    DemoProvider provider(200, 10);
    ReplyControl control(io.get_executor());
    std::vector<std::string> got;
    TokenSink sink = [&](std::string t) -> asio::awaitable<Status> {
        got.push_back(std::move(t));
        co_return Status::ok();
    };
    ReplyRequest request{"c", {{"user", "prompt"}}};

    auto start = std::chrono::steady_clock::now();
    auto status = testing::run_coro(io, provider.generate(request, control, sink));
    auto elapsed = std::chrono::steady_clock::now() - start;

    ASSERT_TRUE(status && status->is_ok());
    EXPECT_EQ(got, provider.reply_tokens("prompt"));
    EXPECT_GE(elapsed, std::chrono::milliseconds(45)) << "10 tokens at 200/s take 50 ms";
}

TEST(DemoProvider, StopsWhenCancelled)
{
    asio::io_context io;
    DemoProvider provider(100, 1000);
    ReplyControl control(io.get_executor());
    int tokens = 0;
    TokenSink sink = [&](std::string) -> asio::awaitable<Status> {
        if (++tokens == 3) {
            control.cancel();
        }
        co_return Status::ok();
    };
    ReplyRequest request{"c", {{"user", "prompt"}}};

    auto status = testing::run_coro(io, provider.generate(request, control, sink),
                                    std::chrono::seconds(5));

    ASSERT_TRUE(status && status->is_ok());
    EXPECT_EQ(tokens, 3);
}

}  // namespace
}  // namespace signalrd
