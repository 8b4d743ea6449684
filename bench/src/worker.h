// The two sides of a run: worker processes, one event loop each, that
// hold a share of the connections, and the coordinator that forks them,
// paces their steps over pipes and adds up what they measured.
//
// The pipe protocol is one line each: the coordinator writes "start" and
// "stop"; a worker writes {"event":"ready"|"result","results":{...}}.

#ifndef SIGNALR_BENCH_WORKER_H
#define SIGNALR_BENCH_WORKER_H

#include <cstddef>

#include "options.h"

namespace bench {

// Runs in the forked child; returns its exit code.
int run_worker(const Options &opts, size_t first, size_t count,
               int control_fd, int report_fd);

// Runs the whole benchmark and prints the report; returns the exit
// code of the program.
int run_coordinator(const Options &opts);

}  // namespace bench

#endif  // SIGNALR_BENCH_WORKER_H
