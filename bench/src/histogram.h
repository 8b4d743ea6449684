// A mergeable latency histogram in microseconds.
//
// Design note: the values are kept in log-linear buckets (64 linear
// steps per power of two, so any reported percentile is within 1.6% of
// the true sample) rather than as raw samples, because every worker
// process sends its histograms to the coordinator, which adds them up;
// a bucket array travels and merges in constant size whatever the run
// length. Debian ships no C or C++ HdrHistogram, and this is the small
// part of it the benchmark needs. Count, sum, min and max are exact.

#ifndef SIGNALR_BENCH_HISTOGRAM_H
#define SIGNALR_BENCH_HISTOGRAM_H

#include <cstddef>
#include <cstdint>
#include <vector>

#include <jansson.h>

#include "status.h"

namespace bench {

class Histogram {
public:
    // Records one value; negative values are recorded as 0.
    void record(int64_t value_us);

    void merge(const Histogram &other);

    uint64_t count() const { return count_; }
    int64_t min() const { return count_ ? min_ : 0; }
    int64_t max() const { return count_ ? max_ : 0; }
    double mean() const;

    // The value at percentile p (0 < p <= 100): the midpoint of the
    // bucket holding that rank, clamped to [min, max]; the highest rank
    // is max itself. 0 when empty.
    int64_t percentile(double p) const;

    // {"count":..,"sum":..,"min":..,"max":..,"buckets":[[i,n],...]}
    json_t *to_json() const;
    static Status from_json(const json_t *json, Histogram *out);

    // Bucket arithmetic, public for the tests.
    static size_t bucket_of(uint64_t value);
    static uint64_t bucket_low(size_t index);
    static uint64_t bucket_high(size_t index);

private:
    std::vector<uint64_t>  buckets_;
    uint64_t               count_ = 0;
    int64_t                sum_ = 0;
    int64_t                min_ = 0;
    int64_t                max_ = 0;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_HISTOGRAM_H
