#include "scenario.h"

#include <sys/resource.h>

#include <cstdio>

#include "clock.h"

namespace bench {

namespace {

// A connection still not ready after this long has failed its setup.
constexpr int64_t  kSetupTimeoutNs = 30 * kNsPerSec;

std::string
shell_quote(const std::string &s)
{
    std::string  out = "'";

    for (char c : s) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }

    return out + "'";
}


int64_t
timeval_us(const struct timeval &tv)
{
    return int64_t(tv.tv_sec) * 1000000 + tv.tv_usec;
}

}  // namespace


HubScenario::HubScenario(WorkerContext &ctx)
    : ctx_(ctx)
{
    const Options  &o = ctx.opts;

    target_.addr = o.addr;
    target_.host = o.host_header;
    target_.hub_path = o.hub_path;
    target_.protocol = o.protocol;
    target_.negotiate = o.negotiate;
    target_.plain_websocket = o.plain_websocket;
    if (!o.token_args.empty()) {
        target_.token_query = "&" + o.token_args;
    }

    for (size_t i = 0; i < ctx.count; i++) {
        size_t              global = ctx.first + i;
        const sockaddr_in  *source = nullptr;

        if (!o.source_addrs.empty()) {
            source = &o.source_addrs[global % o.source_addrs.size()];
        }

        hubs_.push_back(std::make_unique<HubConnection>(
            ctx.loop, target_, source,
            o.user_prefix + std::to_string(o.user_offset + global),
            i, this));
    }

    settled_flags_.assign(ctx.count, false);
}


void
HubScenario::setup()
{
    if (!ctx_.opts.signalrctl.empty()) {
        fetch_tokens();
    }

    ctx_.loop.add_timer(kNsPerSec, [this] { sweep(); });

    if (hubs_.empty()) {
        setup_done_ = true;
        on_setup_done();
        if (!defer_ready_) {
            ctx_.ready(setup_results_);
        }
        return;
    }

    start_next_setups();
}


void
HubScenario::fetch_tokens()
{
    char  line[4096];

    tokens_.assign(hubs_.size(), "");

    for (size_t i = 0; i < hubs_.size(); i++) {
        std::string  cmd = shell_quote(ctx_.opts.signalrctl)
                           + " token --sub " + shell_quote(hubs_[i]->user());
        if (!ctx_.opts.dev_key.empty()) {
            cmd += " --key " + shell_quote(ctx_.opts.dev_key);
        }

        FILE  *f = popen(cmd.c_str(), "r");
        if (f == nullptr) {
            continue;
        }

        if (fgets(line, sizeof(line), f) != nullptr) {
            tokens_[i] = line;
            while (!tokens_[i].empty()
                   && (tokens_[i].back() == '\n'
                       || tokens_[i].back() == '\r'))
            {
                tokens_[i].pop_back();
            }
        }

        if (pclose(f) != 0) {
            tokens_[i].clear();
        }
    }
}


void
HubScenario::start_next_setups()
{
    size_t  i;

    if (starting_) {
        return;  // a setup failed inside start(): the outer loop goes on
    }
    starting_ = true;

    while (in_setup_ < ctx_.opts.setup_concurrency
           && next_setup_ < hubs_.size())
    {
        i = next_setup_++;
        in_setup_++;

        if (!tokens_.empty() && tokens_[i].empty()) {
            fail_setup(i, "token: signalrctl failed");
            continue;
        }

        hubs_[i]->start(tokens_.empty() ? "" : tokens_[i]);
    }

    starting_ = false;
}


void
HubScenario::on_hub_ready(HubConnection &hub)
{
    if (settled_flags_[hub.index()]) {
        return;
    }

    setup_results_.count("ready");
    if (hub.token_retries() > 0) {
        setup_results_.count("token_retries", hub.token_retries());
    }
    setup_results_.record("setup", (hub.ready_ns() - hub.started_ns())
                                   / kNsPerUs);
    on_ready(hub);
    settle(hub.index());
}


void
HubScenario::on_hub_closed(HubConnection &hub, const std::string &reason)
{
    if (!settled_flags_[hub.index()]) {
        fail_setup(hub.index(), reason);
        return;
    }

    if (!tearing_down_) {
        on_lost(hub, reason);
    }
}


void
HubScenario::on_lost(HubConnection &hub, const std::string &reason)
{
    results_.count("connections_lost");
    results_.error(reason);
}


void
HubScenario::fail_setup(size_t i, const std::string &reason)
{
    setup_results_.count("failed");
    setup_results_.error(reason);
    settle(i);
}


void
HubScenario::settle(size_t i)
{
    settled_flags_[i] = true;
    settled_++;
    in_setup_--;

    if (settled_ < hubs_.size()) {
        start_next_setups();
        return;
    }

    setup_done_ = true;
    on_setup_done();
    if (!defer_ready_) {
        ctx_.ready(setup_results_);
    }
}


void
HubScenario::sweep()
{
    int64_t  now = monotonic_ns();
    int64_t  interval = int64_t(ctx_.opts.keepalive_s * kNsPerSec);

    for (size_t i = 0; i < hubs_.size(); i++) {
        HubConnection  &h = *hubs_[i];

        if (h.state() == HubConnection::State::kReady) {
            h.keepalive(now, interval);
        } else if (!settled_flags_[i] && h.started_ns() != 0
                   && now - h.started_ns() > kSetupTimeoutNs)
        {
            h.close();
            fail_setup(i, "setup timed out");
        }
    }

    ctx_.loop.add_timer(kNsPerSec, [this] { sweep(); });
}


void
HubScenario::start_warmup()
{
    int64_t  warmup_ns = int64_t(ctx_.opts.warmup_s * double(kNsPerSec));

    measure_from_ns_ = monotonic_ns() + warmup_ns;

    ctx_.loop.add_timer(warmup_ns, [this] {
        measuring_ = true;
        begin_measurement();
    });
}


void
HubScenario::begin_measurement()
{
    struct rusage  ru;

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cpu_user_start_ = timeval_us(ru.ru_utime);
        cpu_system_start_ = timeval_us(ru.ru_stime);
    }
}


void
HubScenario::end_measurement(int64_t window_ns)
{
    struct rusage  ru;

    if (finished_) {
        return;
    }
    finished_ = true;

    results_.window_us = window_ns / kNsPerUs;

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        results_.cpu_user_us = timeval_us(ru.ru_utime) - cpu_user_start_;
        results_.cpu_system_us = timeval_us(ru.ru_stime)
                                 - cpu_system_start_;
    }

    ctx_.finish(results_);
}


bool
HubScenario::teardown()
{
    bool  all_closed = true;

    tearing_down_ = true;

    for (auto &h : hubs_) {
        h->close();
        if (h->state() != HubConnection::State::kClosed) {
            all_closed = false;
        }
    }

    return all_closed;
}

}  // namespace bench
