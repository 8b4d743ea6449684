// A small SignalR server for the generator's own tests, on the shared
// library's server role: GET /dev/token, POST negotiate, POST
// /api/v1/chats, the WebSocket upgrade and a ChatStreamHub look-alike
// (Stream replies with a user fragment and reply_tokens assistant
// fragments at token_rate; any Invocation gets an error Completion).
// It checks what a real edge checks: the bearer token and the
// negotiated connection token.

#ifndef SIGNALR_BENCH_MOCK_HUB_H
#define SIGNALR_BENCH_MOCK_HUB_H

#include <atomic>
#include <memory>
#include <thread>

#include "status.h"

namespace bench {

class MockHub {
public:
    struct Config {
        double  token_rate = 200;
        int     reply_tokens = 10;
    };

    struct Counts {
        std::atomic<int>  handshakes {0};
        std::atomic<int>  invocations {0};
        std::atomic<int>  streams {0};
        std::atomic<int>  cancels {0};
        std::atomic<int>  pings {0};
        std::atomic<int>  refused {0};    // 401 and 404 answers
    };

    explicit MockHub(Config config);
    ~MockHub();

    // Listens on 127.0.0.1 on a free port and serves in a thread.
    Status start();
    void stop();

    int port() const { return port_; }
    const Counts &counts() const { return counts_; }

    class Impl;

private:
    Config                 config_;
    Counts                 counts_;
    int                    port_ = 0;
    std::unique_ptr<Impl>  impl_;
    std::thread            thread_;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_MOCK_HUB_H
