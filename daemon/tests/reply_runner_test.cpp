// The reply runner with a streaming provider: tokens published as they come, backlog
// writes batched behind the one in flight, and nothing lost or repeated on resume.

#include "chat_fixture.h"

namespace signalrd {
namespace {

// Hands its tokens to the sink as fast as it takes them, as a model whose tokens
// arrive faster than Redis answers.
class BurstProvider final : public Provider {
public:
    explicit BurstProvider(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

    asio::awaitable<Status> generate(const ReplyRequest &, ReplyControl &control,
                                     const TokenSink &sink) override
    {
        for (const std::string &t : tokens_) {
            if (control.cancelled()) {
                co_return Status::ok();
            }
            Status s = co_await sink(t);
            if (!s.is_ok()) {
                co_return s;
            }
        }
        co_return Status::ok();
    }

    const char *name() const override { return "burst"; }

private:
    std::vector<std::string> tokens_;
};

std::vector<std::string> numbered_tokens(size_t n)
{
    std::vector<std::string> out;
    for (size_t i = 0; i < n; i++) {
        out.push_back("t" + std::to_string(i) + " ");
    }
    return out;
}

class BatchedReplies : public testing::ChatFixture {
protected:
    static constexpr size_t burst = 200;

    void SetUp() override
    {
        ChatFixture::SetUp();
        hub_.reset();
        runner_ = std::make_unique<ReplyRunner>(io_.get_executor(), *store_, bus_, burst_);
        runner_->set_live_tokens(true);
        runner_->set_batching({8, std::chrono::milliseconds(0)});
        hub_ = std::make_unique<ChatHub>(io_.get_executor(), *store_, bus_, *runner_, sink_);
    }

    uint64_t eval_calls()
    {
        auto info = testing::run_coro(io_, redis_->command({"INFO", "commandstats"}));
        std::string text = info && info->is_ok() ? (*info)->str : "";
        size_t at = text.find("cmdstat_eval:calls=");
        return at == std::string::npos ? 0 : std::stoull(text.substr(at + 19));
    }

    std::string joined() const
    {
        std::string all;
        for (const std::string &t : numbered_tokens(burst)) {
            all += t;
        }
        return all;
    }

    BurstProvider burst_{numbered_tokens(burst)};
};

TEST_F(BatchedReplies, EveryTokenIsOneFragmentStoredInFewerWrites)
{
    auto c = connection("c1", "alice");
    uint64_t evals_before = eval_calls();
    std::string id = create("alice", "burst please");
    stream(c, "s1", id);
    ASSERT_TRUE(wait_reply(id));
    ASSERT_TRUE(wait_final("c1", "s1"));
    uint64_t evals = eval_calls() - evals_before;

    auto s = load(id);
    ASSERT_TRUE(s && s->messages.size() == 2u);
    EXPECT_EQ(s->messages[1].text, joined()) << "the stored reply is every token, in order";
    EXPECT_EQ(s->messages[1].fragments.size(), burst + 1) << "one fragment a token, and the end";

    std::vector<Fragment> seen = sink_.fragments("c1", "s1");
    std::string streamed;
    for (const Fragment &f : seen) {
        if (f.sender == "assistant") {
            streamed += f.text;
        }
    }
    EXPECT_EQ(streamed, joined()) << "the live stream got every token once";
    EXPECT_TRUE(seen.back().is_final);
    EXPECT_EQ(seen.back().text, "") << "a streamed reply ends with an empty final fragment";
    EXPECT_LT(evals, burst / 4) << "tokens that came while a write ran shared the next one";
}

TEST_F(BatchedReplies, ResumingAfterAnyFragmentGivesExactlyTheRest)
{
    auto c = connection("c1", "alice");
    std::string id = create("alice", "burst please");
    stream(c, "all", id);   // live: one fragment a token, each with its own id
    ASSERT_TRUE(wait_reply(id));
    ASSERT_TRUE(wait_final("c1", "all"));
    std::vector<Fragment> all = sink_.fragments("c1", "all");
    ASSERT_EQ(all.size(), burst + 2) << "the user's turn, the tokens, the end";

    for (size_t k : {size_t(1), size_t(2), size_t(50), size_t(199), all.size() - 2}) {
        std::string inv = "r" + std::to_string(k);
        stream(c, inv, id, {all[k].message_id, all[k].fragment_id});
        ASSERT_TRUE(wait_final("c1", inv)) << k;
        std::string expected;
        for (size_t i = k + 1; i < all.size(); i++) {
            expected += all[i].text;
        }
        std::string got;
        for (const Fragment &f : sink_.fragments("c1", inv)) {
            got += f.text;
        }
        EXPECT_EQ(got, expected) << "resuming after fragment " << k;
    }
}

}  // namespace
}  // namespace signalrd
