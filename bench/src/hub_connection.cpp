#include "hub_connection.h"

#include <openssl/evp.h>
#include <sys/random.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>

#include <jansson.h>

#include <signalr/handshake.h>

#include "clock.h"

namespace bench {

namespace {

// Tries of GET /dev/token after the first that a 502 or 503 may cost.
constexpr unsigned  kTokenAttempts = 3;

// Keeps only the characters a URL query value may hold as they are.
std::string
url_encode(const std::string &s)
{
    static const char  hex[] = "0123456789ABCDEF";
    std::string        out;

    for (unsigned char c : s) {
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(char(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }

    return out;
}


std::string
trim(const std::string &s)
{
    size_t  b = s.find_first_not_of(" \t\r\n");
    size_t  e = s.find_last_not_of(" \t\r\n");

    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}


// xorshift64*: the masking key only has to differ between frames, and
// the server is our own on loopback; a kernel call per frame would
// cost more than the frame.
uint32_t
next_mask(uint64_t *state)
{
    uint64_t  x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;

    return uint32_t((x * 0x2545F4914F6CDD1DULL) >> 32);
}

}  // namespace


HubConnection::HubConnection(EventLoop &loop, const HubTarget &target,
    const sockaddr_in *source, std::string user, size_t index,
    HubListener *listener)
    : loop_(loop), target_(target), user_(std::move(user)), index_(index),
      listener_(listener)
{
    http_ = std::make_unique<HttpClient>(loop, target.addr, source);
    sr_ws_parser_init(&ws_, SR_WS_ROLE_CLIENT, target.max_message);
    sr_buf_init(&in_);
    sr_buf_init(&out_);
    sr_buf_init(&frame_);
    rng_ = (uint64_t(getpid()) << 32) ^ (index * 0x9E3779B97F4A7C15ULL)
           ^ uint64_t(monotonic_ns()) ^ 1;
}


HubConnection::~HubConnection()
{
    sr_ws_parser_free(&ws_);
    sr_buf_free(&in_);
    sr_buf_free(&out_);
    sr_buf_free(&frame_);
}


std::string
HubConnection::auth_header() const
{
    return "Authorization: Bearer " + token_;
}


void
HubConnection::start(std::string token)
{
    started_ns_ = monotonic_ns();
    token_ = std::move(token);

    if (target_.plain_websocket) {
        request_upgrade("");
    } else if (token_.empty()) {
        request_token();
    } else if (target_.negotiate) {
        request_negotiate();
    } else {
        request_upgrade("");
    }
}


void
HubConnection::request_token()
{
    state_ = State::kToken;

    http_->send(
        http_request("GET", "/dev/token?sub=" + url_encode(user_)
                            + target_.token_query,
                     target_.host, {}, ""),
        [this](const Status &s, HttpResponse &r) {
            if (!s.ok()) {
                fail("token: " + s.message());
                return;
            }
            // The dev token endpoint is a proxied call to the daemon: a
            // burst of setups may meet a 502 or 503 that a second try a
            // moment later does not, as a client would retry it.
            if ((r.status == 502 || r.status == 503)
                && token_attempts_ < kTokenAttempts)
            {
                token_attempts_++;
                loop_.add_timer(100 * kNsPerMs, [this] {
                    if (state_ == State::kToken) {
                        request_token();
                    }
                });
                return;
            }

            if (r.status != 200) {
                fail("token: HTTP " + std::to_string(r.status));
                return;
            }

            token_ = trim(r.body);
            if (target_.negotiate) {
                request_negotiate();
            } else {
                request_upgrade("");
            }
        });
}


void
HubConnection::request_negotiate()
{
    state_ = State::kNegotiate;

    std::string  path = target_.hub_path + "/negotiate?negotiateVersion=1";

    http_->send(
        http_request("POST", path, target_.host, {auth_header()}, ""),
        [this](const Status &s, HttpResponse &r) {
            json_t      *doc;
            const char  *id;

            if (!s.ok()) {
                fail("negotiate: " + s.message());
                return;
            }
            if (r.status != 200) {
                fail("negotiate: HTTP " + std::to_string(r.status));
                return;
            }

            doc = json_loadb(r.body.data(), r.body.size(), 0, nullptr);
            id = json_string_value(json_object_get(doc, "connectionId"));
            connection_id_ = id != nullptr ? id : "";

            id = json_string_value(json_object_get(doc, "connectionToken"));
            if (id == nullptr) {
                id = json_string_value(json_object_get(doc, "connectionId"));
            }

            if (id == nullptr) {
                json_decref(doc);
                fail("negotiate: no connection token in the response");
                return;
            }

            std::string  token(id);
            json_decref(doc);
            request_upgrade(token);
        });
}


void
HubConnection::request_upgrade(const std::string &connection_token)
{
    unsigned char  raw[16];
    char           key[32];
    std::string    target;

    state_ = State::kUpgrade;

    if (getrandom(raw, sizeof(raw), 0) != ssize_t(sizeof(raw))) {
        fail("upgrade: getrandom() failed");
        return;
    }
    EVP_EncodeBlock(reinterpret_cast<unsigned char *>(key), raw,
                    sizeof(raw));
    ws_key_ = key;

    target = target_.hub_path;
    if (!connection_token.empty()) {
        target += "?id=" + url_encode(connection_token);
    }

    std::vector<std::string>  headers = {
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " + ws_key_,
        "Sec-WebSocket-Version: 13",
    };
    if (!token_.empty()) {
        headers.push_back(auth_header());
    }

    http_->send(http_request("GET", target, target_.host, headers, ""),
        [this](const Status &s, HttpResponse &r) {
            if (!s.ok()) {
                fail("upgrade: " + s.message());
                return;
            }
            if (r.status != 101) {
                fail("upgrade: HTTP " + std::to_string(r.status));
                return;
            }
            on_upgraded(r);
        });
}


void
HubConnection::on_upgraded(const HttpResponse &response)
{
    char         expected[SR_WS_ACCEPT_LEN + 1];
    sr_error_t   err;
    std::string  leftover;

    if (sr_ws_accept_key(ws_key_.data(), ws_key_.size(), expected, &err)
        != SR_OK
        || response.header("Sec-WebSocket-Accept") != expected)
    {
        fail("upgrade: wrong Sec-WebSocket-Accept");
        return;
    }

    stream_ = http_->take_stream(&leftover);
    stream_->set_handler(this);

    if (target_.plain_websocket) {
        state_ = State::kReady;
        ready_ns_ = monotonic_ns();
        last_send_ns_ = ready_ns_;
        listener_->on_hub_ready(*this);
        if (state_ == State::kReady && !leftover.empty()) {
            on_data(reinterpret_cast<const unsigned char *>(leftover.data()),
                    leftover.size());
        }
        return;
    }

    state_ = State::kHandshake;

    sr_buf_reset(&out_);
    if (sr_handshake_write_request(&out_, target_.protocol) != SR_OK) {
        fail("handshake: sr_handshake_write_request() failed");
        return;
    }

    // The handshake is text even for MessagePack, as in the official
    // clients.
    std::string  request(reinterpret_cast<char *>(out_.data), out_.len);
    send_frame(SR_WS_OP_TEXT,
               reinterpret_cast<const unsigned char *>(request.data()),
               request.size());

    if (!leftover.empty()) {
        on_data(reinterpret_cast<const unsigned char *>(leftover.data()),
                leftover.size());
    }
}


void
HubConnection::send_frame(int opcode, const unsigned char *data,
    size_t len)
{
    uint32_t       m = next_mask(&rng_);
    unsigned char  mask[4];

    mask[0] = (unsigned char) (m >> 24);
    mask[1] = (unsigned char) (m >> 16);
    mask[2] = (unsigned char) (m >> 8);
    mask[3] = (unsigned char) m;

    // frame_ keeps its allocation from one frame to the next.
    sr_buf_reset(&frame_);

    if (sr_ws_write_frame(&frame_, opcode, data, len, mask) == SR_OK) {
        stream_->write(frame_.data, frame_.len);
        last_send_ns_ = monotonic_ns();
    }
}


Status
HubConnection::send(const sr_message_t &msg)
{
    sr_error_t  err;

    if (state_ != State::kReady) {
        return Status::Error("hub connection not ready");
    }

    sr_buf_reset(&out_);
    if (sr_message_encode(target_.protocol, &msg, &out_, &err) != SR_OK) {
        return Status::Error(std::string("sr_message_encode() failed: ")
                             + err.str);
    }

    send_frame(target_.protocol == SR_PROTOCOL_JSON ? SR_WS_OP_TEXT
                                                    : SR_WS_OP_BINARY,
               out_.data, out_.len);

    return Status::Ok();
}


void
HubConnection::keepalive(int64_t now_ns, int64_t interval_ns)
{
    sr_message_t  ping;

    if (state_ != State::kReady || now_ns - last_send_ns_ < interval_ns) {
        return;
    }

    if (target_.plain_websocket) {
        send_frame(SR_WS_OP_PING, nullptr, 0);
        return;
    }

    sr_message_init(&ping, SR_MSG_PING);
    send(ping);
    sr_message_clear(&ping);
}


void
HubConnection::close()
{
    static const unsigned char  code[2] = {
        SR_WS_CLOSE_NORMAL >> 8, SR_WS_CLOSE_NORMAL & 0xff
    };

    if (state_ == State::kClosed || state_ == State::kClosing) {
        return;
    }

    if (stream_ == nullptr || !stream_->is_open()) {
        http_->close();
        state_ = State::kClosed;
        return;
    }

    send_frame(SR_WS_OP_CLOSE, code, sizeof(code));
    state_ = State::kClosing;
}


void
HubConnection::on_connected()
{
    // Only the HTTP client's stream connects; it owns that event.
}


void
HubConnection::on_data(const unsigned char *data, size_t len)
{
    sr_ws_event_t  ev;
    sr_error_t     err;
    size_t         consumed;
    int            rc, close_code;
    int64_t        now;

    now = monotonic_ns();

    while (len > 0 && state_ != State::kClosed) {
        rc = sr_ws_parser_feed(&ws_, data, len, &consumed, &ev,
                               &close_code, &err);
        data += consumed;
        len -= consumed;

        if (rc == SR_AGAIN) {
            return;
        }

        if (rc != SR_OK) {
            fail(std::string("websocket: ") + err.str);
            return;
        }

        handle_ws_event(ev, now);
    }
}


void
HubConnection::handle_ws_event(const sr_ws_event_t &ev, int64_t now_ns)
{
    switch (ev.opcode) {

    case SR_WS_OP_TEXT:
    case SR_WS_OP_BINARY:
        handle_payload(ev.data, ev.len, now_ns);
        return;

    case SR_WS_OP_PING:
        send_frame(SR_WS_OP_PONG, ev.data, ev.len);
        return;

    case SR_WS_OP_CLOSE:
        if (state_ == State::kClosing) {
            stream_->close();
            state_ = State::kClosed;
            return;
        }

        // Echo the code, then let the server close the TCP connection.
        send_frame(SR_WS_OP_CLOSE, ev.data, ev.len < 2 ? 0 : 2);
        stream_->close_after_flush();
        fail("websocket closed by the server with "
             + std::to_string(ev.close_code));
        return;

    default:
        return;  // pong
    }
}


void
HubConnection::handle_payload(const unsigned char *data, size_t len,
    int64_t now_ns)
{
    if (target_.plain_websocket) {
        if (state_ == State::kReady) {
            listener_->on_plain_message(*this, data, len, now_ns);
        }
        return;
    }

    if (sr_buf_append(&in_, data, len) != SR_OK) {
        fail("hub: out of memory");
        return;
    }

    if (state_ == State::kHandshake && !parse_handshake()) {
        return;
    }

    if (state_ == State::kReady || state_ == State::kClosing) {
        parse_messages(now_ns);
    }
}


bool
HubConnection::parse_handshake()
{
    char        *server_error = nullptr;
    size_t       consumed;
    sr_error_t   err;
    int          rc;

    rc = sr_handshake_parse_response(in_.data, in_.len, &server_error,
                                     &consumed, &err);
    if (rc == SR_AGAIN) {
        return false;
    }

    if (rc != SR_OK) {
        fail(std::string("handshake: ") + err.str);
        return false;
    }

    if (server_error != nullptr) {
        std::string  reason = std::string("handshake: ") + server_error;
        free(server_error);
        fail(reason);
        return false;
    }

    sr_buf_consume(&in_, consumed);
    state_ = State::kReady;
    ready_ns_ = monotonic_ns();
    listener_->on_hub_ready(*this);

    return state_ == State::kReady;
}


void
HubConnection::parse_messages(int64_t now_ns)
{
    const unsigned char  *payload;
    size_t                payload_len, consumed;
    sr_message_t          msg;
    sr_error_t            err;
    int                   rc;

    while (in_.len > 0 && state_ != State::kClosed) {
        rc = sr_frame_next(target_.protocol, in_.data, in_.len,
                           target_.max_message, &payload, &payload_len,
                           &consumed, &err);
        if (rc == SR_AGAIN) {
            return;
        }
        if (rc != SR_OK) {
            fail(std::string("hub: ") + err.str);
            return;
        }

        if (state_ == State::kReady
            && listener_->on_hub_payload(*this, payload, payload_len, now_ns))
        {
            sr_buf_consume(&in_, consumed);
            continue;
        }

        rc = sr_message_decode_payload(target_.protocol, payload,
                                       payload_len, nullptr, &msg, &err);
        sr_buf_consume(&in_, consumed);

        if (rc == SR_ERR_UNSUPPORTED) {
            continue;  // a message type newer than this client
        }
        if (rc != SR_OK) {
            fail(std::string("hub: ") + err.str);
            return;
        }

        if (msg.type == SR_MSG_PING) {
            pings_received_++;
        } else if (msg.type == SR_MSG_CLOSE) {
            std::string  reason = "hub: server sent Close";
            if (msg.error != nullptr) {
                reason += std::string(": ") + msg.error;
            }
            sr_message_clear(&msg);
            fail(reason);
            return;
        } else if (state_ == State::kReady) {
            listener_->on_hub_message(*this, msg, now_ns);
        }

        sr_message_clear(&msg);
    }
}


void
HubConnection::on_closed(const std::string &reason)
{
    if (state_ == State::kClosing) {
        state_ = State::kClosed;
        return;
    }

    fail(reason);
}


void
HubConnection::fail(const std::string &reason)
{
    bool  quiet = state_ == State::kClosing;

    if (state_ == State::kClosed) {
        return;
    }

    state_ = State::kClosed;

    if (stream_ != nullptr) {
        stream_->close_after_flush();
    }
    http_->close();

    if (!quiet) {
        listener_->on_hub_closed(*this, reason);
    }
}

}  // namespace bench
