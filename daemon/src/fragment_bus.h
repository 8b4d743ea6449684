// Live fan-out of conversation events to the streams that follow them in this process.
//
// Publishers (the reply runner, the REST API) do not know who listens; listeners (the
// chat hub's streams) do not know who publishes.
//
// TODO(docs/operations.md): fan-out reaches this process only. A Redis pub/sub bridge
// will attach here, publishing local events to other instances and theirs locally.

#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>

#include "chat_types.h"

namespace signalrd {

struct ConversationEvent {
    enum class Kind { fragment, deleted };

    Kind kind = Kind::fragment;
    Fragment fragment;       // for Kind::fragment
};

class FragmentBus {
public:
    using Listener = std::function<void(const ConversationEvent &)>;

    // Registers listener for conversation_id; returns the handle for unsubscribe().
    uint64_t subscribe(const std::string &conversation_id, Listener listener);
    void unsubscribe(const std::string &conversation_id, uint64_t handle);

    // Calls every listener of the conversation, in subscription order. A listener may
    // subscribe or unsubscribe (itself or others) while being called.
    void publish(const std::string &conversation_id, const ConversationEvent &event);

    size_t listener_count(const std::string &conversation_id) const;

private:
    std::unordered_map<std::string, std::map<uint64_t, Listener>> listeners_;
    uint64_t next_handle_ = 1;
};

}  // namespace signalrd
