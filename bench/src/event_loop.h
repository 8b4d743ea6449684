// One epoll loop per worker process: file descriptors with a handler
// each, and one-shot timers on the monotonic clock.
//
// Handlers are owned elsewhere and must outlive their registration; a
// handler that closed its descriptor may still see one stale event from
// the batch in progress and must ignore it.

#ifndef SIGNALR_BENCH_EVENT_LOOP_H
#define SIGNALR_BENCH_EVENT_LOOP_H

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "status.h"

namespace bench {

class IoHandler {
public:
    virtual ~IoHandler() = default;

    // events: the EPOLLIN / EPOLLOUT / EPOLLERR / EPOLLHUP bits.
    virtual void on_io(uint32_t events) = 0;
};


class EventLoop {
public:
    using TimerKey = std::pair<int64_t, uint64_t>;  // deadline, sequence

    EventLoop() = default;
    ~EventLoop();

    EventLoop(const EventLoop &) = delete;
    EventLoop &operator=(const EventLoop &) = delete;

    Status init();

    Status add(int fd, uint32_t events, IoHandler *handler);
    Status modify(int fd, uint32_t events, IoHandler *handler);
    void remove(int fd);

    // Runs fn once, delay_ns from now. The key cancels it.
    TimerKey add_timer(int64_t delay_ns, std::function<void()> fn);
    void cancel_timer(const TimerKey &key);

    // Dispatches events and due timers until stop() is called.
    void run();
    void stop() { stopped_ = true; }

private:
    void run_timers();
    int next_wait_ms() const;

    int                                          epfd_ = -1;
    bool                                         stopped_ = false;
    uint64_t                                     timer_seq_ = 0;
    std::map<TimerKey, std::function<void()>>    timers_;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_EVENT_LOOP_H
