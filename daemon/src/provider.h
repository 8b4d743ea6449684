// The interface between a reply and the model that writes it. Two providers implement
// it: the demo (demo_provider.h) and the OpenAI-compatible streaming client
// (openai_provider.h), chosen by ai_base_url.

#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "asio_util.h"
#include "chat_types.h"
#include "status.h"

namespace signalrd {

struct ReplyRequest {
    std::string conversation_id;
    std::vector<ChatTurn> history;   // oldest first; the last is the prompt to answer
};

// How a running reply is stopped. One per reply, used on the loop thread only.
class ReplyControl {
public:
    explicit ReplyControl(asio::any_io_executor ex) : timer_(ex) {}

    bool cancelled() const { return cancelled_; }

    // Asks the provider to stop; a wait() in progress returns false at once, and the
    // hook set by on_cancel() runs before cancel() returns.
    void cancel()
    {
        cancelled_ = true;
        timer_.cancel();
        if (hook_) {
            std::function<void()> hook = hook_;   // the hook may replace itself
            hook();
        }
    }

    // Sets what cancel() does besides waking wait(), e.g. aborting a transfer at once;
    // an empty function removes it. The provider that sets one removes it before the
    // state it refers to goes away.
    void on_cancel(std::function<void()> hook) { hook_ = std::move(hook); }

    // Waits for d unless cancelled. Returns false when the reply was cancelled.
    asio::awaitable<bool> wait(std::chrono::nanoseconds d)
    {
        return wait_until(std::chrono::steady_clock::now() + d);
    }

    // Waits until t, likewise.
    asio::awaitable<bool> wait_until(std::chrono::steady_clock::time_point t)
    {
        if (cancelled_) {
            co_return false;
        }
        timer_.expires_at(t);
        co_await timer_.async_wait(use_nothrow);
        co_return !cancelled_;
    }

private:
    asio::steady_timer timer_;
    bool cancelled_ = false;
    std::function<void()> hook_;
};

// Receives each token as the model produces it. A failed Status (the store is down)
// tells the provider to stop.
using TokenSink = std::function<asio::awaitable<Status>(std::string token)>;

class Provider {
public:
    virtual ~Provider() = default;

    // Streams the reply to request into sink until done, cancelled or failed.
    // Returns ok when the model finished (or the reply was cancelled), otherwise why
    // it failed; the caller ends the message either way.
    virtual asio::awaitable<Status> generate(const ReplyRequest &request, ReplyControl &control,
                                             const TokenSink &sink) = 0;

    virtual const char *name() const = 0;
};

}  // namespace signalrd
