#include "hub_registry.h"

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

    auto existing = connections_.find(connection_id);
    if (existing != connections_.end()) {
        disconnect(existing);
    }

    Entry entry{{}, &link, hub->second, {}};
    entry.info.id = connection_id;
    entry.info.hub = hub_name;
    entry.info.user = open.user ? open.user : "";
    entry.info.protocol = open.protocol;
    entry.info.transport = open.transport ? open.transport : "";
    entry.info.claims = open.claims ? Json::borrow(open.claims) : Json::object();

    auto [it, inserted] = connections_.emplace(connection_id, std::move(entry));
    log_debug("connection %s: open on hub \"%s\" for user \"%s\"", connection_id.c_str(),
              hub_name.c_str(), it->second.info.user.c_str());
    // copy: the hub may close the connection, which erases the entry
    ConnectionInfo info = it->second.info;
    it->second.hub->on_connected(info);
    if (observer_ && connections_.count(connection_id) != 0) {
        observer_(info, true);
    }
}

void HubRegistry::invoke(LinkPort &link, const std::string &connection_id, sr_message_t &msg)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end() || it->second.link != &link) {
        log_debug("connection %s: message for an unknown connection", connection_id.c_str());
        return;
    }
    // copy: the hub may close the connection, which erases the entry
    ConnectionInfo info = it->second.info;
    it->second.hub->on_message(info, msg);
}

void HubRegistry::closed(LinkPort &link, const std::string &connection_id)
{
    auto it = connections_.find(connection_id);
    if (it != connections_.end() && it->second.link == &link) {
        disconnect(it);
    }
}

void HubRegistry::link_dropped(LinkPort &link)
{
    std::vector<std::string> ids;

    for (const auto &[id, entry] : connections_) {
        if (entry.link == &link) {
            ids.push_back(id);
        }
    }
    for (const std::string &id : ids) {
        auto it = connections_.find(id);
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

void HubRegistry::disconnect(std::unordered_map<std::string, Entry>::iterator it)
{
    Entry entry = std::move(it->second);
    connections_.erase(it);
    auto indexed = by_token_hash_.find(entry.token_hash);
    if (indexed != by_token_hash_.end() && indexed->second == entry.info.id) {
        by_token_hash_.erase(indexed);
    }
    entry.link->forget(entry.info.id);
    log_debug("connection %s: closed", entry.info.id.c_str());
    entry.hub->on_disconnected(entry.info);
    if (observer_) {
        observer_(entry.info, false);
    }
}

LinkPort *HubRegistry::port_of(const std::string &connection_id) const
{
    auto it = connections_.find(connection_id);
    return it == connections_.end() ? nullptr : it->second.link;
}

bool HubRegistry::move(const std::string &connection_id, LinkPort &from, LinkPort &to)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end() || it->second.link != &from) {
        return false;
    }
    it->second.link = &to;
    return true;
}

void HubRegistry::set_token_hash(const std::string &connection_id, const std::string &token_hash)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end() || token_hash.empty()) {
        return;
    }
    if (!it->second.token_hash.empty()) {
        by_token_hash_.erase(it->second.token_hash);
    }
    it->second.token_hash = token_hash;
    by_token_hash_[token_hash] = connection_id;
}

std::string HubRegistry::find_by_token_hash(const std::string &token_hash) const
{
    auto it = by_token_hash_.find(token_hash);
    return it == by_token_hash_.end() ? std::string() : it->second;
}

bool HubRegistry::send(const std::string &connection_id, const sr_message_t &msg)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) {
        return false;
    }
    return it->second.link->send_message(connection_id, msg);
}

void HubRegistry::send_many(const std::vector<std::string> &ids, const sr_message_t &msg)
{
    std::map<LinkPort *, std::vector<const std::string *>> by_link;

    for (const std::string &id : ids) {
        auto it = connections_.find(id);
        if (it != connections_.end()) {
            by_link[it->second.link].push_back(&id);
        }
    }
    for (auto &[link, link_ids] : by_link) {
        link->send_multicast(link_ids, msg);
    }
}

void HubRegistry::close(const std::string &connection_id, const char *error, bool allow_reconnect)
{
    auto it = connections_.find(connection_id);
    if (it == connections_.end()) {
        return;
    }
    LinkPort *link = it->second.link;
    disconnect(it);
    link->send_close(connection_id, error, allow_reconnect);
}

}  // namespace signalrd
