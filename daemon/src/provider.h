// The interface between a reply and the model that writes it. The demo provider
// implements it now; an OpenAI-compatible streaming provider (libcurl multi on the same
// loop) will implement it later, chosen by ai_base_url.

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

    // Asks the provider to stop; a wait() in progress returns false at once.
    void cancel()
    {
        cancelled_ = true;
        timer_.cancel();
    }

    // Waits for d unless cancelled. Returns false when the reply was cancelled.
    asio::awaitable<bool> wait(std::chrono::nanoseconds d)
    {
        if (cancelled_) {
            co_return false;
        }
        timer_.expires_after(d);
        co_await timer_.async_wait(use_nothrow);
        co_return !cancelled_;
    }

private:
    asio::steady_timer timer_;
    bool cancelled_ = false;
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
