// Hub name -> hub, and every connection of every worker link by id, with the link that
// holds it. The worker links feed it what they receive; hubs send through it.

#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <signalr/ipc.h>

#include "hub.h"

namespace signalrd {

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

// Told of every connection that opens (true) or goes (false), after the hub was.
using ConnectionObserver = std::function<void(const ConnectionInfo &, bool opened)>;

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
    bool has_connection(const std::string &id) const { return connections_.count(id) != 0; }

    // Stateful reconnect (parking.h). The port holding the connection, or nullptr.
    LinkPort *port_of(const std::string &connection_id) const;
    // Routes the connection to `to` from now on, when `from` holds it; the hub sees
    // nothing. False (nothing changed) otherwise.
    bool move(const std::string &connection_id, LinkPort &from, LinkPort &to);
    // Indexes the connection by the SHA-256 (hex) of its connection token, so that a
    // reconnecting client finds it; the index entry goes with the connection.
    void set_token_hash(const std::string &connection_id, const std::string &token_hash);
    // The connection whose token has this hash, or "".
    std::string find_by_token_hash(const std::string &token_hash) const;

    bool send(const std::string &connection_id, const sr_message_t &msg) override;
    // The same message to every one of ids held here (unknown ids are skipped): one
    // multicast per link, so that a group of N connections costs one encoding per worker,
    // not N.
    void send_many(const std::vector<std::string> &ids, const sr_message_t &msg);
    void close(const std::string &connection_id, const char *error,
               bool allow_reconnect) override;

private:
    struct Entry {
        ConnectionInfo info;
        LinkPort *link;
        Hub *hub;
        std::string token_hash;   // empty until known
    };

    void disconnect(std::unordered_map<std::string, Entry>::iterator it);

    std::map<std::string, Hub *> hubs_;
    std::unordered_map<std::string, Entry> connections_;
    std::unordered_map<std::string, std::string> by_token_hash_;   // -> connection id
    ConnectionObserver observer_;
};

}  // namespace signalrd
