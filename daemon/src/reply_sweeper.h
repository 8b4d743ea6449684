// Ends replies whose instance died. Every instance looks, so whoever notices first ends
// the reply (the lease claim in Redis makes sure only one does):
//
//   - at start, and whenever Redis comes back, replies whose lease names this instance
//     (its previous run, killed) are ended at once: nothing here runs them;
//   - every two seconds, replies whose lease deadline in P:replies has passed and whose
//     lease is gone are ended, three seconds after this instance's own Redis link came
//     back at the earliest, so that a generator cut off by the same outage has the time
//     to renew its lease first.
//
// Ending means a final "Generation was interrupted." fragment, stored and published to
// every instance's streams (ReplyRunner::recover), so no reply is left without an end.

#pragma once

#include <chrono>
#include <memory>

#include "conversation_store.h"
#include "redis_client.h"
#include "reply_runner.h"

namespace signalrd {

class ReplySweeper {
public:
    static constexpr std::chrono::milliseconds period{2000};
    static constexpr std::chrono::milliseconds grace_after_reconnect{3000};

    ReplySweeper(asio::any_io_executor executor, ConversationStore &store, ReplyRunner &runner,
                 RedisClient &redis);

    void start();
    void stop();

    // Redis (the command link) is up again: look for this instance's leases now.
    void on_redis_up();

    uint64_t ended() const { return ended_; }

private:
    asio::awaitable<void> loop(std::shared_ptr<bool> alive);
    asio::awaitable<void> sweep(bool own_only);
    asio::awaitable<void> check(const ListedReply &reply, bool own_only);

    asio::any_io_executor executor_;
    ConversationStore &store_;
    ReplyRunner &runner_;
    RedisClient &redis_;
    asio::steady_timer timer_;
    std::chrono::steady_clock::time_point up_since_{};
    bool own_pass_due_ = true;
    uint64_t ended_ = 0;
    std::shared_ptr<bool> alive_;
};

}  // namespace signalrd
