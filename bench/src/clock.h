// The two clocks of the benchmark. Latencies are differences of the
// monotonic clock; the wall clock is only read to compare with
// timestamps that another process wrote (UUIDv7 fragment ids).

#ifndef SIGNALR_BENCH_CLOCK_H
#define SIGNALR_BENCH_CLOCK_H

#include <cstdint>
#include <ctime>

namespace bench {

constexpr int64_t kNsPerUs = 1000;
constexpr int64_t kNsPerMs = 1000 * 1000;
constexpr int64_t kNsPerSec = 1000 * 1000 * 1000;

inline int64_t
monotonic_ns()
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}


inline int64_t
wall_ns()
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

}  // namespace bench

#endif  // SIGNALR_BENCH_CLOCK_H
