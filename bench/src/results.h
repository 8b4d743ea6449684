// What one worker measured, in a form that travels to the coordinator
// as JSON and adds up across workers.

#ifndef SIGNALR_BENCH_RESULTS_H
#define SIGNALR_BENCH_RESULTS_H

#include <cstdint>
#include <map>
#include <string>

#include <jansson.h>

#include "histogram.h"
#include "status.h"

namespace bench {

struct Results {
    // Distinct error texts kept; the rest are counted under "other".
    static constexpr size_t kMaxErrorKinds = 16;

    std::map<std::string, uint64_t>   counters;
    std::map<std::string, Histogram>  histograms;
    std::map<std::string, uint64_t>   errors;
    int64_t                           window_us = 0;  // measured time
    int64_t                           cpu_user_us = 0;
    int64_t                           cpu_system_us = 0;

    void count(const std::string &name, uint64_t n = 1)
    {
        counters[name] += n;
    }

    void record(const std::string &name, int64_t value_us)
    {
        histograms[name].record(value_us);
    }

    void error(const std::string &text, uint64_t n = 1);

    uint64_t counter(const std::string &name) const;

    // Sums counters, histograms, errors and CPU; the window is the
    // longest, since the workers measure side by side.
    void merge(const Results &other);

    json_t *to_json() const;
    static Status from_json(const json_t *json, Results *out);
};

}  // namespace bench

#endif  // SIGNALR_BENCH_RESULTS_H
