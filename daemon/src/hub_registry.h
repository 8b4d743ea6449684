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

// A worker link as the registry needs it: somewhere to queue frames for a connection.
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
    };

    void disconnect(std::unordered_map<std::string, Entry>::iterator it);

    std::map<std::string, Hub *> hubs_;
    std::unordered_map<std::string, Entry> connections_;
    ConnectionObserver observer_;
};

}  // namespace signalrd
