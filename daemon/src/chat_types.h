// The chat domain's values: fragments as clients see them, messages as Redis keeps
// them, and a conversation read back in one piece.

#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "json.h"
#include "status.h"

namespace signalrd {

inline constexpr const char *sender_user = "user";
inline constexpr const char *sender_assistant = "assistant";

// One turn of a conversation as a model provider sees it.
struct ChatTurn {
    std::string role;          // "user" or "assistant"
    std::string text;
};

// A ClientMessageFragment: part (or, when replayed, all) of one message.
struct Fragment {
    std::string message_id;
    std::string sender;        // "user" or "assistant"
    std::string text;
    std::string fragment_id;
    bool is_final = false;
};

// {"id", "sender", "text", "fragmentId", "isFinal"}, camelCase as ASP.NET Core writes.
Json fragment_to_json(const Fragment &fragment);

// Appends the compact text of fragment_to_json(fragment) to out, byte for byte what
// jansson writes, without building the object. false (out then holds a partial text)
// when a field is not valid UTF-8, which jansson would not take either.
bool append_fragment_json(std::string &out, const Fragment &fragment);

// Appends s as a JSON string literal, escaped as jansson escapes it; false when s is not
// valid UTF-8.
bool append_json_string(std::string &out, std::string_view s);

// A finished message. fragments lists, in order, each fragment's id and the byte offset
// in text where that fragment ends, so that any resume point inside the message can be
// answered with exactly the rest of the text, long after the backlog has expired.
struct StoredMessage {
    std::string id;
    std::string role;          // "user" or "assistant"
    std::string text;
    std::string parent_id;     // empty: none
    int64_t created_ms = 0;
    std::vector<std::pair<std::string, size_t>> fragments;

    const std::string &final_fragment_id() const { return fragments.back().first; }
};

// The Redis record of a message: the public fields plus "fragments".
std::string message_to_record(const StoredMessage &message);
Result<StoredMessage> message_from_record(const std::string &record);

// The public form: {"id", "text", "role", "parentMessageId", "createdAt"}.
Json message_to_api(const StoredMessage &message);

// A conversation as read in one transaction.
struct ConversationSnapshot {
    bool exists = false;
    std::string id;
    std::string owner;
    std::string name;
    int64_t created_ms = 0;
    std::vector<StoredMessage> messages;   // finished messages, in order
    std::vector<Fragment> backlog;         // the backlog stream, in order
    bool reply_running = false;            // a reply lease is held by some instance
    bool lease_is_ours = false;            // ... by this instance (or its previous run)
};

// Fragments of the message being generated: backlog entries of no finished message.
std::vector<Fragment> unfinished_fragments(const ConversationSnapshot &snapshot);

// {"id", "name", "createdAt"} and, when with_messages, "messages".
Json conversation_to_api(const ConversationSnapshot &snapshot, bool with_messages);

// A conversation name from its first prompt: at most max_bytes, cut on a UTF-8
// character boundary, whitespace runs folded to one space.
std::string conversation_name(const std::string &prompt, size_t max_bytes = 80);

}  // namespace signalrd
