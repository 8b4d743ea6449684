#include "fragment_bus.h"

#include <vector>

namespace signalrd {

uint64_t FragmentBus::subscribe(const std::string &conversation_id, Listener listener)
{
    uint64_t handle = next_handle_++;
    auto &mine = listeners_[conversation_id];
    bool first = mine.empty();

    mine.emplace(handle, std::make_shared<Listener>(std::move(listener)));
    if (first && bridge_ != nullptr) {
        bridge_->watch(conversation_id);
    }
    return handle;
}

void FragmentBus::unsubscribe(const std::string &conversation_id, uint64_t handle)
{
    auto it = listeners_.find(conversation_id);
    if (it == listeners_.end()) {
        return;
    }
    it->second.erase(handle);
    if (it->second.empty()) {
        listeners_.erase(it);
        if (bridge_ != nullptr) {
            bridge_->unwatch(conversation_id);
        }
    }
}

asio::awaitable<void> FragmentBus::ready(const std::string &conversation_id)
{
    if (bridge_ != nullptr) {
        co_await bridge_->ready(conversation_id);
    }
}

void FragmentBus::publish(const std::string &conversation_id, const ConversationEvent &event)
{
    auto it = listeners_.find(conversation_id);
    if (it == listeners_.end()) {
        return;
    }
    // the usual case, one stream following the conversation
    if (it->second.size() == 1) {
        std::shared_ptr<Listener> only = it->second.begin()->second;
        (*only)(event);
        return;
    }

    // listeners may change the map while called: walk a copy of the handles and look
    // each one up again
    std::vector<uint64_t> handles;
    for (const auto &entry : it->second) {
        handles.push_back(entry.first);
    }
    for (uint64_t handle : handles) {
        auto conv = listeners_.find(conversation_id);
        if (conv == listeners_.end()) {
            return;
        }
        auto l = conv->second.find(handle);
        if (l != conv->second.end()) {
            std::shared_ptr<Listener> keep = l->second;
            (*keep)(event);
        }
    }
}

size_t FragmentBus::listener_count(const std::string &conversation_id) const
{
    auto it = listeners_.find(conversation_id);
    return it == listeners_.end() ? 0 : it->second.size();
}

}  // namespace signalrd
