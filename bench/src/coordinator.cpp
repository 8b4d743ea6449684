#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <jansson.h>

#include "clock.h"
#include "proc_stats.h"
#include "report.h"
#include "results.h"
#include "worker.h"

namespace bench {

namespace {

// Room for a worker to report after "stop", and for setups to settle.
constexpr int64_t  kStopGraceNs = 15 * kNsPerSec;
constexpr int64_t  kSetupBudgetNs = 120 * kNsPerSec;

struct Child {
    pid_t                   pid = -1;
    int                     control = -1;   // we write
    int                     report = -1;    // we read
    std::string             pending;
    bool                    eof = false;
    std::optional<Results>  ready;
    std::optional<Results>  result;
};


void
raise_fd_limit(const Options &opts)
{
    struct rlimit  rl;
    size_t         share = (opts.connections + opts.procs - 1) / opts.procs;
    rlim_t         need;

    // A worker's share of sockets: two a chat connection (hub and REST),
    // one otherwise, and a margin.
    need = (opts.scenario == "chat" ? 2 : 1) * share + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return;
    }

    if (rl.rlim_max < need) {
        struct rlimit  more = {need, need};

        // Only root may go past the hard limit; ulimit -n is the way
        // otherwise.
        if (setrlimit(RLIMIT_NOFILE, &more) == 0) {
            return;
        }
    }

    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    if (rl.rlim_cur < need) {
        fprintf(stderr, "signalr-bench: warning: fd limit %llu is low for "
                "%zu connections a process: raise it with ulimit -n or "
                "use more --procs\n",
                (unsigned long long) rl.rlim_cur, share);
    }
}


Status
spawn(const Options &opts, size_t first, size_t count, Child *c)
{
    int  control[2], report[2];

    if (pipe2(control, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) {
        return Status::Error(std::string("pipe2() failed: ")
                             + strerror(errno));
    }

    fflush(nullptr);
    c->pid = fork();

    if (c->pid < 0) {
        return Status::Error(std::string("fork() failed: ")
                             + strerror(errno));
    }

    if (c->pid == 0) {
        close(control[1]);
        close(report[0]);
        _exit(run_worker(opts, first, count, control[0], report[1]));
    }

    close(control[0]);
    close(report[1]);
    c->control = control[1];
    c->report = report[0];

    return Status::Ok();
}


void
handle_line(Child *c, const std::string &line)
{
    json_t      *doc = json_loads(line.c_str(), 0, nullptr);
    const char  *event = json_string_value(json_object_get(doc, "event"));
    Results      r;

    if (event != nullptr
        && Results::from_json(json_object_get(doc, "results"), &r).ok())
    {
        if (strcmp(event, "ready") == 0) {
            c->ready = std::move(r);
        } else if (strcmp(event, "result") == 0) {
            c->result = std::move(r);
        }
    }

    json_decref(doc);
}


void
read_child(Child *c)
{
    char     buf[65536];
    ssize_t  n;
    size_t   eol;

    n = read(c->report, buf, sizeof(buf));
    if (n <= 0) {
        if (n < 0 && errno == EINTR) {
            return;
        }
        c->eof = true;
        return;
    }

    c->pending.append(buf, size_t(n));

    while ((eol = c->pending.find('\n')) != std::string::npos) {
        handle_line(c, c->pending.substr(0, eol));
        c->pending.erase(0, eol + 1);
    }
}


// Reads what the workers send until done() holds for every worker still
// alive, or until the deadline.
template <typename Done>
void
pump(std::vector<Child> &children, int64_t deadline, Done done)
{
    std::vector<struct pollfd>  fds;
    std::vector<Child *>        who;
    int64_t                     left;

    for (;;) {
        fds.clear();
        who.clear();

        for (auto &c : children) {
            if (!c.eof && !done(c)) {
                fds.push_back({c.report, POLLIN, 0});
                who.push_back(&c);
            }
        }

        left = deadline - monotonic_ns();
        if (fds.empty() || left <= 0) {
            return;
        }

        if (poll(fds.data(), fds.size(), int(left / kNsPerMs) + 1) < 0
            && errno != EINTR)
        {
            return;
        }

        for (size_t i = 0; i < fds.size(); i++) {
            if (fds[i].revents != 0) {
                read_child(who[i]);
            }
        }
    }
}


// Lets the measurement run, still draining the pipes.
void
wait_for(std::vector<Child> &children, double seconds)
{
    int64_t  deadline = monotonic_ns() + int64_t(seconds * kNsPerSec);

    pump(children, deadline, [](const Child &c) { return c.eof; });

    while (monotonic_ns() < deadline) {
        usleep(10000);
    }
}


void
tell(std::vector<Child> &children, const char *line)
{
    for (auto &c : children) {
        if (!c.eof && write(c.control, line, strlen(line)) < 0) {
            c.eof = true;
        }
    }
}


std::vector<ProcSample>
sample_all(const std::vector<ProcTarget> &targets)
{
    std::vector<ProcSample>  samples;

    for (const auto &t : targets) {
        samples.push_back(sample_process(t));
    }

    return samples;
}


void
emit(const Options &opts, json_t *report)
{
    if (!opts.output.empty()
        && json_dump_file(report, opts.output.c_str(), JSON_INDENT(2)) != 0)
    {
        fprintf(stderr, "signalr-bench: writing \"%s\" failed\n",
                opts.output.c_str());
    }

    if (opts.json) {
        json_dumpf(report, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        print_table(stdout, report);
    }
}


Status
spawn_all(const Options &opts, std::vector<Child> &children)
{
    size_t  first = 0;

    for (size_t i = 0; i < children.size(); i++) {
        size_t  count = opts.connections / children.size()
                        + (i < opts.connections % children.size() ? 1 : 0);

        Status  s = spawn(opts, first, count, &children[i]);
        if (!s.ok()) {
            return s;
        }
        first += count;
    }

    return Status::Ok();
}


// Starts the measurement and waits until it should stop.
void
measure(const Options &opts, std::vector<Child> &children,
    const std::vector<ProcTarget> &targets, ProcReport *procs)
{
    int64_t  start = monotonic_ns();
    int64_t  window_start;

    if (opts.scenario == "idle" || opts.scenario == "chat") {
        procs->at_start = sample_all(targets);
    }

    tell(children, "start\n");

    if (opts.scenario == "chat") {
        pump(children, start + int64_t(opts.timeout_s * kNsPerSec),
             [](const Child &c) { return c.result.has_value(); });
        procs->after = sample_all(targets);
        procs->hold_s = double(monotonic_ns() - start) / kNsPerSec;
    } else if (opts.scenario == "invoke" || opts.scenario == "broadcast") {
        // the servers' CPU over the window the workers measure
        wait_for(children, opts.warmup_s);
        procs->at_start = sample_all(targets);
        window_start = monotonic_ns();
        wait_for(children, opts.duration_s);
        procs->after = sample_all(targets);
        procs->hold_s = double(monotonic_ns() - window_start) / kNsPerSec;
    } else {
        wait_for(children, opts.hold_s);
        procs->after = sample_all(targets);
        procs->hold_s = double(monotonic_ns() - start) / kNsPerSec;
    }

    tell(children, "stop\n");
    pump(children, monotonic_ns() + kStopGraceNs,
         [](const Child &c) { return c.result.has_value(); });
}


void
reap(std::vector<Child> &children)
{
    for (auto &c : children) {
        if (c.control >= 0) {
            close(c.control);   // a worker still running sees EOF
        }
        if (c.report >= 0) {
            close(c.report);
        }
        if (c.pid > 0) {
            waitpid(c.pid, nullptr, 0);
        }
    }
}

}  // namespace


int
run_coordinator(const Options &opts)
{
    std::vector<Child>       children(opts.procs);
    std::vector<ProcTarget>  targets;
    ProcReport               procs;
    Results                  setup, run;
    bool                     complete = true;

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(opts);

    bool  sampled = opts.scenario == "idle" || !opts.pids.empty()
                    || opts.nginx_master > 0 || opts.daemon_pid > 0
                    || opts.redis_pid > 0;

    if (sampled) {
        targets = find_targets(opts.pids, opts.nginx_master, opts.daemon_pid,
                               opts.redis_pid);
        if (targets.empty()) {
            fprintf(stderr, "signalr-bench: warning: no nginx worker or "
                    "signalrd process found to sample\n");
        }
        procs.ticks_per_s = sysconf(_SC_CLK_TCK);
        procs.before = sample_all(targets);
    }

    Status  s = spawn_all(opts, children);
    if (!s.ok()) {
        fprintf(stderr, "signalr-bench: %s\n", s.message().c_str());
        reap(children);
        return 1;
    }

    pump(children, monotonic_ns() + kSetupBudgetNs,
         [](const Child &c) { return c.ready.has_value(); });

    for (const auto &c : children) {
        if (c.ready) {
            setup.merge(*c.ready);
        }
    }
    fprintf(stderr, "signalr-bench: %s: %llu connections ready, %llu "
            "failed\n", opts.scenario.c_str(),
            (unsigned long long) setup.counter("ready"),
            (unsigned long long) setup.counter("failed"));

    measure(opts, children, targets, &procs);

    for (const auto &c : children) {
        if (c.result) {
            run.merge(*c.result);
        } else {
            complete = false;
            run.error("a worker process sent no results");
        }
    }
    reap(children);

    json_t  *report = build_report(opts, setup, run,
                                   sampled ? &procs : nullptr);
    emit(opts, report);
    json_decref(report);

    return complete && setup.counter("ready") > 0 ? 0 : 1;
}

}  // namespace bench
