// The report of a run: one JSON document (--json, --output) and the
// table printed from it.

#ifndef SIGNALR_BENCH_REPORT_H
#define SIGNALR_BENCH_REPORT_H

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <jansson.h>

#include "options.h"
#include "proc_stats.h"
#include "results.h"

namespace bench {

// Server processes sampled around an idle hold.
struct ProcReport {
    std::vector<ProcSample>  before;     // before any connection
    std::vector<ProcSample>  at_start;   // all connected, hold begins
    std::vector<ProcSample>  after;      // hold ends
    double                   hold_s = 0;
    long                     ticks_per_s = 100;
};

json_t *build_report(const Options &opts, const Results &setup,
                     const Results &run, const ProcReport *procs);

void print_table(FILE *out, const json_t *report);

// A JSON object of named counts.
json_t *counters_json(const std::map<std::string, uint64_t> &counts);

}  // namespace bench

#endif  // SIGNALR_BENCH_REPORT_H
