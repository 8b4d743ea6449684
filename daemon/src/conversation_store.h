// Conversations in Redis. What Redis holds is the truth: a daemon that dies loses at
// most the fragments it had not stored yet (reply_runner.h says which a client may
// have been shown, and store_before_show avoids even that).
//
// Keys, under the configured prefix P (the braces are a Redis Cluster hash tag, so that
// one conversation's keys share a slot):
//
//   P:conversation:{ID}           hash: owner, name, createdAt, createdMs
//   P:conversation:{ID}:messages  list of finished messages (JSON records, in order)
//   P:conversation:{ID}:backlog   stream of fragments: id, sender, text, fragmentId,
//                                 isFinal ("1"/"0"); expires backlog_ttl seconds after
//                                 a reply ends, lives on while one runs; holds the
//                                 fragments of the last history_messages messages only
//   P:conversation:{ID}:starts    list of the backlog entry ids where the newest
//                                 history_messages messages start (the first message
//                                 of a conversation is not listed); expires with the
//                                 backlog. Where a new message's script trims the
//                                 backlog to (XTRIM MINID), without walking it
//   P:conversation:{ID}:reply     the reply lease: "<instance> <reply message id>",
//                                 15 s, renewed while the reply runs; it keeps a second
//                                 reply from starting and dies with a dead instance. The
//                                 instance name is stable across restarts (host and
//                                 worker socket), so a restarted daemon knows the leases
//                                 its previous run left and need not wait them out.
//                                 Every script that sets it checks that the
//                                 conversation exists and the reply has not ended, and
//                                 ending a reply or deleting its conversation deletes
//                                 it: while it holds a reply's value, that reply may
//                                 write, which spares each backlog write those checks
//   P:conversation:{ID}:cancel    the id of a reply someone asked to cancel, 60 s; the
//                                 generating instance also reads it when it renews its
//                                 lease, should the pub/sub message have missed it
//   P:user:USER:conversations     sorted set of the user's conversation ids by createdMs
//   P:replies                     sorted set of "<conversation id> <reply id>" for every
//                                 reply running, by the time its lease runs out (ms):
//                                 where every instance looks for replies whose instance
//                                 died
//
// A backlog entry may hold several fragments of one reply (written together because
// they queued while the previous write was in flight, or while Redis was away): "text"
// is their texts joined, "fragmentId" the last one's id, and "parts" lists each one as
// "fragmentId:endOffset" separated by commas. Readers split such an entry back into its
// fragments, so a resume point may be any fragment a client saw, coalesced or not.
//
// Every write that clients must see live also PUBLISHes, in the same script, on
// P:conversation:{ID}:channel: "<entry id> <JSON>", where the JSON is
// {"type":"fragments","origin":O,"fragments":[...]} or {"type":"deleted","origin":O}.
// The entry id lets a subscriber that lost messages read the backlog from there on.
//
// Multi-key updates run as Lua scripts (called by their SHA1, see RedisScript) or
// MULTI/EXEC, so that readers never see half a turn. Every method is a coroutine on the
// daemon's loop.

#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "backlog_batcher.h"
#include "chat_types.h"
#include "redis_client.h"

namespace signalrd {

inline constexpr std::chrono::milliseconds reply_lease_duration{15000};

// What the writer of a batch knows that the store would otherwise read from the backlog.
// Only a writer that keeps its reply's order itself may set them: with first_send, a
// repeat of the batch is not recognised.
struct AppendHints {
    bool first_send = false;       // this batch was never sent before
    bool starts_message = false;   // with first_send: no fragment of its message is stored
};

// A member of P:replies.
struct ListedReply {
    std::string conversation_id;
    std::string reply_id;
};

// Fragments read back from the backlog, split out of their entries, with the id of the
// last entry read ("" when none).
struct BacklogRead {
    std::vector<Fragment> fragments;
    std::string last_entry_id;
    size_t entries = 0;
};

// A user turn just stored, with what is needed to start the reply to it.
struct NewTurn {
    std::string conversation_id;
    StoredMessage user_message;
    Fragment user_fragment;
    std::string reply_id;             // the assistant message id, leased
    std::vector<ChatTurn> history;    // the last turns, ending with this one
};

class ConversationStore {
public:
    ConversationStore(RedisClient &redis, std::string prefix, std::string instance,
                      uint32_t history_messages, uint32_t backlog_ttl);

    // Creates a conversation owned by owner whose first turn is text.
    asio::awaitable<Result<NewTurn>> create(const std::string &owner, const std::string &text);

    // Adds a user turn. not_found when the conversation is absent or not owner's;
    // conflict when a reply is running.
    asio::awaitable<Result<NewTurn>> add_turn(const std::string &id, const std::string &owner,
                                              const std::string &text);

    // Reads a conversation whole; exists is false when there is none.
    asio::awaitable<Result<ConversationSnapshot>> load(const std::string &id);

    // The owner's conversations, oldest first, messages included when asked.
    asio::awaitable<Result<std::vector<ConversationSnapshot>>> list(const std::string &owner,
                                                                   bool with_messages);

    // Deletes a conversation and its keys. not_found when absent or not owner's.
    asio::awaitable<Status> remove(const std::string &id, const std::string &owner);

    // Appends one fragment as it is, without lease checks and without publishing. Tests
    // use it to leave the traces of an instance that died. not_found if the conversation
    // is gone.
    asio::awaitable<Status> append_fragment(const std::string &id, const Fragment &fragment);

    // Appends fragments of one reply (not empty, none final, same message id) as one
    // backlog entry and publishes them, in one script. Safe to repeat after an unknown
    // outcome: a batch whose last fragment is already the newest entry is not stored
    // again (unless hints says it was never sent). A lease that ran out while Redis was
    // away is taken back if nobody else took it. not_found: the conversation is gone;
    // conflict: the reply was ended, or taken over by another instance.
    asio::awaitable<Result<AppendResult>> append_batch(const std::string &id,
                                                       const std::vector<Fragment> &batch,
                                                       AppendHints hints = {});

    // Ends a reply: stores its final fragment and the finished message, publishes the
    // final fragment, starts the backlog's expiry and releases the lease, in one step.
    // Safe to repeat. conflict: another instance holds the lease or ended the reply.
    // hints as for append_batch (the final fragment being the batch); the default checks
    // everything.
    asio::awaitable<Status> complete_reply(const std::string &id, const StoredMessage &message,
                                           const Fragment &final_fragment,
                                           AppendHints hints = {});

    // Keeps the lease of reply_id alive (taking it back if it ran out while Redis was
    // away and the reply is not ended). The value says whether a cancel was asked for;
    // not_found once the lease is another's or the reply has ended.
    asio::awaitable<Result<bool>> renew_lease(const std::string &id, const std::string &reply_id);

    // Takes the lease for reply_id when nobody holds it, or when this instance's
    // previous run left it; conflict otherwise.
    asio::awaitable<Status> claim_lease(const std::string &id, const std::string &reply_id);

    // Asks the instance running the conversation's reply to cancel it: a message on its
    // instance channel and the cancel key. false when no reply runs.
    asio::awaitable<Result<bool>> request_cancel(const std::string &id);

    // Replies in P:replies whose lease deadline is before now_ms (all of them when
    // now_ms is 0), at most limit.
    asio::awaitable<Result<std::vector<ListedReply>>> listed_replies(int64_t now_ms,
                                                                     size_t limit);

    // Drops a reply from P:replies (it has ended, or its conversation is gone).
    asio::awaitable<Status> unlist_reply(const ListedReply &reply);

    // Backlog entries after entry after_entry_id ("": from the first), at most count.
    asio::awaitable<Result<BacklogRead>> backlog_since(const std::string &id,
                                                       const std::string &after_entry_id,
                                                       size_t count);

    // The id of the newest backlog entry, "" when the backlog is empty.
    asio::awaitable<Result<std::string>> last_backlog_entry(const std::string &id);

    // The random tag this process puts in what it publishes, to know its own messages.
    const std::string &origin() const { return origin_; }
    // How every fragments message this process publishes begins, origin included.
    const std::string &own_fragments_prefix() const { return own_fragments_prefix_; }
    const std::string &instance() const { return instance_; }
    const std::string &prefix() const { return prefix_; }

    // The last history_messages finished turns.
    asio::awaitable<Result<std::vector<ChatTurn>>> history(const std::string &id);

    std::string conversation_key(const std::string &id) const;
    std::string messages_key(const std::string &id) const;
    std::string backlog_key(const std::string &id) const;
    std::string starts_key(const std::string &id) const;
    std::string lease_key(const std::string &id) const;
    std::string user_key(const std::string &owner) const;
    std::string cancel_key(const std::string &id) const;
    std::string replies_key() const;
    std::string conversation_channel(const std::string &id) const;
    std::string instance_channel(const std::string &instance) const;

    // The payload of a "fragments" message, without its entry id.
    std::string fragments_payload(const std::vector<Fragment> &fragments) const;

private:
    std::string lease_value(const std::string &reply_id) const;

    RedisClient &redis_;
    std::string prefix_;
    std::string instance_;
    uint32_t history_messages_;
    uint32_t backlog_ttl_;
    std::string origin_;
    std::string own_fragments_prefix_;
    BacklogBatcher batcher_;   // append_batch's usual case, many replies a call
};

// Splits "<entry id> <JSON>" as published on a conversation channel.
bool split_channel_payload(const std::string &payload, std::string &entry_id, std::string &json);

// Orders Redis stream ids ("ms-seq"): negative, zero or positive like strcmp.
int compare_entry_ids(const std::string &a, const std::string &b);

}  // namespace signalrd
