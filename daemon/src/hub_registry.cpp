#include "hub_registry.h"

#include <algorithm>
#include <vector>

#include "log.h"

namespace signalrd {

void HubRegistry::add_hub(const std::string &name, Hub &hub)
{
    hubs_[name] = &hub;
}

void HubRegistry::open(LinkPort &link, const std::string &connection_id, sr_ipc_open_t &open)
{
    std::string hub_name = open.hub ? open.hub : "";
    auto hub = hubs_.find(hub_name);

    if (hub == hubs_.end()) {
        log_info("connection %s: unknown hub \"%s\"", connection_id.c_str(), hub_name.c_str());
        std::string error = "Hub '" + hub_name + "' is not available.";
        link.send_close(connection_id, error.c_str(), false);
        return;
    }

    auto existing = find(connection_id);
    if (existing != connections_.end()) {
        disconnect(existing);
    }

    Entry entry{{}, &link, hub->second, {}};
    entry.info.id = connection_id;
    entry.info.hub = hub_name;
    entry.info.user = open.user ? open.user : "";
    entry.info.protocol = open.protocol;
    entry.info.transport = open.transport ? open.transport : "";
    entry.info.claims = open.claims ? Json::borrow(open.claims) : no_claims_;

    auto it = connections_.insert(std::move(entry)).first;
    generation_++;
    log_debug("connection %s: open on hub \"%s\" for user \"%s\"", connection_id.c_str(),
              hub_name.c_str(), it->info.user.c_str());
    // copy: the hub may close the connection, which erases the entry
    ConnectionInfo info = it->info;
    it->hub->on_connected(info);
    if (observer_ && has_connection(connection_id)) {
        observer_(info, true);
    }
    // the claims were for the open only (see the header)
    it = find(connection_id);
    if (it != connections_.end()) {
        it->info.claims = no_claims_;
    }
}

void HubRegistry::invoke(LinkPort &link, const std::string &connection_id, sr_message_t &msg)
{
    auto it = find(connection_id);
    if (it == connections_.end() || it->link != &link) {
        log_debug("connection %s: message for an unknown connection", connection_id.c_str());
        return;
    }
    // copy: the hub may close the connection, which erases the entry
    ConnectionInfo info = it->info;
    it->hub->on_message(info, msg);
}

void HubRegistry::closed(LinkPort &link, const std::string &connection_id)
{
    auto it = find(connection_id);
    if (it != connections_.end() && it->link == &link) {
        disconnect(it);
    }
}

void HubRegistry::link_dropped(LinkPort &link)
{
    std::vector<std::string> ids;

    for (const Entry &entry : connections_) {
        if (entry.link == &link) {
            ids.push_back(entry.info.id);
        }
    }
    for (const std::string &id : ids) {
        auto it = find(id);
        if (it != connections_.end()) {
            disconnect(it);
        }
    }
}

void HubRegistry::shutdown()
{
    for (auto &[name, hub] : hubs_) {
        hub->shutdown();
    }
}

void HubRegistry::disconnect(Entries::iterator it)
{
    if (it->has_token_hash) {
        auto indexed = by_token_hash_.find(&*it);
        if (indexed != by_token_hash_.end() && *indexed == &*it) {
            by_token_hash_.erase(indexed);
        }
    }
    Entry entry = std::move(connections_.extract(it).value());
    generation_++;
    entry.link->forget(entry.info.id);
    log_debug("connection %s: closed", entry.info.id.c_str());
    entry.hub->on_disconnected(entry.info);
    if (observer_) {
        observer_(entry.info, false);
    }
}

LinkPort *HubRegistry::port_of(const std::string &connection_id) const
{
    auto it = find(connection_id);
    return it == connections_.end() ? nullptr : it->link;
}

bool HubRegistry::move(const std::string &connection_id, LinkPort &from, LinkPort &to)
{
    auto it = find(connection_id);
    if (it == connections_.end() || it->link != &from) {
        return false;
    }
    it->link = &to;
    generation_++;
    return true;
}

namespace {

// The 32 bytes that 64 hex digits spell, or false.
bool hash_bytes(const std::string &hex, std::array<char, 32> &out)
{
    auto digit = [](char c) {
        return c >= '0' && c <= '9' ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
    };
    if (hex.size() != 2 * out.size()) {
        return false;
    }
    for (size_t i = 0; i < out.size(); i++) {
        int high = digit(hex[2 * i]);
        int low = digit(hex[2 * i + 1]);
        if (high < 0 || low < 0) {
            return false;
        }
        out[i] = static_cast<char>(high << 4 | low);
    }
    return true;
}

}  // namespace

void HubRegistry::set_token_hash(const std::string &connection_id, const std::string &token_hash)
{
    auto it = find(connection_id);
    std::array<char, 32> bytes;
    if (it == connections_.end() || !hash_bytes(token_hash, bytes)) {
        return;
    }
    const Entry *entry = &*it;
    if (entry->has_token_hash) {
        auto old = by_token_hash_.find(entry);
        if (old != by_token_hash_.end() && *old == entry) {
            by_token_hash_.erase(old);
        }
    }
    // a hash indexed for another connection finds this one from now on
    auto taken = by_token_hash_.find(std::string_view(bytes.data(), bytes.size()));
    if (taken != by_token_hash_.end()) {
        by_token_hash_.erase(taken);
    }
    entry->token_hash = bytes;
    entry->has_token_hash = true;
    by_token_hash_.insert(entry);
}

std::string HubRegistry::find_by_token_hash(const std::string &token_hash) const
{
    std::array<char, 32> bytes;
    if (!hash_bytes(token_hash, bytes)) {
        return "";
    }
    auto it = by_token_hash_.find(std::string_view(bytes.data(), bytes.size()));
    return it == by_token_hash_.end() ? std::string() : (*it)->info.id;
}

bool HubRegistry::send(const std::string &connection_id, const sr_message_t &msg)
{
    auto it = find(connection_id);
    if (it == connections_.end()) {
        return false;
    }
    return it->link->send_message(connection_id, msg);
}

bool HubRegistry::send_encoded(const std::string &connection_id, const unsigned char *data,
                               size_t len)
{
    auto it = find(connection_id);
    if (it == connections_.end()) {
        return false;
    }
    return it->link->send_encoded(connection_id, data, len);
}

void HubRegistry::send_many(const std::vector<std::string> &ids, const sr_message_t &msg)
{
    std::vector<const std::string *> pointers;

    pointers.reserve(ids.size());
    for (const std::string &id : ids) {
        pointers.push_back(&id);
    }
    LinkGroups groups = group_by_link(pointers);
    send_grouped(groups, msg);
}

LinkGroups HubRegistry::group_by_link(const std::vector<const std::string *> &ids) const
{
    LinkGroups groups;

    // as many ports as nginx workers: a linear search beats a map
    for (const std::string *id : ids) {
        auto it = find(*id);
        if (it == connections_.end()) {
            continue;
        }
        auto group = std::find_if(groups.begin(), groups.end(),
                                  [&](const LinkGroup &g) { return g.link == it->link; });
        if (group == groups.end()) {
            groups.push_back({it->link, {}, {}});
            group = groups.end() - 1;
        }
        group->ids.push_back(id);
    }
    return groups;
}

void HubRegistry::send_grouped(LinkGroups &groups, const sr_message_t &msg)
{
    for (LinkGroup &group : groups) {
        group.link->send_group(group, msg);
    }
}

void HubRegistry::close(const std::string &connection_id, const char *error, bool allow_reconnect)
{
    auto it = find(connection_id);
    if (it == connections_.end()) {
        return;
    }
    LinkPort *link = it->link;
    disconnect(it);
    link->send_close(connection_id, error, allow_reconnect);
}

}  // namespace signalrd
