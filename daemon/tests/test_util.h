// Helpers shared by the daemon's tests: running coroutines to completion on a test's
// io_context, and a private redis-server.

#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <sys/types.h>

#include "asio_util.h"

namespace signalrd::testing {

// Runs coroutine on io until it finishes (or timeout passes) and returns its value.
template <typename T>
std::optional<T> run_coro(asio::io_context &io, asio::awaitable<T> coroutine,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10))
{
    std::optional<T> result;
    bool done = false;
    asio::co_spawn(io, std::move(coroutine), [&](std::exception_ptr, T value) {
        result = std::move(value);
        done = true;
    });
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done && std::chrono::steady_clock::now() < deadline) {
        io.run_for(std::chrono::milliseconds(10));
    }
    return result;
}

// Runs io until pred() holds or timeout passes; returns pred().
bool run_until(asio::io_context &io, const std::function<bool()> &pred,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Runs io for d.
void run_for(asio::io_context &io, std::chrono::milliseconds d);

// A redis-server of its own, on a free loopback port, in a temporary directory, with no
// persistence. Stopped (and the directory removed) on destruction.
class RedisServer {
public:
    RedisServer() = default;
    ~RedisServer();

    // Starts it and waits until it answers; false if it could not be started.
    bool start();
    void stop();

    int port() const { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

private:
    pid_t pid_ = -1;
    int port_ = 0;
    std::string dir_;
};

// A free TCP port on 127.0.0.1 (bound, read and released).
int free_port();

// A fresh temporary directory, removed by remove_tree().
std::string make_temp_dir();
void remove_tree(const std::string &dir);

}  // namespace signalrd::testing
