// Runs assistant replies: takes tokens from the provider, stores each fragment in Redis
// and only then publishes it to live streams, so that whatever a client was shown can
// be replayed after any failure. One reply per conversation at a time, guarded across
// instances by the lease in Redis (see conversation_store.h).
//
// Fragments are stored in batches: while one write to Redis is in flight, the tokens
// that arrive queue behind it and go in the next write, as one Redis call of at most
// max_fragments (group commit); max_delay, when set, also lets a write wait that long
// for more. A fragment is published only once its write succeeded, so a client is
// never shown what a crash could lose, and a resume never repeats or skips text.
//
// By default a reply's last token is held back until the provider says whether another
// follows, so that the last fragment can carry isFinal and text (the demo provider).
// With live tokens, every token is sent as it arrives and a reply that the model
// finished ends with an empty final fragment: a streaming model only says it is done
// after its last token, and holding each token until the next would delay them all.
//
// A reply that is cancelled ends with a final fragment saying so; one that fails, with
// a generic apology; one that a shutdown or a crash cut short, with a final fragment
// saying it was interrupted. The stored message's text is always the concatenation of
// its fragments' texts.

#pragma once

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

struct BacklogBatching {
    uint32_t max_fragments = 32;
    std::chrono::milliseconds max_delay{0};
};

class ReplyRunner {
public:
    ReplyRunner(asio::any_io_executor executor, ConversationStore &store, FragmentBus &bus,
                Provider &provider);

    void set_batching(BacklogBatching batching) { batching_ = batching; }
    void set_live_tokens(bool live) { live_tokens_ = live; }

    // Publishes the user turn just stored and starts the reply whose lease it holds.
    void start(const NewTurn &turn);

    // Stops the conversation's reply if it runs here; returns whether one did.
    bool cancel(const std::string &conversation_id);

    bool running(const std::string &conversation_id) const;
    size_t active() const { return replies_.size(); }

    // Interrupts every reply; they end (and are stored) shortly after.
    void shutdown();

    // Whether the snapshot shows a reply nobody will finish: fragments of no finished
    // message, and no lease, or a lease this instance's previous run left.
    bool abandoned(const ConversationSnapshot &snapshot) const;

    // Ends an abandoned reply: takes its lease and stores a final "interrupted"
    // fragment, which live streams then receive. Does nothing for any other snapshot.
    asio::awaitable<Status> recover(const ConversationSnapshot &snapshot);

private:
    struct Reply;

    asio::awaitable<void> run(std::shared_ptr<Reply> reply, ReplyRequest request);
    asio::awaitable<void> keep_lease(std::shared_ptr<Reply> reply);
    Status emit(const std::shared_ptr<Reply> &reply, std::string text);
    asio::awaitable<void> flush(std::shared_ptr<Reply> reply);
    asio::awaitable<void> drain(Reply &reply);
    asio::awaitable<void> finish(Reply &reply, std::string final_text);

    asio::any_io_executor executor_;
    ConversationStore &store_;
    FragmentBus &bus_;
    Provider &provider_;
    BacklogBatching batching_;
    bool live_tokens_ = false;
    std::unordered_map<std::string, std::shared_ptr<Reply>> replies_;   // by conversation
};

}  // namespace signalrd
