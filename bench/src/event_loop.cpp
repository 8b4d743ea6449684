#include "event_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "clock.h"

namespace bench {

namespace {

constexpr int  kMaxEvents = 256;

}  // namespace


EventLoop::~EventLoop()
{
    if (epfd_ >= 0) {
        close(epfd_);
    }
}


Status
EventLoop::init()
{
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
        return Status::Error(std::string("epoll_create1() failed: ")
                             + strerror(errno));
    }

    return Status::Ok();
}


Status
EventLoop::add(int fd, uint32_t events, IoHandler *handler)
{
    struct epoll_event  ev {};

    ev.events = events;
    ev.data.ptr = handler;

    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return Status::Error(std::string("epoll_ctl(ADD) failed: ")
                             + strerror(errno));
    }

    return Status::Ok();
}


Status
EventLoop::modify(int fd, uint32_t events, IoHandler *handler)
{
    struct epoll_event  ev {};

    ev.events = events;
    ev.data.ptr = handler;

    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
        return Status::Error(std::string("epoll_ctl(MOD) failed: ")
                             + strerror(errno));
    }

    return Status::Ok();
}


void
EventLoop::remove(int fd)
{
    // Failure means the descriptor was not registered: nothing to undo.
    epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}


EventLoop::TimerKey
EventLoop::add_timer(int64_t delay_ns, std::function<void()> fn)
{
    TimerKey  key(monotonic_ns() + delay_ns, ++timer_seq_);

    timers_.emplace(key, std::move(fn));

    return key;
}


void
EventLoop::cancel_timer(const TimerKey &key)
{
    timers_.erase(key);
}


void
EventLoop::run()
{
    struct epoll_event  events[kMaxEvents];
    int                 n;

    stopped_ = false;

    while (!stopped_) {
        n = epoll_wait(epfd_, events, kMaxEvents, next_wait_ms());
        if (n < 0 && errno != EINTR) {
            return;
        }

        for (int i = 0; i < n && !stopped_; i++) {
            static_cast<IoHandler *>(events[i].data.ptr)
                ->on_io(events[i].events);
        }

        run_timers();
    }
}


void
EventLoop::run_timers()
{
    int64_t  now;

    now = monotonic_ns();

    while (!timers_.empty() && !stopped_) {
        auto  it = timers_.begin();

        if (it->first.first > now) {
            break;
        }

        // The callback may add or cancel timers: take it out first.
        auto  fn = std::move(it->second);
        timers_.erase(it);
        fn();
    }
}


int
EventLoop::next_wait_ms() const
{
    int64_t  wait;

    if (timers_.empty()) {
        return 1000;
    }

    wait = timers_.begin()->first.first - monotonic_ns();
    if (wait <= 0) {
        return 0;
    }

    // Round up so that a timer never fires a little early.
    return int(std::min<int64_t>((wait + kNsPerMs - 1) / kNsPerMs, 1000));
}

}  // namespace bench
