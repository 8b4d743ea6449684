// Memory and CPU of the server processes, read from /proc: RSS and PSS
// from /proc/PID/smaps_rollup, user and system CPU ticks from
// /proc/PID/stat.

#ifndef SIGNALR_BENCH_PROC_STATS_H
#define SIGNALR_BENCH_PROC_STATS_H

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace bench {

struct ProcSample {
    int          pid = 0;
    std::string  role;          // "nginx worker", "signalrd", "process"
    bool         ok = false;    // false: gone or unreadable
    uint64_t     rss_kb = 0;
    uint64_t     pss_kb = 0;
    uint64_t     cpu_ticks = 0; // user + system
};

struct ProcTarget {
    int          pid;
    std::string  role;
};

// The "Rss:" and "Pss:" lines of smaps_rollup text, in kB.
Status parse_smaps_rollup(std::string_view text, uint64_t *rss_kb,
                          uint64_t *pss_kb);

// utime + stime (fields 14 and 15) of /proc/PID/stat text.
Status parse_stat_cpu(std::string_view text, uint64_t *ticks);

ProcSample sample_process(const ProcTarget &target);

// Which processes to sample: the given pids, else the workers of the
// given nginx master, the given daemon and Redis, else every nginx
// worker process and every signalrd on the machine.
std::vector<ProcTarget> find_targets(const std::vector<int> &pids,
                                     int nginx_master, int daemon_pid,
                                     int redis_pid = 0);

}  // namespace bench

#endif  // SIGNALR_BENCH_PROC_STATS_H
