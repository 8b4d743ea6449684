// Conversations in Redis. What Redis holds is the truth: a daemon that dies loses
// nothing a client was shown, because every fragment is stored before it is sent.
//
// Keys, under the configured prefix P (the braces are a Redis Cluster hash tag, so that
// one conversation's keys share a slot):
//
//   P:conversation:{ID}           hash: owner, name, createdAt, createdMs
//   P:conversation:{ID}:messages  list of finished messages (JSON records, in order)
//   P:conversation:{ID}:backlog   stream of fragments: id, sender, text, fragmentId,
//                                 isFinal ("1"/"0"); expires backlog_ttl seconds after
//                                 a reply ends, lives on while one runs
//   P:conversation:{ID}:reply     the reply lease: "<instance> <reply message id>",
//                                 15 s, renewed while the reply runs; it keeps a second
//                                 reply from starting and dies with a dead instance. The
//                                 instance name is stable across restarts (host and
//                                 worker socket), so a restarted daemon knows the leases
//                                 its previous run left and need not wait them out
//   P:user:USER:conversations     sorted set of the user's conversation ids by createdMs
//
// Multi-key updates run as Lua scripts or MULTI/EXEC, so that readers never see half a
// turn. Every method is a coroutine on the daemon's loop.

#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "chat_types.h"
#include "redis_client.h"

namespace signalrd {

inline constexpr std::chrono::milliseconds reply_lease_duration{15000};

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

    // Appends a fragment of the reply in progress. not_found if the conversation is gone.
    asio::awaitable<Status> append_fragment(const std::string &id, const Fragment &fragment);

    // Appends several fragments, in order, in one step (one round trip).
    asio::awaitable<Status> append_fragments(const std::string &id,
                                             const std::vector<Fragment> &fragments);

    // Ends a reply: stores its final fragment and the finished message, starts the
    // backlog's expiry and releases the lease, in one step.
    asio::awaitable<Status> complete_reply(const std::string &id, const StoredMessage &message,
                                           const Fragment &final_fragment);

    // Keeps the lease of reply_id alive; not_found once it is no longer ours.
    asio::awaitable<Status> renew_lease(const std::string &id, const std::string &reply_id);

    // Takes the lease for reply_id when nobody holds it, or when this instance's
    // previous run left it; conflict otherwise.
    asio::awaitable<Status> claim_lease(const std::string &id, const std::string &reply_id);

    // The last history_messages finished turns.
    asio::awaitable<Result<std::vector<ChatTurn>>> history(const std::string &id);

    std::string conversation_key(const std::string &id) const;
    std::string messages_key(const std::string &id) const;
    std::string backlog_key(const std::string &id) const;
    std::string lease_key(const std::string &id) const;
    std::string user_key(const std::string &owner) const;

private:
    std::string lease_value(const std::string &reply_id) const;

    RedisClient &redis_;
    std::string prefix_;
    std::string instance_;
    uint32_t history_messages_;
    uint32_t backlog_ttl_;
};

}  // namespace signalrd
