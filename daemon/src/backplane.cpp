#include "backplane.h"

#include <algorithm>
#include <cstring>

namespace signalrd {

namespace {

// Entries read from a backlog per catch-up round.
constexpr size_t catch_up_batch = 500;

std::string json_string_field(const json_t *obj, const char *key)
{
    const char *v = json_get_string(obj, key);
    return v ? v : "";
}

Result<Fragment> fragment_from_json(const json_t *obj)
{
    const char *id = json_get_string(obj, "id");
    const char *sender = json_get_string(obj, "sender");
    json_t *text = json_object_get(obj, "text");
    const char *fid = json_get_string(obj, "fragmentId");
    json_t *fin = json_object_get(obj, "isFinal");

    if (!id || !sender || !json_is_string(text) || !fid || !json_is_boolean(fin)) {
        return Status::protocol_error("fragment lacks a field");
    }
    return Fragment{id, sender, std::string(json_string_value(text), json_string_length(text)),
                    fid, json_is_true(fin)};
}

asio::awaitable<void> publish_once(RedisClient &redis, std::string channel, std::string payload)
{
    RedisArgs command = {"PUBLISH", channel, std::move(payload)};
    Result<RedisValue> r = co_await redis.command(std::move(command));
    if (!r.is_ok()) {
        log_warn("backplane: PUBLISH on \"%s\" failed: %s", channel.c_str(),
                 r.status().message().c_str());
    }
}

}  // namespace

// One subscribed channel. Conversation channels also carry what joining pub/sub with
// the backlog needs.
struct Backplane::Channel {
    size_t refs = 0;
    std::chrono::steady_clock::time_point idle_since{};
    bool confirmed = false;
    std::vector<std::weak_ptr<asio::steady_timer>> waiters;   // ready() calls, woken on it

    std::string conversation_id;           // empty: not a conversation channel
    std::string last_entry;                // newest backlog entry seen ("": none yet)
    bool needs_catch_up = false;           // messages may have been missed
    bool catching_up = false;
    bool overflowed = false;
    std::vector<std::pair<std::string, Json>> buffered;   // (entry id, message)
    size_t buffered_fragments = 0;
};

Backplane::Backplane(asio::any_io_executor executor, RedisEndpoint endpoint,
                     RedisClient &commands, ConversationStore &store, FragmentBus &bus,
                     HubRegistry &registry)
    : executor_(executor),
      subscriber_(executor, std::move(endpoint)),
      commands_(commands),
      store_(store),
      bus_(bus),
      registry_(registry),
      instance_channel_(store.instance_channel(store.instance())),
      idle_timer_(executor)
{
    subscriber_.enable_subscriber(
        instance_channel_,
        [this](const std::string &c, const std::string &p) { on_message(c, p); },
        [this](const std::string &c) { on_subscribed(c); });
    subscriber_.set_state_handler([this](bool up) { on_state(up); });
}

Backplane::~Backplane()
{
    stop();
}

void Backplane::start()
{
    alive_ = std::make_shared<bool>(true);
    subscriber_.start();
    spawn_detached(executor_, expire_idle(alive_), "backplane idle channels");
}

void Backplane::stop()
{
    if (alive_) {
        *alive_ = false;
        alive_.reset();
    }
    idle_timer_.cancel();
    subscriber_.stop();
}

void Backplane::on_state(bool up)
{
    std::vector<std::string> all = {instance_channel_};

    for (auto &[name, channel] : channels_) {
        channel->confirmed = false;
        if (!channel->conversation_id.empty()) {
            channel->needs_catch_up = true;
        }
        all.push_back(name);
    }
    for (const auto &[id, c] : connections_) {
        all.push_back(connection_channel(*c.hub, id));
    }
    for (const auto &[hub, by_user] : users_) {
        for (const auto &[user, members] : by_user) {
            all.push_back(user_channel(hub, user));
        }
    }
    if (up) {
        subscriber_.subscribe(all);
    }
}

void Backplane::hold(const std::string &name)
{
    auto it = channels_.find(name);
    if (it == channels_.end()) {
        it = channels_.emplace(name, std::make_unique<Channel>()).first;
        subscriber_.subscribe({name});
    }
    it->second->refs++;
}

void Backplane::release(const std::string &name)
{
    auto it = channels_.find(name);
    if (it != channels_.end() && it->second->refs > 0 && --it->second->refs == 0) {
        it->second->idle_since = std::chrono::steady_clock::now();
    }
}

asio::awaitable<void> Backplane::expire_idle(std::shared_ptr<bool> alive)
{
    while (*alive) {
        idle_timer_.expires_after(linger);
        co_await idle_timer_.async_wait(use_nothrow);
        if (!*alive) {
            break;
        }
        auto now = std::chrono::steady_clock::now();
        std::vector<std::string> idle;
        for (auto &[name, channel] : channels_) {
            bool idle_long = now - channel->idle_since >= linger;
            if (channel->refs == 0 && !channel->catching_up && idle_long) {
                idle.push_back(name);
            }
        }
        for (const std::string &name : idle) {
            channels_.erase(name);
        }
        subscriber_.unsubscribe(idle);
    }
}

void Backplane::watch(const std::string &conversation_id)
{
    std::string name = store_.conversation_channel(conversation_id);
    hold(name);
    channels_[name]->conversation_id = conversation_id;
}

void Backplane::unwatch(const std::string &conversation_id)
{
    release(store_.conversation_channel(conversation_id));
}

asio::awaitable<void> Backplane::ready(const std::string &conversation_id)
{
    std::string name = store_.conversation_channel(conversation_id);
    auto it = channels_.find(name);

    if (it == channels_.end() || it->second->confirmed) {
        co_return;
    }
    if (subscriber_.connected()) {
        auto waiter = std::make_shared<asio::steady_timer>(executor_, ready_timeout);
        it->second->waiters.push_back(waiter);
        co_await waiter->async_wait(use_nothrow);
        it = channels_.find(name);
        if (it == channels_.end() || it->second->confirmed) {
            co_return;
        }
    }
    // the stream goes on without the confirmation: what it misses comes from the backlog
    it->second->needs_catch_up = true;
    it->second->last_entry.clear();
}

void Backplane::on_subscribed(const std::string &name)
{
    auto it = channels_.find(name);
    if (it == channels_.end()) {
        return;
    }
    Channel &channel = *it->second;
    channel.confirmed = true;
    for (auto &w : channel.waiters) {
        if (auto timer = w.lock()) {
            timer->cancel();
        }
    }
    channel.waiters.clear();
    if (!channel.conversation_id.empty() && channel.needs_catch_up && !channel.catching_up) {
        channel.needs_catch_up = false;
        channel.catching_up = true;
        spawn_detached(executor_, catch_up(name), "backplane catch-up");
    }
}

void Backplane::on_message(const std::string &name, const std::string &payload)
{
    if (name == instance_channel_) {
        on_instance_message(payload);
        return;
    }
    auto it = channels_.find(name);
    if (it == channels_.end()) {
        // connection and user channels have no record (see the design note)
        std::string hubs = store_.prefix() + ":hub:";
        if (name.compare(0, hubs.size(), hubs) == 0) {
            on_hub_message(name, payload);
        }
        return;
    }
    if (!it->second->conversation_id.empty()) {
        on_conversation_message(*it->second, payload);
    } else {
        on_hub_message(name, payload);
    }
}

void Backplane::on_conversation_message(Channel &channel, const std::string &payload)
{
    std::string entry_id;
    std::string text;
    const std::string &own = store_.own_fragments_prefix();
    size_t space = payload.find(' ');

    // This instance's own fragments coming back, shown to its streams already: only their
    // entry id matters, so they are told by their first bytes instead of parsed, which
    // was a sixth of the daemon's time per streamed fragment, nor copied.
    if (!channel.catching_up && space != std::string::npos && space > 0 &&
        payload.compare(space + 1, own.size(), own) == 0) {
        entry_id.assign(payload, 0, space);
        if (compare_entry_ids(entry_id, channel.last_entry) > 0) {
            channel.last_entry = std::move(entry_id);
        }
        return;
    }
    if (!split_channel_payload(payload, entry_id, text)) {
        return;
    }
    Result<Json> message = parse_json(text);
    if (!message.is_ok() || !json_is_object(message->get())) {
        log_warn("backplane: bad message on conversation %s", channel.conversation_id.c_str());
        return;
    }
    const json_t *m = message->get();
    std::string type = json_string_field(m, "type");

    if (type == "deleted") {
        bus_.publish(channel.conversation_id, {ConversationEvent::Kind::deleted, {}});
        return;
    }
    if (type != "fragments") {
        return;
    }
    if (channel.catching_up) {
        size_t n = json_array_size(json_object_get(m, "fragments"));
        if (channel.buffered_fragments + n > max_buffered_fragments) {
            // the backlog has them: read it once more instead of holding them here
            channel.overflowed = true;
            channel.buffered.clear();
            channel.buffered_fragments = 0;
            return;
        }
        channel.buffered.emplace_back(entry_id, std::move(*message));
        channel.buffered_fragments += n;
        return;
    }
    if (compare_entry_ids(entry_id, channel.last_entry) > 0) {
        channel.last_entry = entry_id;
    }
    // this instance wrote it and has shown it already
    if (json_string_field(m, "origin") != store_.origin()) {
        publish_fragments(channel.conversation_id, entry_id, m);
    }
}

void Backplane::publish_fragments(const std::string &conversation_id, const std::string &,
                                  const json_t *message)
{
    size_t i;
    json_t *item;

    json_array_foreach(json_object_get(message, "fragments"), i, item) {
        Result<Fragment> f = fragment_from_json(item);
        if (!f.is_ok()) {
            log_warn("backplane: bad fragment on conversation %s", conversation_id.c_str());
            return;
        }
        bus_.publish(conversation_id, {ConversationEvent::Kind::fragment, *f});
    }
}

// Reads what the channel may have missed from the backlog, then lets the live messages
// buffered meanwhile through, minus those the backlog already gave.
asio::awaitable<void> Backplane::catch_up(std::string name)
{
    std::shared_ptr<bool> alive = alive_;

    for (int failures = 0; alive && *alive;) {
        auto it = channels_.find(name);
        if (it == channels_.end()) {
            co_return;
        }
        Channel &channel = *it->second;
        channel.overflowed = false;
        std::string id = channel.conversation_id;
        Result<BacklogRead> read = co_await store_.backlog_since(id, channel.last_entry,
                                                                 catch_up_batch);
        it = channels_.find(name);
        if (it == channels_.end() || !*alive) {
            co_return;
        }
        Channel &now = *it->second;
        if (!read.is_ok()) {
            asio::steady_timer pause(executor_);
            pause.expires_after(std::chrono::milliseconds(failures++ < 10 ? 100 : 1000));
            co_await pause.async_wait(use_nothrow);
            continue;
        }
        failures = 0;
        for (const Fragment &f : read->fragments) {
            bus_.publish(id, {ConversationEvent::Kind::fragment, f});
        }
        if (!read->last_entry_id.empty()) {
            now.last_entry = read->last_entry_id;
        }
        if (read->entries == catch_up_batch || now.overflowed) {
            continue;
        }

        std::vector<std::pair<std::string, Json>> buffered = std::move(now.buffered);
        now.buffered.clear();
        now.buffered_fragments = 0;
        now.catching_up = false;
        for (auto &[entry_id, message] : buffered) {
            if (compare_entry_ids(entry_id, now.last_entry) > 0) {
                now.last_entry = entry_id;
                if (json_string_field(message.get(), "origin") != store_.origin()) {
                    publish_fragments(id, entry_id, message.get());
                }
            }
        }
        co_return;
    }
}

void Backplane::on_instance_message(const std::string &payload)
{
    Result<Json> message = parse_json(payload);
    if (!message.is_ok() || !json_is_object(message->get())) {
        return;
    }
    const json_t *m = message->get();
    std::string type = json_string_field(m, "type");
    if (type == "cancel") {
        if (on_cancel_) {
            on_cancel_(json_string_field(m, "conversation"), json_string_field(m, "reply"));
        }
    } else if (!type.empty() && on_instance_) {
        on_instance_(type, m);
    }
}

void Backplane::publish_to_instance(const std::string &instance, std::string payload)
{
    // the command is queued when the coroutine starts, so calls keep their order
    spawn_detached(executor_,
                   publish_once(commands_, store_.instance_channel(instance), std::move(payload)),
                   "backplane publish");
}

std::string Backplane::audience_channel(const HubAudience &a) const
{
    std::string base = store_.prefix() + ":hub:" + a.hub;
    switch (a.kind) {
    case HubAudience::Kind::all:
        return base + ":all";
    case HubAudience::Kind::user:
        return base + ":user:" + a.name;
    case HubAudience::Kind::group:
        return base + ":group:" + a.name;
    case HubAudience::Kind::connection:
        return base + ":connection:" + a.name;
    }
    return base;
}

std::string Backplane::connection_channel(const std::string &hub, const std::string &id) const
{
    return audience_channel({HubAudience::Kind::connection, hub, id});
}

std::string Backplane::user_channel(const std::string &hub, const std::string &user) const
{
    return audience_channel({HubAudience::Kind::user, hub, user});
}

size_t Backplane::subscription_count() const
{
    size_t users = 0;

    for (const auto &[hub, by_user] : users_) {
        users += by_user.size();
    }
    // the instance channel, the held ones, and one per connection and per user
    return 1 + channels_.size() + connections_.size() + users;
}

void Backplane::on_connection(const ConnectionInfo &c, bool opened)
{
    if (opened) {
        open_connection(c);
    } else {
        close_connection(c.id);
    }
}

void Backplane::open_connection(const ConnectionInfo &c)
{
    if (connections_.count(c.id) != 0) {
        close_connection(c.id);
    }
    auto it = connections_.emplace(c.id, LocalConnection{}).first;
    LocalConnection &local = it->second;
    std::vector<std::string> channels = {connection_channel(c.hub, c.id)};

    local.id = &it->first;
    local.hub = &*hub_names_.insert(c.hub).first;
    hold(audience_channel({HubAudience::Kind::all, c.hub, ""}));
    if (!c.user.empty() && join(users_, local, c.user, local.user).list.size() == 1) {
        channels.push_back(user_channel(c.hub, c.user));
    }
    subscriber_.subscribe(channels);
}

void Backplane::close_connection(const std::string &connection_id)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) {
        return;
    }
    LocalConnection &c = it->second;
    const std::string &hub = *c.hub;
    std::vector<std::string> channels = {connection_channel(hub, it->first)};

    while (!c.groups.empty()) {
        std::string group = *c.groups.back().members->name;   // leaving frees the key
        apply_group(it->first, group, false);
    }
    if (c.user.members != nullptr) {
        std::string user = *c.user.members->name;
        leave(users_, c, c.user);
        if (find_members(users_, hub, user) == nullptr) {
            channels.push_back(user_channel(hub, user));
        }
    }
    release(audience_channel({HubAudience::Kind::all, hub, ""}));
    subscriber_.unsubscribe(channels);
    connections_.erase(it);
}

// Adds c to the (c's hub, name) list of map, and says where in place.
Backplane::Members &Backplane::join(MemberMap &map, LocalConnection &c, const std::string &name,
                                    Membership &place)
{
    auto &by_name = map[*c.hub];
    auto it = by_name.try_emplace(name).first;
    Members &m = it->second;

    m.hub = c.hub;
    m.name = &it->first;
    m.send_list.reset();
    place = {&m, static_cast<uint32_t>(m.list.size())};
    m.list.push_back(&c);
    return m;
}

// Takes c out of the list place points at, in O(1): the last member takes its slot.
void Backplane::leave(MemberMap &map, LocalConnection &c, Membership &place)
{
    Members &m = *place.members;
    LocalConnection *last = m.list.back();

    m.list[place.slot] = last;
    m.list.pop_back();
    m.send_list.reset();
    if (last != &c) {
        Membership &moved = last->user.members == &m
                                ? last->user
                                : *std::find_if(last->groups.begin(), last->groups.end(),
                                                [&](const Membership &g) {
                                                    return g.members == &m;
                                                });
        moved.slot = place.slot;
    }
    place = {};
    if (m.list.empty()) {
        auto hub = map.find(*c.hub);
        hub->second.erase(hub->second.find(*m.name));
        if (hub->second.empty()) {
            map.erase(hub);
        }
    }
}

const Backplane::Members *Backplane::find_members(const MemberMap &map, const std::string &hub,
                                                  const std::string &name) const
{
    auto by_name = map.find(hub);
    if (by_name == map.end()) {
        return nullptr;
    }
    auto it = by_name->second.find(name);
    return it == by_name->second.end() ? nullptr : &it->second;
}

size_t Backplane::member_count(HubAudience::Kind kind, const std::string &hub,
                               const std::string &name) const
{
    const Members *m = find_members(kind == HubAudience::Kind::user ? users_ : groups_, hub, name);
    return m == nullptr ? 0 : m->list.size();
}

bool Backplane::group_send_list_reused(const std::string &hub, const std::string &group) const
{
    const Members *m = find_members(groups_, hub, group);
    return m != nullptr && m->send_list && m->send_list->reused;
}

void Backplane::apply_group(const std::string &connection_id, const std::string &group, bool join)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) {
        return;
    }
    LocalConnection &c = it->second;
    HubAudience audience{HubAudience::Kind::group, *c.hub, group};
    auto at = std::find_if(c.groups.begin(), c.groups.end(),
                           [&](const Membership &g) { return *g.members->name == group; });
    bool changed = false;

    if (join && at == c.groups.end()) {
        c.groups.emplace_back();
        this->join(groups_, c, group, c.groups.back());
        hold(audience_channel(audience));
        changed = true;
    } else if (!join && at != c.groups.end()) {
        // leave() finds a moved member's place by its list, not by its address
        leave(groups_, c, *at);
        c.groups.erase(at);
        release(audience_channel(audience));
        changed = true;
    }
    if (changed && group_observer_) {
        group_observer_(connection_id, group, join);
    }
}

void Backplane::on_hub_message(const std::string &name, const std::string &payload)
{
    Result<Json> message = parse_json(payload);
    if (!message.is_ok() || !json_is_object(message->get())) {
        log_warn("backplane: bad message on channel \"%s\"", name.c_str());
        return;
    }
    const json_t *m = message->get();
    // this instance applied it to its own connections when it published it
    if (json_string_field(m, "origin") != store_.origin()) {
        on_hub_object(m);
    }
}

void Backplane::on_hub_object(const json_t *m)
{
    std::string type = json_string_field(m, "type");
    std::string hub = json_string_field(m, "hub");
    std::string to = json_string_field(m, "name");
    std::string kind = json_string_field(m, "audience");

    if (type == "join" || type == "leave" || type == "leave_all" || type == "close") {
        on_control(kind.empty() ? "connection" : kind, hub, to, m);
        return;
    }
    if (type != "invoke") {
        return;
    }
    bool whole_list = kind == "group" || kind == "user";
    if (whole_list && json_array_size(json_object_get(m, "excluded")) == 0) {
        const Members *members = find_members(kind == "group" ? groups_ : users_, hub, to);
        if (members != nullptr) {
            deliver_to_members(*members, m);
        }
        return;
    }
    LinkGroups groups = registry_.group_by_link(targets(kind, hub, to, m));
    deliver_invocation(groups, m);
}

// A member list's send list is built on its first message and reused by the next ones
// while the members and the registry stay as they were.
void Backplane::deliver_to_members(const Members &members, const json_t *message)
{
    auto &cached = members.send_list;

    if (cached && cached->generation == registry_.generation()) {
        cached->reused = true;
    } else {
        std::vector<const std::string *> ids;
        ids.reserve(members.list.size());
        for (const LocalConnection *c : members.list) {
            ids.push_back(c->id);
        }
        cached = std::make_unique<Members::SendList>();
        cached->groups = registry_.group_by_link(ids);
        cached->generation = registry_.generation();
    }
    deliver_invocation(cached->groups, message);
}

// The local connections of an audience, minus those the message excludes. The pointers
// are connections_' keys: valid until a connection goes.
std::vector<const std::string *> Backplane::targets(const std::string &kind,
                                                    const std::string &hub,
                                                    const std::string &to, const json_t *message)
{
    std::vector<const std::string *> out;
    json_t *excluded = json_object_get(message, "excluded");
    auto is_excluded = [excluded](const std::string &id) {
        size_t i;
        json_t *item;
        json_array_foreach(excluded, i, item) {
            if (json_is_string(item) && id == json_string_value(item)) {
                return true;
            }
        }
        return false;
    };

    if (kind == "all") {
        for (const auto &[id, c] : connections_) {
            if (*c.hub == hub) {
                out.push_back(&id);
            }
        }
    } else if (kind == "user" || kind == "group") {
        const Members *m = find_members(kind == "user" ? users_ : groups_, hub, to);
        for (size_t i = 0; m != nullptr && i < m->list.size(); i++) {
            out.push_back(m->list[i]->id);
        }
    } else if (kind == "connection") {
        auto it = connections_.find(to);
        if (it != connections_.end()) {
            out.push_back(&it->first);
        }
    }
    if (json_array_size(excluded) != 0) {
        std::erase_if(out, [&](const std::string *id) { return is_excluded(*id); });
    }
    return out;
}

void Backplane::on_control(const std::string &kind, const std::string &hub,
                           const std::string &to, const json_t *m)
{
    std::string type = json_string_field(m, "type");
    std::string group = json_string_field(m, "group");
    std::vector<std::string> ids;

    // copies: the changes below may remove the connections' entries
    for (const std::string *id : targets(kind, hub, to, m)) {
        ids.push_back(*id);
    }
    for (const std::string &id : ids) {
        auto it = connections_.find(id);
        if (it == connections_.end() || *it->second.hub != hub) {
            continue;
        }
        if (type == "join" || type == "leave") {
            apply_group(id, group, type == "join");
        } else if (type == "leave_all") {
            while (it != connections_.end() && !it->second.groups.empty()) {
                std::string g = *it->second.groups.back().members->name;
                apply_group(id, g, false);
                it = connections_.find(id);
            }
        } else {
            std::string reason = json_string_field(m, "reason");
            registry_.close(id, reason.empty() ? nullptr : reason.c_str(), false);
        }
    }
}

// One message built and sent for all the targets: the registry multicasts it per link.
void Backplane::deliver_invocation(LinkGroups &groups, const json_t *m)
{
    sr_message_t msg;

    if (groups.empty()) {
        return;
    }
    sr_message_init(&msg, SR_MSG_INVOCATION);
    msg.target = strdup(json_string_field(m, "target").c_str());
    msg.arguments = json_deep_copy(json_object_get(m, "arguments"));
    registry_.send_grouped(groups, msg);
    sr_message_clear(&msg);
}

namespace {

const char *const audience_kinds[] = {"all", "user", "group", "connection"};

json_t *excluded_array(const std::vector<std::string> &excluded)
{
    json_t *out = json_array();

    for (const std::string &id : excluded) {
        json_array_append_new(out, json_stringn(id.data(), id.size()));
    }
    return out;
}

}  // namespace

asio::awaitable<Result<long long>> Backplane::send(const HubAudience &audience,
                                                   const std::string &target,
                                                   const json_t *arguments,
                                                   const std::vector<std::string> &excluded)
{
    Json m = Json::object();

    json_set_string(m.get(), "type", "invoke");
    json_set_string(m.get(), "hub", audience.hub);
    json_set_string(m.get(), "audience", audience_kinds[static_cast<int>(audience.kind)]);
    json_set_string(m.get(), "name", audience.name);
    json_set_string(m.get(), "target", target);
    json_object_set_new(m.get(), "arguments",
                        arguments ? json_deep_copy(arguments) : json_array());
    if (!excluded.empty()) {
        json_object_set_new(m.get(), "excluded", excluded_array(excluded));
    }
    co_return co_await publish_hub_message(audience, std::move(m));
}

// Design note, latency: this instance's own connections get the message at once, not
// after its round trip through Redis, and the copy that comes back from the subscription
// is recognised by its origin and dropped. Control messages take the same path, so that a
// join published before a send is applied before it here too, as through Redis. Only
// while the subscriber is up: a message sent while it is down would not come back, so it
// carries no origin and is handled as any other if it does arrive.
asio::awaitable<Result<long long>> Backplane::publish_hub_message(const HubAudience &audience,
                                                                  Json m)
{
    if (subscriber_.connected()) {
        json_set_string(m.get(), "origin", store_.origin());
        on_hub_object(m.get());
    }
    RedisArgs command = {"PUBLISH", audience_channel(audience), json_text(m.get())};
    Result<RedisValue> r = co_await commands_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer;
}

asio::awaitable<Result<long long>> Backplane::control(const HubAudience &audience,
                                                      const std::string &type,
                                                      const std::string &argument,
                                                      const std::vector<std::string> &excluded)
{
    Json m = Json::object();

    json_set_string(m.get(), "type", type);
    json_set_string(m.get(), "hub", audience.hub);
    json_set_string(m.get(), "audience", audience_kinds[static_cast<int>(audience.kind)]);
    json_set_string(m.get(), "name", audience.name);
    json_set_string(m.get(), type == "close" ? "reason" : "group", argument);
    if (!excluded.empty()) {
        json_object_set_new(m.get(), "excluded", excluded_array(excluded));
    }
    co_return co_await publish_hub_message(audience, std::move(m));
}

}  // namespace signalrd
