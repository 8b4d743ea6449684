// Helpers of the stateful reconnect tests: a hub that records, and the bodies of the
// reconnect frames built and read with the shared library.

#pragma once

#include <string>
#include <utility>
#include <vector>

#include <cstring>

#include "fake_worker.h"
#include "hub.h"
#include "worker_link.h"

namespace signalrd::testing {

// Records what the registry hands it and lets the test send as a hub would.
class RecordingHub final : public Hub {
public:
    void on_connected(const ConnectionInfo &c) override { connected.push_back(c.id); }
    void on_disconnected(const ConnectionInfo &c) override { disconnected.push_back(c.id); }
    void shutdown() override {}
    void on_message(const ConnectionInfo &c, sr_message_t &msg) override
    {
        invoked.push_back(c.id + ":" + (msg.target ? msg.target : ""));
    }

    std::vector<std::string> connected, disconnected, invoked;
};

// A StreamItem of the invocation whose item is a string of `size` x's.
inline sr_message_t item(const std::string &invocation, size_t size = 10)
{
    sr_message_t m;
    sr_message_init(&m, SR_MSG_STREAM_ITEM);
    m.invocation_id = strdup(invocation.c_str());
    m.item = json_string(std::string(size, 'x').c_str());
    return m;
}

// The IPC form of a hub message, as the daemon keeps and sends it.
inline Bytes encoded(const sr_message_t &m)
{
    sr_buf_t b;
    sr_error_t err;
    sr_buf_init(&b);
    EXPECT_EQ(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &m, &b, &err), SR_OK) << err.str;
    Bytes out(b.data, b.data + b.len);
    sr_buf_free(&b);
    return out;
}

// A PARK body for token with `buffer` as the unacked messages.
inline Bytes state_body(const std::string &token, const std::vector<Bytes> &buffer,
                        uint64_t window_ms = 30000, uint64_t buffer_bytes = 100000,
                        const char *hub = "Test")
{
    std::vector<sr_ipc_bytes_t> list;
    uint64_t size = 0;
    for (const Bytes &b : buffer) {
        list.push_back({b.data(), b.size()});
        size += b.size();
    }
    sr_ipc_state_t s{};
    s.token = const_cast<char *>(token.c_str());
    s.who = {const_cast<char *>(hub), const_cast<char *>("alice"), SR_PROTOCOL_JSON,
             const_cast<char *>("WebSockets"), nullptr};
    s.received = 3;
    s.first = 5;
    s.buffer = list.data();
    s.buffer_count = list.size();
    s.buffer_size = size;
    s.window_ms = window_ms;
    s.buffer_bytes = buffer_bytes;

    sr_buf_t b;
    sr_error_t err;
    sr_buf_init(&b);
    EXPECT_EQ(sr_ipc_state_encode(&s, &b, &err), SR_OK) << err.str;
    Bytes out(b.data, b.data + b.len);
    sr_buf_free(&b);
    return out;
}

inline void send_bytes(FakeWorker &w, sr_ipc_type_t type, const std::string &conn,
                       const Bytes &body)
{
    sr_buf_t b{const_cast<unsigned char *>(body.data()), body.size(), body.size()};
    w.send(type, conn, &b);
}

inline void detach(FakeWorker &w, const std::string &conn, uint64_t window_ms, uint64_t bytes)
{
    sr_ipc_detach_t d{window_ms, bytes};
    sr_buf_t b;
    sr_error_t err;
    sr_buf_init(&b);
    ASSERT_EQ(sr_ipc_detach_encode(&d, &b, &err), SR_OK) << err.str;
    w.send(SR_IPC_DETACH, conn, &b);
    sr_buf_free(&b);
}

inline void resume(FakeWorker &w, const std::string &token, uint64_t ref)
{
    sr_ipc_resume_t r{const_cast<char *>(token.c_str()), ref};
    sr_buf_t b;
    sr_error_t err;
    sr_buf_init(&b);
    ASSERT_EQ(sr_ipc_resume_encode(&r, &b, &err), SR_OK) << err.str;
    w.send(SR_IPC_RESUME, "", &b);
    sr_buf_free(&b);
}

// OPEN with the "token" key a stateful worker adds.
inline void open_with_token(FakeWorker &w, const std::string &conn, const std::string &token)
{
    sr_ipc_open_t o{const_cast<char *>("Test"), const_cast<char *>("alice"), SR_PROTOCOL_JSON,
                    const_cast<char *>("WebSockets"), nullptr};
    sr_buf_t body;
    sr_error_t err;
    sr_buf_init(&body);
    ASSERT_EQ(sr_ipc_open_encode_token(&o, token.c_str(), &body, &err), SR_OK) << err.str;
    w.send(SR_IPC_OPEN, conn, &body);
    sr_buf_free(&body);
}

// An ADOPT frame, decoded.
struct Adoption {
    std::string conn;
    uint64_t ref = 0;
    Bytes state;
    std::vector<Bytes> appended;
};

inline Adoption adoption(const Frame &f)
{
    sr_ipc_adopt_t a{};
    sr_error_t err;
    Adoption out;
    EXPECT_EQ(sr_ipc_adopt_decode(f.body.data(), f.body.size(), &a, &err), SR_OK) << err.str;
    out.conn = f.conn;
    out.ref = a.ref;
    out.state.assign(a.state.data, a.state.data + a.state.len);
    for (size_t i = 0; i < a.appended_count; i++) {
        out.appended.emplace_back(a.appended[i].data, a.appended[i].data + a.appended[i].len);
    }
    sr_ipc_adopt_clear(&a);
    return out;
}

// The ref and reason of a RESUME_FAILED frame.
inline std::pair<uint64_t, std::string> refusal(const Frame &f)
{
    sr_ipc_resume_failed_t r{};
    sr_error_t err;
    EXPECT_EQ(sr_ipc_resume_failed_decode(f.body.data(), f.body.size(), &r, &err), SR_OK)
        << err.str;
    std::pair<uint64_t, std::string> out{r.ref, r.reason ? r.reason : ""};
    sr_ipc_resume_failed_clear(&r);
    return out;
}

}  // namespace signalrd::testing
