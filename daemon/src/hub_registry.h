// Hub name -> hub, and every connection of every worker link by id, with the link that
// holds it. The worker links feed it what they receive; hubs send through it.

#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <signalr/ipc.h>

#include "hub.h"

namespace signalrd {

class LinkPort;

// Connections of one port that a message goes to, and the port's encoding of their ids,
// which the port may keep here between sends to the same ids: whoever keeps a LinkGroup
// for reuse clears encoded whenever it changes ids.
struct LinkGroup {
    LinkPort *link = nullptr;
    std::vector<const std::string *> ids;
    std::vector<std::string> encoded;
};
using LinkGroups = std::vector<LinkGroup>;

// A worker link as the registry needs it: somewhere to queue frames for a connection. The
// parking lot and the ports toward other instances (docs/backplane.md, "Stateful reconnect
// across instances") are ports too.
class LinkPort {
public:
    virtual ~LinkPort() = default;
    virtual bool send_message(const std::string &connection_id, const sr_message_t &msg) = 0;
    // One message for several connections of this link. The default sends one by one; a
    // link that can carry the ids in one frame does, so the message is encoded once.
    virtual void send_multicast(const std::vector<const std::string *> &connection_ids,
                                const sr_message_t &msg)
    {
        for (const std::string *id : connection_ids) {
            send_message(*id, msg);
        }
    }
    // The same for group.ids; a port may keep its encoding of them in group.encoded and
    // use it again while it is there.
    virtual void send_group(LinkGroup &group, const sr_message_t &msg)
    {
        send_multicast(group.ids, msg);
    }
    virtual void send_close(const std::string &connection_id, const char *error,
                            bool allow_reconnect) = 0;

    // A hub message already in its IPC form (docs/ipc.md, "Hub messages"); false when
    // nothing was queued.
    virtual bool send_encoded(const std::string &, const unsigned char *, size_t)
    {
        return false;
    }
    // RELEASE after a DETACH, and SUSPEND of a live connection whose client came back
    // elsewhere; false when the port cannot carry them.
    virtual bool send_release(const std::string &) { return false; }
    virtual bool send_suspend(const std::string &) { return false; }
    // The registry dropped the connection while this port held it.
    virtual void forget(const std::string &) {}
};

// Told of every connection that opens (true) or goes (false), after the hub was. The
// token's claims are in the info of the open call only (see HubRegistry).
using ConnectionObserver = std::function<void(const ConnectionInfo &, bool opened)>;

// Memory per connection is what an idle edge pays most for, so an entry holds its id once
// (the set is keyed by the entry's own id) and the token index points at entries. The
// token's claims are kept only until the hub and the observer have seen the open: nothing
// reads them later, and a token's claims cost more than the rest of the entry.
class HubRegistry final : public ConnectionSink {
public:
    void set_observer(ConnectionObserver observer) { observer_ = std::move(observer); }

    // hub must outlive the registry.
    void add_hub(const std::string &name, Hub &hub);

    // OPEN from link. An unknown hub gets the connection closed at once. An id already
    // open (on a link that dropped unnoticed) is first closed there.
    void open(LinkPort &link, const std::string &connection_id, sr_ipc_open_t &open);

    // INVOKE: the message is handed to the connection's hub. Unknown ids are ignored
    // (a CLOSED may have crossed a message).
    void invoke(LinkPort &link, const std::string &connection_id, sr_message_t &msg);

    // CLOSED from link.
    void closed(LinkPort &link, const std::string &connection_id);

    // The link is gone: every connection it held is disconnected.
    void link_dropped(LinkPort &link);

    // Ends every hub's streams.
    void shutdown();

    size_t connection_count() const { return connections_.size(); }
    bool has_connection(const std::string &id) const { return find(id) != connections_.end(); }

    // Stateful reconnect (parking.h). The port holding the connection, or nullptr.
    LinkPort *port_of(const std::string &connection_id) const;
    // Routes the connection to `to` from now on, when `from` holds it; the hub sees
    // nothing. False (nothing changed) otherwise.
    bool move(const std::string &connection_id, LinkPort &from, LinkPort &to);
    // Indexes the connection by the SHA-256 (64 hex digits) of its connection token, so
    // that a reconnecting client finds it; the index entry goes with the connection. The
    // entry keeps the 32 bytes, not the text; a hash of another form is not indexed.
    void set_token_hash(const std::string &connection_id, const std::string &token_hash);
    // The connection whose token has this hash, or "".
    std::string find_by_token_hash(const std::string &token_hash) const;

    bool send(const std::string &connection_id, const sr_message_t &msg) override;
    bool send_encoded(const std::string &connection_id, const unsigned char *data,
                      size_t len) override;
    // The same message to every one of ids held here (unknown ids are skipped): one
    // multicast per link, so that a group of N connections costs one encoding per worker,
    // not N.
    void send_many(const std::vector<std::string> &ids, const sr_message_t &msg);
    // The ids held here grouped by port, to be sent to with send_grouped() for as long as
    // generation() stays the same. The pointers are the caller's and must outlive that use.
    LinkGroups group_by_link(const std::vector<const std::string *> &ids) const;
    void send_grouped(LinkGroups &groups, const sr_message_t &msg);
    // Changes whenever a connection opens, goes or moves to another port.
    uint64_t generation() const { return generation_; }

    void close(const std::string &connection_id, const char *error,
               bool allow_reconnect) override;

private:
    // An element of a std::unordered_set is const; info.id is the key and never changes,
    // the rest may (hence mutable).
    struct Entry {
        mutable ConnectionInfo info;
        mutable LinkPort *link;
        Hub *hub;
        mutable std::array<char, 32> token_hash{};
        mutable bool has_token_hash = false;

        std::string_view token_hash_bytes() const { return {token_hash.data(), 32}; }
    };
    struct ById {
        using is_transparent = void;
        size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
        size_t operator()(const Entry &e) const { return (*this)(std::string_view(e.info.id)); }
        bool operator()(const Entry &a, const Entry &b) const { return a.info.id == b.info.id; }
        bool operator()(std::string_view a, const Entry &b) const { return a == b.info.id; }
        bool operator()(const Entry &a, std::string_view b) const { return a.info.id == b; }
    };
    struct ByTokenHash {
        using is_transparent = void;
        size_t operator()(std::string_view h) const { return std::hash<std::string_view>{}(h); }
        size_t operator()(const Entry *e) const { return (*this)(e->token_hash_bytes()); }
        bool operator()(const Entry *a, const Entry *b) const
        {
            return a->token_hash == b->token_hash;
        }
        bool operator()(std::string_view a, const Entry *b) const
        {
            return a == b->token_hash_bytes();
        }
        bool operator()(const Entry *a, std::string_view b) const
        {
            return a->token_hash_bytes() == b;
        }
    };
    using Entries = std::unordered_set<Entry, ById, ById>;

    void disconnect(Entries::iterator it);
    Entries::iterator find(const std::string &id)
    {
        return connections_.find(std::string_view(id));
    }
    Entries::const_iterator find(const std::string &id) const
    {
        return connections_.find(std::string_view(id));
    }

    std::map<std::string, Hub *> hubs_;
    Entries connections_;
    // Entries whose token hash is known; an entry leaves it before it goes.
    std::unordered_set<const Entry *, ByTokenHash, ByTokenHash> by_token_hash_;
    ConnectionObserver observer_;
    Json no_claims_ = Json::object();   // shared by every entry once its open is done
    uint64_t generation_ = 0;
};

}  // namespace signalrd
