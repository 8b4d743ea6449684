// Live fan-out of conversation events to the streams that follow them in this process.
//
// Publishers (the reply runner, the REST API) do not know who listens; listeners (the
// chat hub's streams) do not know who publishes. Fan-out across instances attaches
// here: a BusBridge (the Redis backplane, backplane.h) hears when a conversation gains
// its first local listener and loses its last, subscribes to that conversation's
// channel meanwhile, and publishes what other instances wrote on this bus.

#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "asio_util.h"
#include "chat_types.h"

namespace signalrd {

struct ConversationEvent {
    enum class Kind { fragment, deleted };

    Kind kind = Kind::fragment;
    Fragment fragment;       // for Kind::fragment
};

// What links the bus to other instances. Calls are made on the loop thread.
class BusBridge {
public:
    virtual ~BusBridge() = default;

    // The conversation gained its first local listener, or lost its last one.
    virtual void watch(const std::string &conversation_id) = 0;
    virtual void unwatch(const std::string &conversation_id) = 0;

    // Completes once events other instances publish for the conversation reach this
    // bus (or after a bounded wait, the bridge then catching up from the backlog).
    virtual asio::awaitable<void> ready(const std::string &conversation_id) = 0;
};

class FragmentBus {
public:
    // bridge (may be null) must outlive the bus's listeners.
    void set_bridge(BusBridge *bridge) { bridge_ = bridge; }

    // See BusBridge::ready(); at once without a bridge.
    asio::awaitable<void> ready(const std::string &conversation_id);

    using Listener = std::function<void(const ConversationEvent &)>;

    // Registers listener for conversation_id; returns the handle for unsubscribe().
    uint64_t subscribe(const std::string &conversation_id, Listener listener);
    void unsubscribe(const std::string &conversation_id, uint64_t handle);

    // Calls every listener of the conversation, in subscription order. A listener may
    // subscribe or unsubscribe (itself or others) while being called.
    void publish(const std::string &conversation_id, const ConversationEvent &event);

    size_t listener_count(const std::string &conversation_id) const;

private:
    // shared, so that a call can keep its listener alive should it unsubscribe itself,
    // without copying the function (an allocation) for every event
    std::unordered_map<std::string, std::map<uint64_t, std::shared_ptr<Listener>>> listeners_;
    uint64_t next_handle_ = 1;
    BusBridge *bridge_ = nullptr;
};

}  // namespace signalrd
