// signalr-bench: the project's load generator. See docs/performance.md.

#include <cstdio>
#include <cstring>

#include "options.h"
#include "worker.h"

int
main(int argc, char **argv)
{
    bench::Options  opts;
    bench::Status   s = bench::parse_options(argc, argv, &opts);

    if (!s.ok()) {
        if (s.message() == "help") {
            fputs(bench::usage_text(), stdout);
            return 0;
        }

        fprintf(stderr, "signalr-bench: %s\n%s", s.message().c_str(),
                bench::usage_text());
        return 2;
    }

    return bench::run_coordinator(opts);
}
