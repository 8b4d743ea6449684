// What a hub sees of the world: connections known by id, and a way to send them hub
// messages. Hubs never touch a socket; the registry routes through the worker links.

#pragma once

#include <string>

#include <signalr/hub_message.h>

#include "json.h"

namespace signalrd {

// A client connection as its worker described it in OPEN.
struct ConnectionInfo {
    std::string id;
    std::string hub;
    std::string user;          // empty when the worker does not authenticate
    sr_protocol_t protocol = SR_PROTOCOL_JSON;
    std::string transport;
    Json claims;               // object, possibly empty
};

// How hubs reach connections. Calls are made on the loop thread and never block: a
// message is queued on the connection's worker link.
class ConnectionSink {
public:
    virtual ~ConnectionSink() = default;

    // Queues msg for the connection; false when the connection is not (or no longer)
    // known, in which case nothing is sent.
    virtual bool send(const std::string &connection_id, const sr_message_t &msg) = 0;

    // Queues a hub message already in its IPC form (MessagePack, docs/ipc.md); false when
    // nothing was queued: the connection is not known, or this sink takes only send().
    virtual bool send_encoded(const std::string &, const unsigned char *, size_t)
    {
        return false;
    }

    // Ends the connection with a SignalR Close carrying error (may be null).
    virtual void close(const std::string &connection_id, const char *error,
                       bool allow_reconnect) = 0;
};

// A hub. The registry calls these on the loop thread, in the order the worker sent the
// frames. on_disconnected follows on_connected exactly once, also when the link drops.
class Hub {
public:
    virtual ~Hub() = default;

    virtual void on_connected(const ConnectionInfo &connection) = 0;

    // A hub message from the client (Ping, Close, Ack and Sequence stay in the worker).
    // msg may be consumed (its fields moved out).
    virtual void on_message(const ConnectionInfo &connection, sr_message_t &msg) = 0;

    virtual void on_disconnected(const ConnectionInfo &connection) = 0;

    // Ends every stream (the daemon is stopping); connections stay until their links go.
    virtual void shutdown() = 0;
};

}  // namespace signalrd
