// A push hub: its client methods (ReceiveNotification, OrderStatusChanged, ...) are fed
// from the server side, through the push API (push_api.h); clients only listen. Every
// invocation a client makes gets an error Completion, as an ASP.NET Core hub answers a
// method it does not have; one without an invocation id is ignored, since nobody waits.
// Groups from claims and presence are kept by the connection observers (push_api.h).

#pragma once

#include "hub.h"

namespace signalrd {

class PushHub final : public Hub {
public:
    explicit PushHub(ConnectionSink &sink) : sink_(sink) {}

    void on_connected(const ConnectionInfo &) override {}
    void on_message(const ConnectionInfo &connection, sr_message_t &msg) override;
    void on_disconnected(const ConnectionInfo &) override {}
    void shutdown() override {}

private:
    ConnectionSink &sink_;
};

}  // namespace signalrd
