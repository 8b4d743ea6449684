// Runs assistant replies: takes tokens from the provider, shows each fragment to the
// live streams of this process at once and stores it in Redis behind, in order. One
// reply per conversation at a time, guarded across instances by the lease in Redis
// (see conversation_store.h). Other instances' streams get a fragment once it is
// stored (through its PUBLISH).
//
// Design note, shown before stored: a fragment's Redis write (the backlog script, then
// the answer back) took most of its latency, and at a thousand replies its queue in
// Redis set the tail. What streams of this process were shown and Redis does not hold
// yet is the reply's hold-back queue and the batch being written (unstored()): a stream
// that starts meanwhile reads the snapshot and then those, so it misses nothing and
// gets nothing twice. The price: should this daemon die, or Redis stay away past the
// retries, or the lease be taken over, a client may have been shown the last few
// fragments (at most hold_back_limit) that the stored message lacks. A resuming client
// still gets exactly what follows its last fragment id. The final fragment's write (the
// finished message, the lease released) is queued on the Redis connection in the same
// turn of the loop as the final is shown, and the store's scripts are loaded on every
// connection first (RedisClient::preload), so that a client that reads the chat or
// posts its next turn through this daemon once it saw the final finds the reply ended:
// its commands reach Redis behind that write. Through another instance, the reply shows
// once stored (usually within a millisecond). With store_before_show a
// fragment is shown only once Redis holds it, as before, at the cost of that round trip.
//
// By default a reply's last token is held back until the provider says whether another
// follows, so that the last fragment can carry isFinal and text (the demo provider).
// With live tokens, every token is queued as it arrives and a reply that the model
// finished ends with an empty final fragment: a streaming model only says it is done
// after its last token, and holding each token until the next would delay them all.
// A reply that is cancelled ends with a final fragment saying so; one that fails, with
// a generic apology; one that a shutdown or a crash cut short, with a final fragment
// saying it was interrupted. The stored message's text is always the concatenation of
// its fragments' texts.
//
// Between the model and Redis sits one bounded queue per reply, the hold-back queue:
// tokens wait there while their backlog write is in flight or Redis is away. A writer
// takes whatever queued (at most BacklogBatching::max_fragments) as one batch (one
// backlog entry, one script, see conversation_store.h), retries it while Redis is
// unreachable (with store_before_show, only then shows them). This is the only
// batching: nothing waits to be batched unless max_delay is set, which lets the writer
// wait that long after a first token for more. At the bound (hold_back_limit
// fragments) the provider is made to wait: the token sink does not return until there
// is room, so no token is dropped and memory stays bounded; a model that streams over
// HTTP is then simply read more slowly. A cancel wakes a waiting sink at once; tokens
// that arrive after a cancel are dropped. A batch whose outcome is unknown (the link
// dropped mid-command) is sent again as it was; the store recognises a repeat, so
// nothing is stored twice.

#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "conversation_store.h"
#include "fragment_bus.h"
#include "provider.h"

namespace signalrd {

inline constexpr const char *cancelled_text = "Generation was cancelled.";
inline constexpr const char *interrupted_text = "Generation was interrupted.";
inline constexpr const char *failed_text = "Sorry, the reply could not be completed.";

// How the writer groups a reply's queued fragments into backlog writes.
struct BacklogBatching {
    uint32_t max_fragments = 256;         // per write, at most (at least 1)
    std::chrono::milliseconds max_delay{0};   // how long a write may wait for more
};

class ReplyRunner {
public:
    static constexpr size_t default_hold_back_limit = 1024;

    ReplyRunner(asio::any_io_executor executor, ConversationStore &store, FragmentBus &bus,
                Provider &provider);

    // Bounds each reply's hold-back queue (at least 1).
    void set_hold_back_limit(size_t limit) { hold_back_limit_ = limit == 0 ? 1 : limit; }

    void set_batching(BacklogBatching batching) { batching_ = batching; }

    // With live, tokens are not held back (see above): for streaming models.
    void set_live_tokens(bool live) { live_tokens_ = live; }

    // Shows a fragment only once Redis holds it (see the design note above).
    void set_store_before_show(bool after) { store_before_show_ = after; }

    // Publishes the user turn just stored and starts the reply whose lease it holds.
    void start(const NewTurn &turn);

    // Stops the conversation's reply if it runs here; returns whether one did.
    bool cancel(const std::string &conversation_id);

    // Stops that reply if it is the one running here (a cancel from another instance).
    bool cancel_reply(const std::string &conversation_id, const std::string &reply_id);

    bool running(const std::string &conversation_id) const;

    // The fragments of the conversation's reply that streams here were shown and Redis
    // has not confirmed yet, in order: what a stream that starts now finds in no
    // snapshot. (A fragment leaves the list when its write's answer is read, on the
    // connection that reads snapshots too: a snapshot read before has it here, one read
    // after has it stored.)
    std::vector<Fragment> unstored(const std::string &conversation_id) const;

    // Whether the conversation's reply has shown its final fragment and waits for Redis
    // to store it: over, as far as a new turn is concerned (its write goes behind).
    bool ending(const std::string &conversation_id) const;
    size_t active() const { return replies_.size(); }

    // Fragments queued toward Redis, over every reply.
    size_t held_back() const;

    // Redis is back: renew every lease now rather than at the next period.
    void on_redis_up();

    // Interrupts every reply; they end (and are stored) shortly after.
    void shutdown();

    // Whether the snapshot shows a reply nobody will finish: fragments of no finished
    // message, and no lease, or a lease this instance's previous run left.
    bool abandoned(const ConversationSnapshot &snapshot) const;

    // Ends an abandoned reply: takes its lease and stores a final "interrupted"
    // fragment, which live streams then receive. listed_reply_id names the reply when no
    // fragment of it was stored (its instance died before the first one); the backlog's
    // unfinished fragments win over it. Does nothing for a reply that runs here, runs
    // under another live instance's lease, or has ended.
    asio::awaitable<Status> recover(const ConversationSnapshot &snapshot,
                                    const std::string &listed_reply_id = "");

private:
    struct Reply;

    asio::awaitable<void> run(std::shared_ptr<Reply> reply, ReplyRequest request);
    asio::awaitable<void> keep_lease(std::shared_ptr<Reply> reply);
    bool must_wait(const Reply &reply) const;
    asio::awaitable<void> wait_for_room(Reply &reply);
    Status push(Reply &reply, std::string text);
    asio::awaitable<void> write_queue(std::shared_ptr<Reply> reply);
    asio::awaitable<void> gather(Reply &reply);
    // On success the batch is stored (and with store_before_show, moved to the bus).
    asio::awaitable<Status> write_batch(Reply &reply, std::vector<Fragment> &batch);
    asio::awaitable<bool> retry_pause(Reply &reply, int attempt);
    asio::awaitable<void> finish(Reply &reply, std::string final_text);
    asio::awaitable<Status> store_end(Reply &reply, const StoredMessage &m, const Fragment &f);

    asio::any_io_executor executor_;
    ConversationStore &store_;
    FragmentBus &bus_;
    Provider &provider_;
    size_t hold_back_limit_ = default_hold_back_limit;
    BacklogBatching batching_;
    bool live_tokens_ = false;
    bool store_before_show_ = false;
    bool stopping_ = false;
    std::unordered_map<std::string, std::shared_ptr<Reply>> replies_;   // by conversation
};

}  // namespace signalrd
