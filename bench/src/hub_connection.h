// A SignalR client connection over WebSockets, as the official clients
// make one: a dev token (unless given), POST negotiate, the upgrade
// with the connection token, the hub handshake, then hub messages in
// JSON or MessagePack. Framing and encoding come from the project's
// shared library (client role, masked frames).
//
// With HubTarget::plain_websocket the same connection is a bare
// WebSocket client instead (no token, negotiate or handshake; every
// message handed over as it is), which is how the benchmark holds
// connections to servers that are not SignalR: nchan, a Node.js `ws`
// server, the floor program.

#ifndef SIGNALR_BENCH_HUB_CONNECTION_H
#define SIGNALR_BENCH_HUB_CONNECTION_H

#include <netinet/in.h>

#include <cstdint>
#include <memory>
#include <string>

#include <signalr/buf.h>
#include <signalr/hub_message.h>
#include <signalr/websocket.h>

#include "event_loop.h"
#include "http_client.h"
#include "status.h"
#include "tcp_stream.h"

namespace bench {

struct HubTarget {
    sockaddr_in    addr {};
    std::string    host;          // the Host header, "127.0.0.1:8080"
    std::string    hub_path;      // "/api/v1/chats/stream"
    sr_protocol_t  protocol = SR_PROTOCOL_JSON;
    bool           negotiate = true;
    bool           plain_websocket = false;
    std::string    token_query;   // appended to GET /dev/token?sub=...
    size_t         max_message = 1024 * 1024;
};


class HubConnection;

class HubListener {
public:
    virtual ~HubListener() = default;

    virtual void on_hub_ready(HubConnection &hub) = 0;

    // Every hub message but Ping (counted) and Close (ends the
    // connection). now_ns: the monotonic time the bytes were read.
    virtual void on_hub_message(HubConnection &hub, const sr_message_t &msg,
                                int64_t now_ns) = 0;

    // One hub message as it came, before it is decoded: true when the
    // listener has dealt with it (it is then not decoded at all), which
    // spares a benchmark the decoding that its peers do not need.
    virtual bool on_hub_payload(HubConnection &hub, const unsigned char *data,
                                size_t len, int64_t now_ns)
    {
        return false;
    }

    // plain_websocket only: one whole WebSocket message, as sent.
    virtual void on_plain_message(HubConnection &hub,
                                  const unsigned char *data, size_t len,
                                  int64_t now_ns)
    {
    }

    // Once, when a started connection fails or ends; reason says which
    // step failed ("negotiate: HTTP 401", "closed by peer", ...).
    virtual void on_hub_closed(HubConnection &hub,
                               const std::string &reason) = 0;
};


class HubConnection : public TcpStreamHandler {
public:
    enum class State {
        kIdle, kToken, kNegotiate, kUpgrade, kHandshake, kReady, kClosing,
        kClosed
    };

    HubConnection(EventLoop &loop, const HubTarget &target,
                  const sockaddr_in *source, std::string user,
                  size_t index, HubListener *listener);
    ~HubConnection() override;

    HubConnection(const HubConnection &) = delete;
    HubConnection &operator=(const HubConnection &) = delete;

    // Connects. With an empty token, fetches one first from
    // GET /dev/token?sub=<user> on the same connection.
    void start(std::string token);

    // Encodes msg in the connection's protocol and sends it in one
    // WebSocket message. Only in State::kReady.
    Status send(const sr_message_t &msg);

    // Sends a Ping message (a WebSocket ping with plain_websocket) when
    // nothing was sent for interval_ns.
    void keepalive(int64_t now_ns, int64_t interval_ns);

    // The WebSocket close handshake (1000); kClosed once the server
    // answers or the connection drops. Quiet: no on_hub_closed.
    void close();

    State state() const { return state_; }
    size_t index() const { return index_; }
    const std::string &user() const { return user_; }
    const std::string &token() const { return token_; }

    // From negotiate ("" without): what a server-side API names the
    // connection by.
    const std::string &connection_id() const { return connection_id_; }
    int64_t started_ns() const { return started_ns_; }
    int64_t ready_ns() const { return ready_ns_; }
    uint64_t pings_received() const { return pings_received_; }
    unsigned token_retries() const { return token_attempts_; }

    void on_connected() override;
    void on_data(const unsigned char *data, size_t len) override;
    void on_closed(const std::string &reason) override;

private:
    void request_token();
    void request_negotiate();
    void request_upgrade(const std::string &connection_token);
    void on_upgraded(const HttpResponse &response);
    void send_frame(int opcode, const unsigned char *data, size_t len);
    void handle_ws_event(const sr_ws_event_t &ev, int64_t now_ns);
    void handle_payload(const unsigned char *data, size_t len,
                        int64_t now_ns);
    bool parse_handshake();
    void parse_messages(int64_t now_ns);
    void fail(const std::string &reason);
    std::string auth_header() const;

    EventLoop                   &loop_;
    const HubTarget             &target_;
    std::string                  user_;
    size_t                       index_;
    HubListener                 *listener_;
    State                        state_ = State::kIdle;
    std::unique_ptr<HttpClient>  http_;
    std::unique_ptr<TcpStream>   stream_;
    std::string                  token_;
    std::string                  connection_id_;
    std::string                  ws_key_;
    sr_ws_parser_t               ws_;
    sr_buf_t                     in_;
    sr_buf_t                     out_;      // an encoded hub message
    sr_buf_t                     frame_;    // a masked WebSocket frame
    uint64_t                     rng_;
    int64_t                      started_ns_ = 0;
    int64_t                      ready_ns_ = 0;
    int64_t                      last_send_ns_ = 0;
    uint64_t                     pings_received_ = 0;
    unsigned                     token_attempts_ = 0;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_HUB_CONNECTION_H
