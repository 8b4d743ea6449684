// The OpenAI Chat Completions wire format, as far as a streamed chat reply needs it:
// the request body of POST {base}/chat/completions with "stream": true, and the meaning
// of each Server-Sent Event's data in the answer. Pure functions, no I/O, so that the
// tests (and a fuzzer) can drive them with any input.

#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat_types.h"
#include "status.h"

namespace signalrd {

struct CompletionSettings {
    std::string model;
    std::string system_prompt;             // empty: no system message
    std::optional<double> temperature;     // unset: the server's default
    uint32_t max_tokens = 0;               // 0: not sent
};

// The JSON body for history (oldest first, the last turn being the prompt): the system
// message, then each turn in the role the API expects ("user" or "assistant").
std::string completion_request_body(const CompletionSettings &settings,
                                    const std::vector<ChatTurn> &history);

// What one event of the answer says.
struct CompletionChunk {
    std::string content;          // delta.content of the first choice; may be empty
    std::string finish_reason;    // empty while the reply goes on
    bool done = false;            // the "[DONE]" sentinel
};

// Reads one event's data. protocol_error for data that is neither "[DONE]" nor a chunk
// object with a "choices" array, and for an error object that the server streams in
// place of a chunk (its message goes into the Status, for the operator's log).
Result<CompletionChunk> parse_completion_chunk(std::string_view data);

// The "error.message" (or the whole body, cut) of an HTTP error answer, made safe for a
// log line: at most max_bytes, control characters replaced, the secret never shown.
std::string describe_error_body(std::string_view body, const std::string &secret,
                                size_t max_bytes = 200);

// A temperature setting as text ("0.7"); empty gives no value. invalid_argument unless
// it is a plain decimal between 0 and 2.
Result<std::optional<double>> parse_temperature(const std::string &text);

}  // namespace signalrd
