// The provider for any server that speaks OpenAI's Chat Completions streaming format
// (Ollama, vLLM, llama.cpp's server, LM Studio, LocalAI, OpenAI itself): one
// POST {base}/chat/completions with "stream": true per reply, its Server-Sent Events
// read as they arrive, every transfer on the daemon's loop through CurlMulti.
//
// Failures before the first token that are worth another try (the connection refused
// or cut, 429, 500, 502, 503, 504) are retried with a doubling backoff; anything after
// the first token is final, since a second answer would not continue the first. Each
// failure returns a Status whose message is for the operator's log (the reply runner
// logs it and ends the reply with a generic final fragment); none carries the key.

#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "curl_multi.h"
#include "json.h"
#include "openai_protocol.h"
#include "provider.h"

namespace signalrd {

struct OpenAiSettings {
    std::string base_url;                  // ".../v1"; "/chat/completions" is appended
    std::string api_key;                   // empty: no Authorization header
    CompletionSettings completion;
    std::chrono::milliseconds request_timeout{300000};     // the whole transfer
    std::chrono::milliseconds first_token_timeout{60000};  // from the request's start
    std::chrono::milliseconds connect_timeout{10000};
    bool tls_verify = true;                // against the system's CA store
    uint32_t retries = 2;                  // extra attempts before the first token
    std::chrono::milliseconds backoff{250};                // doubled on every retry
    std::chrono::milliseconds max_backoff{5000};           // also caps Retry-After
};

// What went wrong with one attempt, as counted and as classified for retries.
enum class ProviderFailure {
    connect,               // refused, unreachable, connect timeout
    dns,                   // the host name does not resolve
    tls,                   // handshake or certificate
    http_auth,             // 401, 403
    http_rate_limited,     // 429
    http_server,           // 5xx
    http_other,            // another status
    malformed,             // an event that is not a completion chunk, or an error event
    cut,                   // the answer ended before [DONE] or finish_reason
    first_token_timeout,   // no token within first_token_timeout
    timeout,               // request_timeout passed
    other,
};

inline constexpr size_t provider_failure_kinds = 12;

const char *provider_failure_name(ProviderFailure failure);

struct ProviderStats {
    uint64_t requests = 0;      // HTTP requests sent, retries included
    uint64_t retries = 0;
    uint64_t completed = 0;     // replies the model finished
    uint64_t cancelled = 0;     // replies stopped by a cancel while the transfer ran
    uint64_t failed = 0;        // replies ended by a failure
    uint64_t tokens = 0;        // content deltas received
    uint64_t failures[provider_failure_kinds] = {};   // attempts failed, by kind
};

class OpenAiProvider final : public Provider {
public:
    OpenAiProvider(asio::any_io_executor executor, OpenAiSettings settings);

    asio::awaitable<Status> generate(const ReplyRequest &request, ReplyControl &control,
                                     const TokenSink &sink) override;

    const char *name() const override { return "openai"; }

    const ProviderStats &stats() const { return stats_; }

    // {"requests", "retries", ..., "failures": {"connect": n, ...}} for /healthz.
    Json stats_json() const;

    size_t transfers() const { return multi_.running(); }

private:
    struct Attempt;
    struct StreamState;

    asio::awaitable<Attempt> attempt(const std::string &body, ReplyControl &control,
                                     const TokenSink &sink);
    void configure(CurlTransfer &transfer, const std::string &body) const;
    void classify(const StreamState &state, Attempt &a) const;

    asio::any_io_executor executor_;
    OpenAiSettings settings_;
    std::string url_;
    std::string log_url_;                  // url_ without user information
    CurlMulti multi_;
    ProviderStats stats_;
};

}  // namespace signalrd
