// The nginx worker's side of a worker link, for tests: frames built and parsed with the
// shared library, read without blocking so that the daemon's loop can run meanwhile.

#pragma once

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <signalr/ipc.h>

#include "test_util.h"

namespace signalrd::testing {

struct Frame {
    uint8_t type;
    std::string conn;
    std::vector<unsigned char> body;
};

// The nginx worker's side of a link, driven by hand on the test's loop.
class FakeWorker {
public:
    FakeWorker(asio::io_context &io, const std::string &path) : io_(io), socket_(io)
    {
        asio::error_code ec;
        socket_.connect(asio::local::stream_protocol::endpoint(path), ec);
        EXPECT_FALSE(ec) << ec.message();
        socket_.non_blocking(true, ec);
        sr_buf_init(&in_);
    }

    ~FakeWorker() { sr_buf_free(&in_); }

    void send(sr_ipc_type_t type, const std::string &conn, const sr_buf_t *body)
    {
        sr_buf_t out;
        sr_error_t err;
        sr_buf_init(&out);
        ASSERT_EQ(sr_ipc_write(&out, type, conn.data(), conn.size(), body ? body->data : nullptr,
                               body ? body->len : 0, &err),
                  SR_OK)
            << err.str;
        send_raw(out.data, out.len);
        sr_buf_free(&out);
    }

    void send_raw(const void *data, size_t len)
    {
        asio::error_code ec;
        socket_.non_blocking(false, ec);
        asio::write(socket_, asio::buffer(data, len), ec);
        socket_.non_blocking(true, ec);
        EXPECT_FALSE(ec) << ec.message();
    }

    void hello(uint32_t version = SR_IPC_VERSION, int64_t pid = 4242)
    {
        sr_buf_t body;
        sr_error_t err;
        sr_ipc_hello_t h{version, pid, const_cast<char *>("test-node")};
        sr_buf_init(&body);
        ASSERT_EQ(sr_ipc_hello_encode(&h, &body, &err), SR_OK) << err.str;
        send(SR_IPC_HELLO, "", &body);
        sr_buf_free(&body);
    }

    void open(const std::string &conn, const char *hub, const char *user)
    {
        sr_buf_t body;
        sr_error_t err;
        sr_ipc_open_t o{const_cast<char *>(hub), const_cast<char *>(user), SR_PROTOCOL_JSON,
                        const_cast<char *>("WebSockets"), json_object()};
        sr_buf_init(&body);
        ASSERT_EQ(sr_ipc_open_encode(&o, &body, &err), SR_OK) << err.str;
        json_decref(o.claims);
        send(SR_IPC_OPEN, conn, &body);
        sr_buf_free(&body);
    }

    void invoke(const std::string &conn, const sr_message_t &msg)
    {
        sr_buf_t body;
        sr_error_t err;
        sr_buf_init(&body);
        ASSERT_EQ(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg, &body, &err), SR_OK)
            << err.str;
        send(SR_IPC_INVOKE, conn, &body);
        sr_buf_free(&body);
    }

    // Reads what has arrived without blocking.
    void pump()
    {
        unsigned char buf[65536];
        for (;;) {
            asio::error_code ec;
            size_t n = socket_.read_some(asio::buffer(buf), ec);
            if (ec == asio::error::would_block) {
                break;
            }
            if (ec) {
                closed_ = true;
                break;
            }
            sr_buf_append(&in_, buf, n);
        }
        for (;;) {
            sr_ipc_frame_t f;
            size_t consumed;
            sr_error_t err;
            if (sr_ipc_parse(in_.data, in_.len, 0, &f, &consumed, &err) != SR_OK) {
                break;
            }
            frames_.push_back({f.type, std::string(f.conn_id, f.conn_id_len),
                               std::vector<unsigned char>(f.body, f.body + f.body_len)});
            sr_buf_consume(&in_, consumed);
        }
    }

    bool wait(const std::function<bool()> &pred)
    {
        return run_until(io_, [&] {
            pump();
            return pred();
        });
    }

    const Frame *find(uint8_t type, size_t skip = 0)
    {
        for (const Frame &f : frames_) {
            if (f.type == type && skip-- == 0) {
                return &f;
            }
        }
        return nullptr;
    }

    size_t count(uint8_t type) const
    {
        size_t n = 0;
        for (const Frame &f : frames_) {
            n += f.type == type;
        }
        return n;
    }

    bool closed() const { return closed_; }
    void close() { socket_.close(); }
    const std::vector<Frame> &frames() const { return frames_; }

private:
    asio::io_context &io_;
    asio::local::stream_protocol::socket socket_;
    sr_buf_t in_;
    std::vector<Frame> frames_;
    bool closed_ = false;
};

}  // namespace signalrd::testing
