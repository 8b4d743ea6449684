#include "backplane.h"

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

void Backplane::on_connection(const ConnectionInfo &c, bool opened)
{
    HubAudience all{HubAudience::Kind::all, c.hub, ""};
    HubAudience self{HubAudience::Kind::connection, c.hub, c.id};
    HubAudience user{HubAudience::Kind::user, c.hub, c.user};

    if (opened) {
        connections_[c.id] = {c.hub, c.user, {}};
        hubs_[c.hub].insert(c.id);
        hold(audience_channel(all));
        hold(audience_channel(self));
        if (!c.user.empty()) {
            users_[{c.hub, c.user}].insert(c.id);
            hold(audience_channel(user));
        }
        return;
    }

    auto it = connections_.find(c.id);
    if (it == connections_.end()) {
        return;
    }
    for (const std::string &group : std::set<std::string>(it->second.groups)) {
        apply_group(c.id, group, false);
    }
    connections_.erase(it);
    hubs_[c.hub].erase(c.id);
    release(audience_channel(all));
    release(audience_channel(self));
    if (!c.user.empty()) {
        auto u = users_.find({c.hub, c.user});
        if (u != users_.end() && (u->second.erase(c.id), u->second.empty())) {
            users_.erase(u);
        }
        release(audience_channel(user));
    }
}

void Backplane::apply_group(const std::string &connection_id, const std::string &group, bool join)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) {
        return;
    }
    LocalConnection &c = it->second;
    HubAudience audience{HubAudience::Kind::group, c.hub, group};
    bool changed = false;

    if (join && c.groups.insert(group).second) {
        groups_[{c.hub, group}].insert(connection_id);
        hold(audience_channel(audience));
        changed = true;
    } else if (!join && c.groups.erase(group) != 0) {
        auto g = groups_.find({c.hub, group});
        if (g != groups_.end() && (g->second.erase(connection_id), g->second.empty())) {
            groups_.erase(g);
        }
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
    std::set<std::string> targets = audience_targets(kind, hub, to, m);
    deliver_invocation(std::vector<std::string>(targets.begin(), targets.end()), m);
}

// The local connections of an audience, minus those the message excludes.
std::set<std::string> Backplane::audience_targets(const std::string &kind, const std::string &hub,
                                                  const std::string &to, const json_t *message)
{
    std::set<std::string> targets;
    size_t i;
    json_t *item;

    if (kind == "all") {
        auto it = hubs_.find(hub);
        targets = it == hubs_.end() ? targets : it->second;
    } else if (kind == "user") {
        auto it = users_.find({hub, to});
        targets = it == users_.end() ? targets : it->second;
    } else if (kind == "group") {
        auto it = groups_.find({hub, to});
        targets = it == groups_.end() ? targets : it->second;
    } else if (kind == "connection" && connections_.count(to) != 0) {
        targets.insert(to);
    }
    json_array_foreach(json_object_get(message, "excluded"), i, item) {
        if (json_is_string(item)) {
            targets.erase(json_string_value(item));
        }
    }
    return targets;
}

void Backplane::on_control(const std::string &kind, const std::string &hub,
                           const std::string &to, const json_t *m)
{
    std::string type = json_string_field(m, "type");
    std::string group = json_string_field(m, "group");

    for (const std::string &id : audience_targets(kind, hub, to, m)) {
        auto it = connections_.find(id);
        if (it == connections_.end() || it->second.hub != hub) {
            continue;
        }
        if (type == "join" || type == "leave") {
            apply_group(id, group, type == "join");
        } else if (type == "leave_all") {
            for (const std::string &g : std::set<std::string>(it->second.groups)) {
                apply_group(id, g, false);
            }
        } else {
            std::string reason = json_string_field(m, "reason");
            registry_.close(id, reason.empty() ? nullptr : reason.c_str(), false);
        }
    }
}

// One message built and sent for all the targets: the registry multicasts it per link.
void Backplane::deliver_invocation(const std::vector<std::string> &connection_ids,
                                   const json_t *m)
{
    sr_message_t msg;

    if (connection_ids.empty()) {
        return;
    }
    sr_message_init(&msg, SR_MSG_INVOCATION);
    msg.target = strdup(json_string_field(m, "target").c_str());
    msg.arguments = json_deep_copy(json_object_get(m, "arguments"));
    registry_.send_many(connection_ids, msg);
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

    RedisArgs command = {"PUBLISH", audience_channel(audience), json_text(m.get())};
    Result<RedisValue> r = co_await commands_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer;
}

}  // namespace signalrd
