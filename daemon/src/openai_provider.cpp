#include "openai_provider.h"

#include <deque>
#include <optional>

#include "sse_parser.h"

namespace signalrd {

namespace {

constexpr size_t max_error_body = 4096;   // bytes of an error answer kept for the log

const char *const failure_names[provider_failure_kinds] = {
    "connect", "dns", "tls", "http_auth", "http_rate_limited", "http_server",
    "http_other", "malformed", "cut", "first_token_timeout", "timeout", "other",
};

bool retryable_status(long code)
{
    return code == 429 || code == 500 || code == 502 || code == 503 || code == 504;
}

ProviderFailure failure_of_curl(CURLcode result)
{
    switch (result) {
    case CURLE_COULDNT_CONNECT:
        return ProviderFailure::connect;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ProviderFailure::dns;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return ProviderFailure::tls;
    case CURLE_OPERATION_TIMEDOUT:
        return ProviderFailure::timeout;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return ProviderFailure::cut;
    default:
        return ProviderFailure::other;
    }
}

// The URL as it may be logged: without user information, which can hold a password.
std::string url_for_log(const std::string &url)
{
    size_t scheme = url.find("://");
    size_t host = scheme == std::string::npos ? 0 : scheme + 3;
    size_t at = url.find('@', host);
    size_t path = url.find('/', host);
    if (at == std::string::npos || (path != std::string::npos && at > path)) {
        return url;
    }
    return url.substr(0, host) + url.substr(at + 1);
}

// Clears the cancel hook when the attempt's state goes away.
struct CancelHookGuard {
    ReplyControl &control;
    ~CancelHookGuard() { control.on_cancel({}); }
};

}  // namespace

const char *provider_failure_name(ProviderFailure failure)
{
    return failure_names[static_cast<size_t>(failure)];
}

// What the transfer's callbacks leave for the coroutine that reads the reply.
struct OpenAiProvider::StreamState {
    explicit StreamState(asio::any_io_executor ex) : wake(ex) {}

    asio::steady_timer wake;            // cancelled whenever something below changes
    SseParser parser;
    std::deque<std::string> tokens;     // received, not yet given to the sink
    long status = 0;
    std::string error_body;             // the answer to a request that failed
    std::string first_bytes;            // the start of a 200 answer, for a bad stream
    Status malformed;                   // the first event that made no sense
    bool done_marker = false;           // [DONE] seen
    std::string finish_reason;
    size_t events = 0;
    bool finished = false;              // libcurl ended the transfer
    CURLcode result = CURLE_OK;
    char curl_error[CURL_ERROR_SIZE] = {};

    // Takes a piece of the body; false stops the transfer.
    bool take(long code, std::string_view bytes);
};

bool OpenAiProvider::StreamState::take(long code, std::string_view bytes)
{
    status = code;
    if (code != 200) {
        error_body.append(bytes.substr(0, max_error_body - std::min(max_error_body,
                                                                    error_body.size())));
        return true;
    }
    if (first_bytes.size() < 200) {
        first_bytes.append(bytes.substr(0, 200 - first_bytes.size()));
    }

    Status s = parser.feed(bytes, [this](const SseEvent &event) -> Status {
        events++;
        Result<CompletionChunk> chunk = parse_completion_chunk(event.data);
        if (!chunk.is_ok()) {
            return chunk.status();
        }
        if (!chunk->content.empty()) {
            tokens.push_back(std::move(chunk->content));
        }
        if (!chunk->finish_reason.empty()) {
            finish_reason = chunk->finish_reason;
        }
        done_marker = done_marker || chunk->done;
        return Status::ok();
    });
    wake.cancel();
    if (!s.is_ok()) {
        malformed = s;
        return false;
    }
    return true;
}

struct OpenAiProvider::Attempt {
    enum class Outcome { finished, cancelled, failed, sink_failed };

    Outcome outcome = Outcome::failed;
    ProviderFailure failure = ProviderFailure::other;
    bool retryable = false;
    std::string detail;                      // for the operator
    uint64_t tokens = 0;
    std::chrono::milliseconds retry_after{0};
    Status sink_status;
};

OpenAiProvider::OpenAiProvider(asio::any_io_executor executor, OpenAiSettings settings)
    : executor_(executor), settings_(std::move(settings)), multi_(executor)
{
    std::string base = settings_.base_url;
    while (!base.empty() && base.back() == '/') {
        base.pop_back();
    }
    url_ = base + "/chat/completions";
    log_url_ = url_for_log(url_);
}

void OpenAiProvider::configure(CurlTransfer &transfer, const std::string &body) const
{
    CURL *easy = transfer.easy();

    curl_easy_setopt(easy, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body.c_str());
    transfer.add_header("Content-Type: application/json");
    transfer.add_header("Accept: text/event-stream");
    if (!settings_.api_key.empty()) {
        std::string auth = "Authorization: Bearer " + settings_.api_key;
        transfer.add_header(auth.c_str());
    }

    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(settings_.request_timeout.count()));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(settings_.connect_timeout.count()));
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    // libcurl takes the system CA store by default, and proxies from http_proxy,
    // https_proxy and no_proxy in the environment
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, settings_.tls_verify ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, settings_.tls_verify ? 2L : 0L);
}

void OpenAiProvider::classify(const StreamState &state, Attempt &a) const
{
    a.retryable = false;
    if (!state.malformed.is_ok()) {
        a.failure = ProviderFailure::malformed;
        a.detail = "malformed event stream: " + state.malformed.message();
        return;
    }
    if (state.result != CURLE_OK) {
        a.failure = failure_of_curl(state.result);
        a.detail = state.curl_error[0] ? state.curl_error : curl_easy_strerror(state.result);
        a.retryable = a.tokens == 0 && (a.failure == ProviderFailure::connect ||
                                        a.failure == ProviderFailure::cut);
        return;
    }
    if (state.status != 200) {
        long code = state.status;
        a.failure = code == 401 || code == 403 ? ProviderFailure::http_auth
                    : code == 429              ? ProviderFailure::http_rate_limited
                    : code >= 500              ? ProviderFailure::http_server
                                               : ProviderFailure::http_other;
        a.detail = "HTTP " + std::to_string(code) + ": " +
                   describe_error_body(state.error_body, settings_.api_key);
        a.retryable = a.tokens == 0 && retryable_status(code);
        return;
    }
    if (state.done_marker || !state.finish_reason.empty()) {
        a.outcome = Attempt::Outcome::finished;
        return;
    }
    if (state.events == 0 && !state.first_bytes.empty()) {
        a.failure = ProviderFailure::malformed;
        a.detail = "answer is not an event stream: " +
                   describe_error_body(state.first_bytes, settings_.api_key, 80);
        return;
    }
    a.failure = ProviderFailure::cut;
    a.detail = "event stream ended before [DONE] after " + std::to_string(a.tokens) + " tokens";
    a.retryable = a.tokens == 0;
}

asio::awaitable<OpenAiProvider::Attempt> OpenAiProvider::attempt(const std::string &body,
                                                                 ReplyControl &control,
                                                                 const TokenSink &sink)
{
    Attempt a;
    StreamState state(executor_);
    CurlTransfer transfer;

    configure(transfer, body);
    curl_easy_setopt(transfer.easy(), CURLOPT_ERRORBUFFER, state.curl_error);
    transfer.on_data([&state, &transfer](std::string_view bytes) {
        return state.take(transfer.response_code(), bytes);
    });
    transfer.on_done([&state](CURLcode result) {
        state.finished = true;
        state.result = result;
        state.wake.cancel();
    });
    CancelHookGuard guard{control};
    control.on_cancel([this, &transfer, &state] {
        multi_.abort(transfer);   // closes the connection: the server stops generating
        state.wake.cancel();
    });

    stats_.requests++;
    multi_.start(transfer);
    auto first_token_deadline = std::chrono::steady_clock::now() + settings_.first_token_timeout;

    for (;;) {
        while (!state.tokens.empty() && !control.cancelled()) {
            std::string token = std::move(state.tokens.front());
            state.tokens.pop_front();
            a.tokens++;
            stats_.tokens++;
            Status s = co_await sink(std::move(token));
            if (!s.is_ok()) {
                multi_.abort(transfer);
                a.outcome = Attempt::Outcome::sink_failed;
                a.sink_status = s;
                co_return a;
            }
        }
        if (control.cancelled()) {
            multi_.abort(transfer);
            a.outcome = Attempt::Outcome::cancelled;
            co_return a;
        }
        if (state.finished) {
            break;
        }
        if (a.tokens == 0 && std::chrono::steady_clock::now() >= first_token_deadline) {
            multi_.abort(transfer);
            a.failure = ProviderFailure::first_token_timeout;
            a.detail = "no token within " +
                       std::to_string(settings_.first_token_timeout.count()) + " ms";
            co_return a;
        }
        state.wake.expires_at(a.tokens == 0 ? first_token_deadline
                                            : std::chrono::steady_clock::time_point::max());
        co_await state.wake.async_wait(use_nothrow);
    }

    classify(state, a);
    if (a.retryable) {
        curl_off_t seconds = 0;
        if (curl_easy_getinfo(transfer.easy(), CURLINFO_RETRY_AFTER, &seconds) == CURLE_OK &&
            seconds > 0) {
            a.retry_after = std::chrono::seconds(std::min<curl_off_t>(seconds, 3600));
        }
    }
    co_return a;
}

asio::awaitable<Status> OpenAiProvider::generate(const ReplyRequest &request,
                                                 ReplyControl &control, const TokenSink &sink)
{
    std::string body = completion_request_body(settings_.completion, request.history);

    for (uint32_t n = 0;; n++) {
        Attempt a = co_await attempt(body, control, sink);

        if (a.outcome == Attempt::Outcome::finished) {
            stats_.completed++;
            co_return Status::ok();
        }
        if (a.outcome == Attempt::Outcome::cancelled) {
            stats_.cancelled++;
            co_return Status::ok();
        }
        if (a.outcome == Attempt::Outcome::sink_failed) {
            stats_.failed++;
            co_return a.sink_status;
        }

        stats_.failures[static_cast<size_t>(a.failure)]++;
        std::string what = std::string(provider_failure_name(a.failure)) + ": " + a.detail;
        if (!a.retryable || n >= settings_.retries) {
            stats_.failed++;
            co_return Status::unavailable("model request to " + log_url_ + " failed after " +
                                          std::to_string(n + 1) + " attempts, " + what);
        }

        auto delay = std::min(settings_.max_backoff, settings_.backoff * (1u << std::min(n, 16u)));
        if (a.retry_after > delay) {
            delay = std::min(settings_.max_backoff, a.retry_after);
        }
        stats_.retries++;
        log_info("model request to %s failed (%s), retrying in %lld ms", log_url_.c_str(),
                 what.c_str(), static_cast<long long>(delay.count()));
        if (!co_await control.wait(delay)) {
            stats_.cancelled++;
            co_return Status::ok();
        }
    }
}

Json OpenAiProvider::stats_json() const
{
    Json body = Json::object();
    Json failures = Json::object();

    json_object_set_new(body.get(), "requests", json_integer(stats_.requests));
    json_object_set_new(body.get(), "retries", json_integer(stats_.retries));
    json_object_set_new(body.get(), "completed", json_integer(stats_.completed));
    json_object_set_new(body.get(), "cancelled", json_integer(stats_.cancelled));
    json_object_set_new(body.get(), "failed", json_integer(stats_.failed));
    json_object_set_new(body.get(), "tokens", json_integer(stats_.tokens));
    json_object_set_new(body.get(), "transfers", json_integer(multi_.running()));
    for (size_t i = 0; i < provider_failure_kinds; i++) {
        json_object_set_new(failures.get(), failure_names[i], json_integer(stats_.failures[i]));
    }
    json_object_set(body.get(), "failures", failures.get());
    return body;
}

}  // namespace signalrd
