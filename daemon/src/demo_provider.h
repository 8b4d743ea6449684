// The built-in provider used when no model endpoint is configured: a reply derived from
// the prompt alone (the same prompt always gives the same text), streamed at a fixed
// token rate on an Asio timer.
//
// Design note: each reply's tokens are due on a fixed schedule from its start, and each
// wait ends on a tick of a grid shared by every reply (tick below, from the steady
// clock's epoch) rather than at its own instant. The replies whose tokens fall due
// within one tick are then woken in the same turn of the loop, and their backlog writes
// leave in one script call (backlog_batcher.h), their fragments in one write to Redis and
// to each worker: at a thousand replies of 20 tokens a second, about a dozen fragments
// a call instead of one. A token waits at most one tick more; the schedule does not
// drift by it, as the due times are kept unrounded.

#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "provider.h"

namespace signalrd {

class DemoProvider final : public Provider {
public:
    static constexpr std::chrono::milliseconds tick{1};

    DemoProvider(uint32_t tokens_per_second, uint32_t reply_tokens);

    asio::awaitable<Status> generate(const ReplyRequest &request, ReplyControl &control,
                                     const TokenSink &sink) override;

    const char *name() const override { return "demo"; }

    // The tokens of the reply to prompt; their concatenation is the reply's text.
    std::vector<std::string> reply_tokens(const std::string &prompt) const;

private:
    uint32_t tokens_per_second_;
    uint32_t reply_tokens_;
};

}  // namespace signalrd
