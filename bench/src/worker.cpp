#include "worker.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include <jansson.h>

#include "clock.h"
#include "event_loop.h"
#include "scenario.h"

namespace bench {

namespace {

// How long a finished worker waits for its close handshakes.
constexpr int64_t  kTeardownNs = 2 * kNsPerSec;

class ControlChannel : public IoHandler {
public:
    ControlChannel(int fd, Scenario **scenario, bool *lost)
        : fd_(fd), scenario_(scenario), lost_(lost)
    {
    }

    void on_io(uint32_t events) override;

private:
    void dispatch(const std::string &line);

    int          fd_;
    Scenario   **scenario_;
    bool        *lost_;
    std::string  pending_;
    bool         closed_ = false;
};


void
ControlChannel::on_io(uint32_t events)
{
    char     buf[256];
    ssize_t  n;
    size_t   eol;

    if (closed_) {
        return;
    }

    n = read(fd_, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    if (n <= 0) {
        // The coordinator is gone: stop as if told to.
        closed_ = true;
        *lost_ = true;
        dispatch("stop");
        return;
    }

    pending_.append(buf, size_t(n));

    while ((eol = pending_.find('\n')) != std::string::npos) {
        std::string  line = pending_.substr(0, eol);

        pending_.erase(0, eol + 1);
        dispatch(line);
    }
}


void
ControlChannel::dispatch(const std::string &line)
{
    if (line == "start") {
        (*scenario_)->start();
    } else if (line == "stop") {
        (*scenario_)->stop();
    }
}


void
send_report(int fd, const char *event, const Results &results)
{
    json_t   *doc;
    char     *text;
    size_t    len, off = 0;
    ssize_t   n;

    doc = json_pack("{ssso}", "event", event, "results", results.to_json());
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);

    std::string  line = std::string(text) + "\n";
    free(text);

    // Blocking: the coordinator reads every line it is sent.
    len = line.size();
    while (off < len) {
        n = write(fd, line.data() + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        off += size_t(n);
    }
}


std::unique_ptr<Scenario>
make_scenario(WorkerContext &ctx)
{
    if (ctx.opts.scenario == "chat") {
        return make_chat_scenario(ctx);
    }
    if (ctx.opts.scenario == "invoke") {
        return make_invoke_scenario(ctx);
    }
    if (ctx.opts.scenario == "broadcast") {
        return make_broadcast_scenario(ctx);
    }
    return make_idle_scenario(ctx);
}


void
teardown_step(EventLoop &loop, Scenario &scenario, int64_t deadline)
{
    if (scenario.teardown() || monotonic_ns() >= deadline) {
        loop.stop();
        return;
    }

    loop.add_timer(50 * kNsPerMs, [&loop, &scenario, deadline] {
        teardown_step(loop, scenario, deadline);
    });
}

}  // namespace


int
run_worker(const Options &opts, size_t first, size_t count,
    int control_fd, int report_fd)
{
    EventLoop   loop;
    Scenario   *raw = nullptr;
    bool        lost = false;

    if (!loop.init().ok()) {
        return 1;
    }

    WorkerContext  ctx{loop, opts, first, count, nullptr, nullptr};

    ctx.ready = [report_fd](const Results &r) {
        send_report(report_fd, "ready", r);
    };
    ctx.finish = [&](const Results &r) {
        if (!lost) {
            send_report(report_fd, "result", r);
        }
        teardown_step(loop, *raw, monotonic_ns() + kTeardownNs);
    };

    std::unique_ptr<Scenario>  scenario = make_scenario(ctx);
    ControlChannel             control(control_fd, &raw, &lost);

    raw = scenario.get();

    if (!loop.add(control_fd, EPOLLIN, &control).ok()) {
        return 1;
    }

    scenario->setup();
    loop.run();

    loop.remove(control_fd);

    return 0;
}

}  // namespace bench
