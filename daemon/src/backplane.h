// The Redis backplane: what one instance needs from the others, over Redis pub/sub.
//
// Channels, under the key prefix P (see docs/backplane.md):
//
//   P:conversation:{ID}:channel     a conversation's new fragments and its deletion,
//                                   published by the scripts that store them
//                                   (conversation_store.h)
//   P:instance:NAME                 commands for one instance: cancel a reply it runs
//   P:hub:HUB:all                   hub messages for every connection of the hub
//   P:hub:HUB:user:USER             ... for every connection of that user
//   P:hub:HUB:group:GROUP           ... for every connection in that group
//   P:hub:HUB:connection:ID         ... for one connection, and its group changes
//
// The user and connection channels also carry control messages of the push API
// (push_api.h): group changes for every connection of a user, leaving every group,
// and closing connections.
//
// An instance subscribes only to what it holds: its own instance channel, the channels
// of the conversations its streams follow (while they do, and 5 s beyond, so a client
// that resumes at once does not make it unsubscribe and subscribe again), and the hub,
// user, group and connection channels of the connections it holds. It uses a Redis
// connection of its own (a subscribed connection can do nothing else).
//
// Design note, memory per connection: an idle instance holds little else than its
// connections, so what it keeps per connection is kept once. A connection's id is the key
// of one hash; its hub is a pointer to the interned name; its user and its groups are
// pointers to one member list per (hub, user) and per (hub, group), each connection
// knowing its place in them, so that leaving is O(1). The connection and user channels
// (one each per connection or user) are not kept as channel records: their names follow
// from the connection and user tables whenever they are needed (SUBSCRIBE after a
// reconnect, UNSUBSCRIBE when the last holder goes). They stay one Redis channel per
// connection and per user, rather than hashed buckets, so that PUBLISH still counts the
// instances that hold the audience (the push API's "instances", 0 for nobody) and no
// instance reads messages for connections it does not hold.
//
// Design note, group sends: a group's member list keeps, next to it, its ids grouped by
// worker link (HubRegistry::group_by_link) as they were at the registry's generation;
// while neither the members nor the registry changed, a message to the group is one
// MULTICAST per link with no copy and no lookup per member.
//
// Pub/sub forgets what it cannot deliver, so a conversation stream never depends on it
// alone: a stream starts only once its conversation's subscription is confirmed (then
// reads the stored conversation; what is published later arrives here), and when the
// pub/sub link comes back after a drop, every followed conversation is read from the
// backlog after the last entry seen, while new messages wait in a bounded buffer, so
// that the two join without a gap. Streams drop what they already had (chat_hub.h), so
// nothing reaches a client twice either.
//
// Hub messages are fire-and-forget, as in ASP.NET Core's Redis backplane: a connection
// that is not connected while one is published does not get it.

#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "conversation_store.h"
#include "fragment_bus.h"
#include "hub_registry.h"
#include "redis_client.h"

namespace signalrd {

// Who a hub message is for.
struct HubAudience {
    enum class Kind { all, user, group, connection };

    Kind kind = Kind::all;
    std::string hub;
    std::string name;   // the user, group or connection id; empty for all
};

class Backplane final : public BusBridge {
public:
    static constexpr std::chrono::milliseconds ready_timeout{3000};
    static constexpr std::chrono::milliseconds linger{5000};
    // Live messages of one conversation held while it catches up from the backlog.
    static constexpr size_t max_buffered_fragments = 10000;

    using CancelHandler = std::function<void(const std::string &conversation_id,
                                             const std::string &reply_id)>;
    // An instance-channel message of another type than "cancel" (type: its "type").
    using InstanceHandler = std::function<void(const std::string &type, const json_t *message)>;

    // commands: the shared command connection (for PUBLISH and backlog reads);
    // endpoint: where the subscriber connection goes.
    Backplane(asio::any_io_executor executor, RedisEndpoint endpoint, RedisClient &commands,
              ConversationStore &store, FragmentBus &bus, HubRegistry &registry);
    ~Backplane() override;

    void set_cancel_handler(CancelHandler handler) { on_cancel_ = std::move(handler); }
    void set_instance_handler(InstanceHandler handler) { on_instance_ = std::move(handler); }

    // PUBLISHes payload (a JSON object) on that instance's channel, fire-and-forget: calls
    // are sent in their order; a failure is only logged, as pub/sub may lose it anyway.
    void publish_to_instance(const std::string &instance, std::string payload);

    void start();
    void stop();

    bool subscriber_up() const { return subscriber_.connected(); }
    size_t subscription_count() const;

    // BusBridge
    void watch(const std::string &conversation_id) override;
    void unwatch(const std::string &conversation_id) override;
    asio::awaitable<void> ready(const std::string &conversation_id) override;

    // The registry's observer: keeps the hub, user, connection and group channels.
    void on_connection(const ConnectionInfo &connection, bool opened);

    // Publishes an invocation of target(arguments) to the audience's connections on
    // every instance, this one included, but those whose ids are in excluded. This
    // instance's connections get it before the call returns (while the subscriber is up),
    // and not again from Redis. The value is the number of instances that received it
    // (0: nobody holds such a connection). unavailable while Redis is down.
    asio::awaitable<Result<long long>> send(const HubAudience &audience,
                                            const std::string &target, const json_t *arguments,
                                            const std::vector<std::string> &excluded = {});

    // Publishes a control message to the audience's connections on every instance:
    // "join" or "leave" the group named by argument, "leave_all" groups, or "close"
    // (argument is the Close message's error; empty: none). Applied here at once, as
    // send() delivers, so that the two keep their order. Same value as send().
    asio::awaitable<Result<long long>> control(const HubAudience &audience,
                                               const std::string &type,
                                               const std::string &argument,
                                               const std::vector<std::string> &excluded = {});

    // Joins (or leaves) a group for a connection this instance holds; nothing for others.
    void change_local_group(const std::string &connection_id, const std::string &group,
                            bool join)
    {
        apply_group(connection_id, group, join);
    }

    // Told of every group change of a local connection, after it was made.
    using GroupObserver = std::function<void(const std::string &connection_id,
                                             const std::string &group, bool joined)>;
    void set_group_observer(GroupObserver observer) { group_observer_ = std::move(observer); }

    std::string audience_channel(const HubAudience &audience) const;

    // What it holds, for tests: the local members of a user or group (0: none), and
    // whether a group's send list is the one built for its last send.
    size_t member_count(HubAudience::Kind kind, const std::string &hub,
                        const std::string &name) const;
    bool group_send_list_reused(const std::string &hub, const std::string &group) const;

private:
    struct Channel;
    struct Members;
    struct LocalConnection;
    // A connection's place in a member list.
    struct Membership {
        Members *members = nullptr;
        uint32_t slot = 0;
    };
    struct LocalConnection {
        const std::string *id = nullptr;    // the key in connections_
        const std::string *hub = nullptr;   // in hub_names_
        Membership user;                    // members == nullptr: no user
        std::vector<Membership> groups;
    };
    // The local connections of a (hub, user) or a (hub, group).
    struct Members {
        const std::string *hub = nullptr;
        const std::string *name = nullptr;   // the key in its map
        std::vector<LocalConnection *> list;
        // list grouped by link, valid while generation is the registry's; null: not built
        struct SendList {
            LinkGroups groups;
            uint64_t generation = 0;
            bool reused = false;
        };
        mutable std::unique_ptr<SendList> send_list;
    };
    using MemberMap = std::unordered_map<std::string, std::unordered_map<std::string, Members>>;

    void open_connection(const ConnectionInfo &connection);
    void close_connection(const std::string &id);
    Members &join(MemberMap &map, LocalConnection &c, const std::string &name,
                  Membership &place);
    void leave(MemberMap &map, LocalConnection &c, Membership &place);
    const Members *find_members(const MemberMap &map, const std::string &hub,
                                const std::string &name) const;
    std::string connection_channel(const std::string &hub, const std::string &id) const;
    std::string user_channel(const std::string &hub, const std::string &user) const;
    std::vector<const std::string *> targets(const std::string &kind, const std::string &hub,
                                             const std::string &to, const json_t *message);
    void deliver_to_members(const Members &members, const json_t *message);

    void on_state(bool up);
    void on_message(const std::string &channel, const std::string &payload);
    void on_subscribed(const std::string &channel);
    void on_conversation_message(Channel &channel, const std::string &payload);
    void on_instance_message(const std::string &payload);
    void on_hub_message(const std::string &channel, const std::string &payload);
    void on_hub_object(const json_t *message);
    asio::awaitable<Result<long long>> publish_hub_message(const HubAudience &audience,
                                                           Json message);
    void deliver_invocation(LinkGroups &groups, const json_t *message);
    void on_control(const std::string &kind, const std::string &hub, const std::string &to,
                    const json_t *message);
    void apply_group(const std::string &connection_id, const std::string &group, bool join);
    void publish_fragments(const std::string &conversation_id, const std::string &entry_id,
                           const json_t *message);

    void hold(const std::string &channel);
    void release(const std::string &channel);
    asio::awaitable<void> catch_up(std::string channel);
    asio::awaitable<void> expire_idle(std::shared_ptr<bool> alive);

    asio::any_io_executor executor_;
    RedisClient subscriber_;
    RedisClient &commands_;
    ConversationStore &store_;
    FragmentBus &bus_;
    HubRegistry &registry_;
    std::string instance_channel_;
    CancelHandler on_cancel_;
    GroupObserver group_observer_;
    InstanceHandler on_instance_;
    std::unordered_map<std::string, std::unique_ptr<Channel>> channels_;
    std::unordered_map<std::string, LocalConnection> connections_;
    std::set<std::string> hub_names_;   // never shrinks: a deployment has a few hubs
    MemberMap users_;                   // hub -> user -> its connections here
    MemberMap groups_;                  // hub -> group -> its members here
    asio::steady_timer idle_timer_;
    std::shared_ptr<bool> alive_;
};

}  // namespace signalrd
