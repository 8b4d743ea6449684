#include "report.h"

#include <ctime>
#include <map>
#include <string>

#include <signalr/handshake.h>

namespace bench {

namespace {

struct Description {
    const char  *key;
    const char  *text;
};

// In the order the table shows them.
const Description  kHistograms[] = {
    {"setup", "connection setup (token to handshake)"},
    {"post", "POST /api/v1/chats to 201"},
    {"ttff", "first assistant fragment, from POST"},
    {"ttff_stream", "first assistant fragment, from Stream"},
    {"gap", "gap between assistant fragments"},
    {"gap_excess", "gap beyond nominal 1/rate (>= 0)"},
    {"schedule_lateness", "behind nominal schedule (>= 0)"},
    {"fragment_age", "fragment age, from the UUIDv7 id"},
    {"fragment_age_streaming", "fragment age, while all conversations stream"},
    {"reply", "whole reply, POST to final fragment"},
    {"round_trip", "Invocation to Completion"},
    {"delivery", "broadcast: publish to subscriber's read"},
    {"publish", "broadcast: publish request to answer"},
};


json_t *
summary(const Histogram &h)
{
    return json_pack("{sIsfsfsfsfsfsf}",
                     "count", json_int_t(h.count()),
                     "mean", h.mean() / 1000.0,
                     "min", double(h.min()) / 1000.0,
                     "p50", double(h.percentile(50)) / 1000.0,
                     "p90", double(h.percentile(90)) / 1000.0,
                     "p99", double(h.percentile(99)) / 1000.0,
                     "max", double(h.max()) / 1000.0);
}


json_t *
latencies(const Results &run, const Results &setup)
{
    json_t  *out = json_object();

    for (const auto &d : kHistograms) {
        const Results  &from = std::string(d.key) == "setup" ? setup : run;
        auto            it = from.histograms.find(d.key);

        if (it != from.histograms.end() && it->second.count() > 0) {
            json_t  *s = summary(it->second);

            json_object_set_new(s, "what", json_string(d.text));
            json_object_set_new(out, d.key, s);
        }
    }

    return out;
}


json_t *
config_json(const Options &o)
{
    json_t  *sources = json_array();

    for (const auto &s : o.sources) {
        json_array_append_new(sources, json_string(s.c_str()));
    }

    return json_pack("{sssssssIsIsosfsfsfsfsIsbsssbsssfsI}",
                     "url", o.url.c_str(),
                     "hub", o.hub_path.c_str(),
                     "protocol", sr_protocol_name(o.protocol),
                     "connections", json_int_t(o.connections),
                     "procs", json_int_t(o.procs),
                     "sources", sources,
                     "duration_s", o.duration_s,
                     "warmup_s", o.warmup_s,
                     "hold_s", o.hold_s,
                     "token_rate", o.token_rate,
                     "inflight", json_int_t(o.inflight),
                     "negotiate", o.negotiate,
                     "target", o.target.c_str(),
                     "plain_websocket", o.plain_websocket,
                     "publish", o.publish_url.c_str(),
                     "rate", o.rate,
                     "payload_bytes", json_int_t(o.payload_bytes));
}


std::string
utc_now()
{
    char       buf[32];
    time_t     t = time(nullptr);
    struct tm  tm;

    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);

    return buf;
}


const ProcSample *
find_pid(const std::vector<ProcSample> &samples, int pid)
{
    for (const auto &s : samples) {
        if (s.pid == pid && s.ok) {
            return &s;
        }
    }

    return nullptr;
}


struct RoleTotals {
    json_t    *pids = json_array();
    uint64_t   rss_before = 0, rss_after = 0, pss_before = 0, pss_after = 0;
    uint64_t   ticks = 0;
    bool       complete = true;   // every process seen in every sample
};


// The samples added up per process role: memory from before any
// connection to the end, CPU from the start of the hold or window.
std::map<std::string, RoleTotals>
role_totals(const ProcReport &p)
{
    std::map<std::string, RoleTotals>  roles;

    for (const auto &after : p.after) {
        RoleTotals        &t = roles[after.role];
        const ProcSample  *before = find_pid(p.before, after.pid);
        const ProcSample  *start = find_pid(p.at_start, after.pid);

        json_array_append_new(t.pids, json_integer(after.pid));
        if (!after.ok || before == nullptr || start == nullptr
            || !start->ok)
        {
            t.complete = false;
            continue;
        }

        t.rss_before += before->rss_kb;
        t.rss_after += after.rss_kb;
        t.pss_before += before->pss_kb;
        t.pss_after += after.pss_kb;
        t.ticks += after.cpu_ticks - start->cpu_ticks;
    }

    return roles;
}


json_t *
processes_json(const ProcReport &p, uint64_t connections)
{
    json_t  *out = json_array();

    for (auto &[role, t] : role_totals(p)) {
        double  per = connections ? 1024.0 / double(connections) : 0;
        double  cpu_s = double(t.ticks) / double(p.ticks_per_s);

        json_array_append_new(out, json_pack(
            "{sssosbsIsIsIsIsfsfsfsf}",
            "role", role.c_str(), "pids", t.pids,
            "complete", t.complete,
            "rss_kb_before", json_int_t(t.rss_before),
            "rss_kb_after", json_int_t(t.rss_after),
            "pss_kb_before", json_int_t(t.pss_before),
            "pss_kb_after", json_int_t(t.pss_after),
            "rss_bytes_per_connection",
            (double(t.rss_after) - double(t.rss_before)) * per,
            "pss_bytes_per_connection",
            (double(t.pss_after) - double(t.pss_before)) * per,
            "cpu_s_during_hold", cpu_s,
            "cpu_percent_of_core", p.hold_s > 0 ? 100 * cpu_s / p.hold_s
                                                : 0.0));
    }

    return out;
}


// CPU of the server processes over the measured window, per role, and
// what one delivered message cost them: a figure that holds when the
// run is bound by latency rather than by CPU.
json_t *
window_cpu_json(const ProcReport &p, double delivered)
{
    json_t  *out = json_array();

    for (auto &[role, t] : role_totals(p)) {
        double  cpu_s = double(t.ticks) / double(p.ticks_per_s);

        json_array_append_new(out, json_pack(
            "{sssosbsfsfsf}",
            "role", role.c_str(), "pids", t.pids,
            "complete", t.complete,
            "cpu_s", cpu_s,
            "cpu_percent_of_core", p.hold_s > 0 ? 100 * cpu_s / p.hold_s
                                                : 0.0,
            "us_per_delivery", delivered > 0 ? 1e6 * cpu_s / delivered
                                             : 0.0));
    }

    return out;
}

}  // namespace


json_t *
counters_json(const std::map<std::string, uint64_t> &m)
{
    json_t  *out = json_object();

    for (const auto &[k, v] : m) {
        json_object_set_new(out, k.c_str(), json_integer(json_int_t(v)));
    }

    return out;
}


json_t *
build_report(const Options &opts, const Results &setup, const Results &run,
    const ProcReport *procs)
{
    double   window_s = double(run.window_us) / 1e6;
    double   delivered = double(run.counter("delivered"));
    json_t  *report;

    report = json_object();
    json_object_set_new(report, "scenario",
                        json_string(opts.scenario.c_str()));
    json_object_set_new(report, "label", json_string(opts.label.c_str()));
    json_object_set_new(report, "date", json_string(utc_now().c_str()));
    json_object_set_new(report, "config", config_json(opts));
    json_object_set_new(report, "setup", json_pack(
        "{sIsIsIsIsIso}",
        "ready", json_int_t(setup.counter("ready")),
        "token_retries", json_int_t(setup.counter("token_retries")),
        "failed", json_int_t(setup.counter("failed")),
        "joined", json_int_t(setup.counter("joined")),
        "join_failed", json_int_t(setup.counter("join_failed")),
        "errors", counters_json(setup.errors)));
    json_object_set_new(report, "window_s", json_real(window_s));
    json_object_set_new(report, "delivered",
                        json_integer(json_int_t(delivered)));
    json_object_set_new(report, "delivered_per_s",
                        json_real(window_s > 0 ? delivered / window_s : 0));
    json_object_set_new(report, "latency_ms", latencies(run, setup));
    json_object_set_new(report, "counters", counters_json(run.counters));
    json_object_set_new(report, "errors", counters_json(run.errors));
    json_object_set_new(report, "generator_cpu_s", json_pack(
        "{sfsf}",
        "user", double(run.cpu_user_us) / 1e6,
        "system", double(run.cpu_system_us) / 1e6));

    if (procs != nullptr && opts.scenario == "idle") {
        json_object_set_new(report, "processes",
                            processes_json(*procs, setup.counter("ready")));

    } else if (procs != nullptr) {
        // the servers' CPU is sampled over the whole run for chat, whose
        // window is the generator's own
        json_object_set_new(report, "server_cpu",
                            window_cpu_json(*procs, double(run.counter(
                                "delivered"))));
    }

    return report;
}


namespace {

void
print_latencies(FILE *out, const json_t *lat)
{
    const char  *key;
    json_t      *s;

    if (json_object_size(lat) == 0) {
        return;
    }

    fprintf(out, "\n%-42s %8s %9s %9s %9s %9s\n", "latency (ms)", "count",
            "p50", "p90", "p99", "max");

    json_object_foreach(const_cast<json_t *>(lat), key, s) {
        fprintf(out, "%-42s %8lld %9.2f %9.2f %9.2f %9.2f\n",
                json_string_value(json_object_get(s, "what")),
                json_integer_value(json_object_get(s, "count")),
                json_real_value(json_object_get(s, "p50")),
                json_real_value(json_object_get(s, "p90")),
                json_real_value(json_object_get(s, "p99")),
                json_real_value(json_object_get(s, "max")));
    }
}


void
print_counts(FILE *out, const char *title, const json_t *m)
{
    const char  *key;
    json_t      *v;

    if (json_object_size(m) == 0) {
        return;
    }

    fprintf(out, "\n%s\n", title);
    json_object_foreach(const_cast<json_t *>(m), key, v) {
        fprintf(out, "  %10lld  %s\n", json_integer_value(v), key);
    }
}


void
print_processes(FILE *out, const json_t *procs)
{
    size_t   i;
    json_t  *p;

    fprintf(out, "\n%-13s %5s %10s %10s %9s %10s %10s %9s %7s\n",
            "process", "count", "RSS kB", "RSS kB", "RSS B", "PSS kB",
            "PSS kB", "PSS B", "CPU %");
    fprintf(out, "%-13s %5s %10s %10s %9s %10s %10s %9s %7s\n",
            "", "", "before", "after", "per conn", "before", "after",
            "per conn", "idle");

    json_array_foreach(const_cast<json_t *>(procs), i, p) {
        fprintf(out, "%-13s %5zu %10lld %10lld %9.0f %10lld %10lld %9.0f "
                "%7.2f%s\n",
                json_string_value(json_object_get(p, "role")),
                json_array_size(json_object_get(p, "pids")),
                json_integer_value(json_object_get(p, "rss_kb_before")),
                json_integer_value(json_object_get(p, "rss_kb_after")),
                json_real_value(json_object_get(p,
                                "rss_bytes_per_connection")),
                json_integer_value(json_object_get(p, "pss_kb_before")),
                json_integer_value(json_object_get(p, "pss_kb_after")),
                json_real_value(json_object_get(p,
                                "pss_bytes_per_connection")),
                json_real_value(json_object_get(p, "cpu_percent_of_core")),
                json_is_true(json_object_get(p, "complete"))
                    ? "" : "  (a process came or went)");
    }
}


void
print_server_cpu(FILE *out, const json_t *cpu)
{
    size_t   i;
    json_t  *p;

    if (cpu == nullptr) {
        return;
    }

    fprintf(out, "\n%-13s %5s %9s %9s %13s\n", "process", "count",
            "CPU s", "% of core", "us/delivered");

    json_array_foreach(const_cast<json_t *>(cpu), i, p) {
        fprintf(out, "%-13s %5zu %9.2f %9.1f %13.2f%s\n",
                json_string_value(json_object_get(p, "role")),
                json_array_size(json_object_get(p, "pids")),
                json_real_value(json_object_get(p, "cpu_s")),
                json_real_value(json_object_get(p, "cpu_percent_of_core")),
                json_real_value(json_object_get(p, "us_per_delivery")),
                json_is_true(json_object_get(p, "complete"))
                    ? "" : "  (a process came or went)");
    }
}

}  // namespace


void
print_table(FILE *out, const json_t *report)
{
    const json_t  *config = json_object_get(report, "config");
    const json_t  *setup = json_object_get(report, "setup");
    const json_t  *procs = json_object_get(report, "processes");

    fprintf(out, "signalr-bench %s: %lld connections, %s, %lld procs, %s%s"
            "%s%s\n",
            json_string_value(json_object_get(report, "scenario")),
            json_integer_value(json_object_get(config, "connections")),
            json_string_value(json_object_get(config, "protocol")),
            json_integer_value(json_object_get(config, "procs")),
            json_string_value(json_object_get(config, "url")),
            json_string_value(json_object_get(config, "hub")),
            *json_string_value(json_object_get(report, "label")) ? "  "
                                                                  : "",
            json_string_value(json_object_get(report, "label")));

    fprintf(out, "setup: %lld ready, %lld failed\n",
            json_integer_value(json_object_get(setup, "ready")),
            json_integer_value(json_object_get(setup, "failed")));

    fprintf(out, "measured %.2f s: %lld messages delivered, %.1f/s "
            "(generator CPU %.2f s user, %.2f s system)\n",
            json_real_value(json_object_get(report, "window_s")),
            json_integer_value(json_object_get(report, "delivered")),
            json_real_value(json_object_get(report, "delivered_per_s")),
            json_real_value(json_object_get(
                json_object_get(report, "generator_cpu_s"), "user")),
            json_real_value(json_object_get(
                json_object_get(report, "generator_cpu_s"), "system")));

    print_latencies(out, json_object_get(report, "latency_ms"));
    print_counts(out, "counters", json_object_get(report, "counters"));
    print_counts(out, "setup errors", json_object_get(setup, "errors"));
    print_counts(out, "errors", json_object_get(report, "errors"));

    if (procs != nullptr) {
        print_processes(out, procs);
    }

    print_server_cpu(out, json_object_get(report, "server_cpu"));
}

}  // namespace bench
