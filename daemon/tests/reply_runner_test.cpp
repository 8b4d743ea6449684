// The reply runner with a streaming provider: tokens published as they come, backlog
// writes batched behind the one in flight (the hold-back queue's writer), and nothing
// lost or repeated on resume; a cancel reaches a provider waiting for room at once.

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

// Gives a token every few milliseconds until it has given them all or is cancelled,
// and records what it saw of the cancel.
class PacedProvider final : public Provider {
public:
    PacedProvider(size_t tokens, std::chrono::milliseconds gap) : tokens_(tokens), gap_(gap) {}

    asio::awaitable<Status> generate(const ReplyRequest &, ReplyControl &control,
                                     const TokenSink &sink) override
    {
        control.on_cancel([this] { hook_ran = std::chrono::steady_clock::now(); });
        for (size_t i = 0; i < tokens_ && !control.cancelled(); i++) {
            if (i > 0 && !co_await control.wait(gap_)) {
                break;
            }
            in_sink = true;
            Status s = co_await sink("p" + std::to_string(i) + " ");
            in_sink = false;
            if (!s.is_ok()) {
                break;
            }
            given++;
        }
        control.on_cancel({});
        returned = std::chrono::steady_clock::now();
        co_return Status::ok();
    }

    const char *name() const override { return "paced"; }

    size_t given = 0;
    bool in_sink = false;
    std::optional<std::chrono::steady_clock::time_point> hook_ran;
    std::optional<std::chrono::steady_clock::time_point> returned;

private:
    size_t tokens_;
    std::chrono::milliseconds gap_;
};

class PacedReplies : public BatchedReplies {
protected:
    // The provider is the fixture's, so that it outlives a reply a failed test left.
    PacedProvider &use(size_t tokens, std::chrono::milliseconds gap, BacklogBatching batching,
                       size_t hold_back)
    {
        hub_.reset();
        runner_.reset();
        paced_ = std::make_unique<PacedProvider>(tokens, gap);
        runner_ = std::make_unique<ReplyRunner>(io_.get_executor(), *store_, bus_, *paced_);
        runner_->set_live_tokens(true);
        runner_->set_batching(batching);
        runner_->set_hold_back_limit(hold_back);
        hub_ = std::make_unique<ChatHub>(io_.get_executor(), *store_, bus_, *runner_, sink_);
        return *paced_;
    }

    void TearDown() override
    {
        BatchedReplies::TearDown();
        paced_.reset();
    }

    std::unique_ptr<PacedProvider> paced_;
};

TEST_F(PacedReplies, BacklogBatchMsGathersTokensThatComeApart)
{
    use(40, std::chrono::milliseconds(5), {256, std::chrono::milliseconds(100)}, 1024);

    auto c = connection("c1", "alice");
    uint64_t evals_before = eval_calls();
    std::string id = create("alice", "slowly");
    stream(c, "s1", id);
    ASSERT_TRUE(wait_reply(id));
    ASSERT_TRUE(wait_final("c1", "s1"));
    uint64_t evals = eval_calls() - evals_before;

    auto s = load(id);
    ASSERT_TRUE(s && s->messages.size() == 2u);
    EXPECT_EQ(s->messages[1].fragments.size(), 41u) << "one fragment a token, and the end";
    std::string streamed;
    for (const Fragment &f : sink_.fragments("c1", "s1")) {
        if (f.sender == "assistant") {
            streamed += f.text;
        }
    }
    EXPECT_EQ(streamed, s->messages[1].text);
    // 40 tokens over about 200 ms: written one by one they would take 40 calls
    EXPECT_LT(evals, 15u) << "writes waited up to 100 ms for company";
}

TEST_F(PacedReplies, CancelReachesAProviderWaitingForRoom)
{
    PacedProvider &paced = use(100000, std::chrono::milliseconds(1),
                               {256, std::chrono::milliseconds(0)}, 1);

    std::string id = create("alice", "endless");
    ASSERT_TRUE(testing::run_until(io_, [&] { return paced.given >= 3; }));

    // writes stall in Redis: the one in flight fills the queue, the sink must wait
    auto paused = testing::run_coro(io_, redis_->command({"CLIENT", "PAUSE", "1500", "WRITE"}));
    ASSERT_TRUE(paused && paused->is_ok());
    testing::run_for(io_, std::chrono::milliseconds(200));
    ASSERT_TRUE(paced.in_sink) << "the provider waits for room in the hold-back queue";
    ASSERT_FALSE(paced.returned);

    auto asked = std::chrono::steady_clock::now();
    ASSERT_TRUE(runner_->cancel(id));
    ASSERT_TRUE(paced.hook_ran) << "cancel() ran the provider's hook before returning";
    ASSERT_TRUE(testing::run_until(io_, [&] { return paced.returned.has_value(); },
                                   std::chrono::milliseconds(1000)));
    EXPECT_LT(*paced.returned - asked, std::chrono::milliseconds(100))
        << "the provider stopped while Redis was still paused";

    ASSERT_TRUE(wait_reply(id));
    auto s = load(id);
    ASSERT_TRUE(s && s->messages.size() == 2u);
    const std::string &text = s->messages[1].text;
    EXPECT_TRUE(text.size() >= std::strlen(cancelled_text) &&
                text.compare(text.size() - std::strlen(cancelled_text), std::string::npos,
                             cancelled_text) == 0)
        << "the reply ends saying it was cancelled: " << text;
}

}  // namespace
}  // namespace signalrd
