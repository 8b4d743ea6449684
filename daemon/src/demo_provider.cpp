#include "demo_provider.h"

#include <algorithm>
#include <random>

namespace signalrd {

namespace {

const char *const words[] = {
    "signal", "stream", "reply", "token", "message", "server", "client", "edge",
    "worker", "socket", "redis", "backlog", "fragment", "resume", "hub", "nginx",
    "quiet", "bright", "steady", "simple", "careful", "swift", "patient", "exact",
    "the", "a", "every", "each", "some", "this", "that", "our",
    "carries", "keeps", "sends", "holds", "follows", "answers", "waits", "returns",
    "over", "through", "across", "beside", "after", "before", "within", "around",
    "order", "time", "state", "truth", "history", "moment", "river", "mountain",
    "library", "garden", "window", "lantern", "harbor", "meadow", "compass", "letter",
};

constexpr size_t word_count = sizeof(words) / sizeof(words[0]);

// FNV-1a: a stable seed from the prompt, the same on every build and host.
uint64_t fnv1a(const std::string &s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3u;
    }
    return h;
}

// The first tick of the shared grid at or after t (see the design note in the header).
std::chrono::steady_clock::time_point on_tick(std::chrono::steady_clock::time_point t)
{
    const auto step = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        DemoProvider::tick);
    auto since = t.time_since_epoch();
    auto rest = since % step;

    return rest.count() == 0 ? t : t + (step - rest);
}

}  // namespace

DemoProvider::DemoProvider(uint32_t tokens_per_second, uint32_t reply_tokens)
    : tokens_per_second_(tokens_per_second == 0 ? 1 : tokens_per_second),
      reply_tokens_(reply_tokens == 0 ? 1 : reply_tokens)
{
}

std::vector<std::string> DemoProvider::reply_tokens(const std::string &prompt) const
{
    // mt19937_64's output sequence is fixed by the C++ standard, unlike distributions
    std::mt19937_64 rng(fnv1a(prompt));
    std::vector<std::string> tokens;
    bool sentence_start = true;

    for (uint32_t i = 0; i < reply_tokens_; i++) {
        std::string word = words[rng() % word_count];
        if (sentence_start) {
            word[0] = static_cast<char>(word[0] - 'a' + 'A');
        }
        bool last = i + 1 == reply_tokens_;
        bool sentence_end = last || rng() % 9 == 0;
        if (sentence_end) {
            word += ".";
        }
        if (!last) {
            word += " ";
        }
        sentence_start = sentence_end;
        tokens.push_back(std::move(word));
    }
    return tokens;
}

asio::awaitable<Status> DemoProvider::generate(const ReplyRequest &request, ReplyControl &control,
                                               const TokenSink &sink)
{
    std::string prompt = request.history.empty() ? "" : request.history.back().text;
    auto interval = std::chrono::nanoseconds(1000000000 / tokens_per_second_);
    auto due = std::chrono::steady_clock::now();

    std::vector<std::string> tokens = reply_tokens(prompt);

    for (std::string &token : tokens) {
        // behind (the sink made it wait): from now on, rather than a burst to catch up
        due = std::max(due + interval, std::chrono::steady_clock::now());
        if (!co_await control.wait_until(on_tick(due))) {
            co_return Status::ok();
        }
        Status s = co_await sink(std::move(token));
        if (!s.is_ok()) {
            co_return s;
        }
    }
    co_return Status::ok();
}

}  // namespace signalrd
