// The built-in provider used when no model endpoint is configured: a reply derived from
// the prompt alone (the same prompt always gives the same text), streamed at a fixed
// token rate on an Asio timer.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "provider.h"

namespace signalrd {

class DemoProvider final : public Provider {
public:
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
