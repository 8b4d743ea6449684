// The backlog writes of many replies, gathered over one turn of the loop into one script
// call (ConversationStore::append_batch's usual case).
//
// Design note: at a thousand conversations streaming at once, each reply's writer sent
// its own EVALSHA for every fragment, and Redis paid a script call (setting up the run,
// the KEYS and ARGV tables, the reply) for each. hiredis already sent the commands of one
// loop turn in one write; what they cost inside Redis did not shrink with it. Measured
// against a private redis-server (its CPU time a fragment, one call a read), a call
// holding five replies' batches cost Redis less than half of what five calls of one did
// (6.8 us a fragment against 14.8), one of twenty about a third (5.3). Nothing waits to
// be gathered: the first append of a turn posts the flush, so the call leaves once the
// handlers already queued (the other writers woken by the same timers or replies) have
// added theirs.
//
// Only what needs no reading first goes this way: a batch sent for the first time, of a
// reply that has stored something already, whose lease is this reply's. For each
// entry the script reads the lease and the cancel key (one MGET for the whole call),
// and when the lease is the reply's appends the entry and publishes it, exactly as the
// full script does (conversation_store.cpp); when it is not, it writes nothing for that
// entry and says so, and the caller runs the full script, which finds out why.

#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis_client.h"

namespace signalrd {

// Where a batch went: its backlog entry, and whether a cancel of the reply was asked for.
struct AppendResult {
    std::string entry_id;
    bool cancel_requested = false;
};

class BacklogBatcher {
public:
    // Replies' batches per script call, at most: bounds how long one call holds Redis.
    static constexpr size_t max_entries = 64;

    // backlog_max_len: the bound of a backlog (XADD MAXLEN ~), the store's own, so that a
    // batched write trims as its full script does.
    BacklogBatcher(RedisClient &redis, std::string_view backlog_max_len);
    ~BacklogBatcher();

    BacklogBatcher(const BacklogBatcher &) = delete;
    BacklogBatcher &operator=(const BacklogBatcher &) = delete;

    // One reply's batch as one backlog entry, as views that append() reads before it
    // first suspends: the conversation's key (the lease, cancel and backlog keys and the
    // channel are named from it, as ConversationStore names them), the lease value that
    // must hold (ConversationStore::lease_value()), the entry's fields, and the payload to
    // publish without its entry id, which the script puts in front.
    struct EntryRef {
        std::string_view conversation_key;
        std::string_view lease;
        std::string_view message_id;
        std::string_view sender;
        std::string_view text;
        std::string_view fragment_id;
        std::string_view parts;
        std::string_view payload;
    };

    // Stored and published (the entry id, whether a cancel was asked for), or nullopt
    // when the lease was not the reply's and nothing was written. An error when the
    // call failed: then it may or may not have run (a lost link), as with any command.
    using Outcome = Result<std::optional<AppendResult>>;

    asio::awaitable<Outcome> append(EntryRef entry);

    struct Waiter;

private:
    // One script call being gathered. Design note: each entry's keys and arguments are
    // written in RESP as they come, into three buffers (the script wants every lease and
    // cancel key, then every backlog key, then the arguments), rather than kept as eleven
    // strings an entry to be formatted at the end.
    struct Call {
        std::string leases;
        std::string backlogs;
        std::string args;
        std::vector<std::unique_ptr<Waiter>> waiters;
    };

    void flush();
    asio::awaitable<void> send(Call call);

    RedisClient &redis_;
    std::string backlog_max_len_;
    std::vector<Call> pending_;   // the last one is being filled, each of max_entries at most
    bool flush_posted_ = false;
    std::shared_ptr<bool> alive_;   // tells a posted flush the batcher still exists
};

}  // namespace signalrd
