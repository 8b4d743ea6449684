#include <gtest/gtest.h>

#include "fragment_bus.h"

namespace signalrd {
namespace {

ConversationEvent fragment_event(const std::string &text)
{
    return {ConversationEvent::Kind::fragment, {"m", "assistant", text, "f", false}};
}

TEST(FragmentBus, DeliversOnlyToListenersOfThatConversation)
{
    FragmentBus bus;
    std::vector<std::string> a, b;

    bus.subscribe("a", [&](const ConversationEvent &e) { a.push_back(e.fragment.text); });
    bus.subscribe("b", [&](const ConversationEvent &e) { b.push_back(e.fragment.text); });
    bus.publish("a", fragment_event("one"));
    bus.publish("a", fragment_event("two"));

    EXPECT_EQ(a, (std::vector<std::string>{"one", "two"}));
    EXPECT_TRUE(b.empty());
}

TEST(FragmentBus, ListenerMayUnsubscribeItselfAndOthersWhileCalled)
{
    FragmentBus bus;
    int first_calls = 0, second_calls = 0;
    uint64_t second = 0;
    uint64_t first = 0;

    first = bus.subscribe("c", [&](const ConversationEvent &) {
        first_calls++;
        bus.unsubscribe("c", first);
        bus.unsubscribe("c", second);
    });
    second = bus.subscribe("c", [&](const ConversationEvent &) { second_calls++; });

    bus.publish("c", fragment_event("x"));
    bus.publish("c", fragment_event("y"));

    EXPECT_EQ(first_calls, 1);
    EXPECT_EQ(second_calls, 0) << "unsubscribed before its turn";
    EXPECT_EQ(bus.listener_count("c"), 0u);
}

TEST(FragmentBus, ASoleListenerMayUnsubscribeItselfAndItsCapturesStayValid)
{
    FragmentBus bus;
    auto text = std::make_shared<std::string>();
    uint64_t handle = 0;

    // the listener's own state dies with it: reading it after unsubscribing would be a
    // use after free, should the bus not keep the listener alive for the call
    handle = bus.subscribe("c", [&bus, &handle, text](const ConversationEvent &e) {
        bus.unsubscribe("c", handle);
        *text += e.fragment.text;
    });
    std::weak_ptr<std::string> watch = text;
    text.reset();

    bus.publish("c", fragment_event("x"));
    bus.publish("c", fragment_event("y"));

    EXPECT_EQ(bus.listener_count("c"), 0u);
    EXPECT_TRUE(watch.expired()) << "the listener is gone once the call returned";
}

}  // namespace
}  // namespace signalrd
