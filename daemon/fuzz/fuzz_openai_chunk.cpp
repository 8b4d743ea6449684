// libFuzzer target for the reading of an OpenAI-compatible server's answer:
// parse_completion_chunk() on one event's data, describe_error_body() on an
// error body, and parse_temperature() on a setting.
//
// Input: byte 0 is the length (0..31) of a secret taken from the bytes
// after it; the rest is the event data, the error body and the setting.
//
// Checks, besides no crash, leak or undefined behaviour:
// - "[DONE]" and nothing else is the end of the stream;
// - a refusal is a protocol_error with a reason;
// - a chunk's content and finish reason come from the data, so neither is
//   longer than it (JSON escapes never grow when decoded);
// - a described error body fits its bound, has no control character and
//   does not show the secret;
// - an accepted temperature is between 0 and 2.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "openai_protocol.h"

namespace {

using signalrd::CompletionChunk;
using signalrd::Result;
using signalrd::StatusCode;

void check_chunk(std::string_view data)
{
    Result<CompletionChunk> chunk = signalrd::parse_completion_chunk(data);

    if (!chunk.is_ok()) {
        if (chunk.status().code() != StatusCode::protocol_error ||
            chunk.status().message().empty()) {
            __builtin_trap();
        }
        return;
    }
    if (chunk->done != (data == "[DONE]")) {
        __builtin_trap();
    }
    if (chunk->content.size() > data.size() || chunk->finish_reason.size() > data.size()) {
        __builtin_trap();
    }
}

// Whether the text left around a replaced secret could spell it again: only
// when the secret shares a byte with the "[key]" mark, the "..." of a cut
// or the space that stands for a control character.
bool secret_can_reappear(std::string_view secret)
{
    for (char c : secret) {
        if (std::string_view("[key]. ").find(c) != std::string_view::npos ||
            static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

void check_error_body(std::string_view body, const std::string &secret)
{
    for (size_t max_bytes : {size_t(0), size_t(80), size_t(200)}) {
        std::string text = signalrd::describe_error_body(body, secret, max_bytes);

        if (text.size() > max_bytes + 3) {
            __builtin_trap();
        }
        for (char c : text) {
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
                __builtin_trap();
            }
        }
        if (!secret.empty() && !secret_can_reappear(secret) &&
            text.find(secret) != std::string::npos) {
            __builtin_trap();
        }
    }
}

void check_temperature(std::string_view setting)
{
    auto value = signalrd::parse_temperature(std::string(setting));

    if (!value.is_ok()) {
        if (value.status().code() != StatusCode::invalid_argument) {
            __builtin_trap();
        }
        return;
    }
    if (setting.empty() != !value->has_value()) {
        __builtin_trap();
    }
    if (value->has_value() && !(**value >= 0.0 && **value <= 2.0)) {
        __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t secret_len = data[0] % 32;
    if (size < 1 + secret_len) {
        return 0;
    }
    std::string secret(reinterpret_cast<const char *>(data) + 1, secret_len);
    std::string_view rest(reinterpret_cast<const char *>(data) + 1 + secret_len,
                          size - 1 - secret_len);

    check_chunk(rest);
    check_error_body(rest, secret);
    if (rest.size() <= 64) {
        check_temperature(rest);
    }
    return 0;
}
