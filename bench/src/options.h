// Command line of signalr-bench.

#ifndef SIGNALR_BENCH_OPTIONS_H
#define SIGNALR_BENCH_OPTIONS_H

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

#include <signalr/hub_message.h>

#include "status.h"

namespace bench {

struct Options {
    std::string               scenario;    // chat, invoke, idle, broadcast
    std::string               url = "http://127.0.0.1:8080";
    std::string               rest_url;          // chat: "" is url
    std::string               hub_path = "/api/v1/chats/stream";
    sr_protocol_t             protocol = SR_PROTOCOL_JSON;
    size_t                    connections = 0;   // 0: the scenario's
    unsigned                  procs = 1;
    std::vector<std::string>  sources;
    double                    duration_s = 10;
    double                    warmup_s = 2;
    double                    hold_s = 30;
    double                    timeout_s = 120;
    double                    token_rate = 20;
    double                    keepalive_s = 15;
    unsigned                  inflight = 1;
    unsigned                  setup_concurrency = 64;
    std::string               target = "BenchRoundTrip";
    std::string               prompt = "Tell me about load generators";
    std::string               fragment_log;      // chat: a line a fragment
    std::string               user_prefix = "bench";
    size_t                    user_offset = 0;
    std::string               signalrctl;        // token source
    std::string               dev_key;
    std::string               token_args;        // more /dev/token query
    bool                      negotiate = true;
    bool                      json = false;
    std::string               output;
    std::vector<int>          pids;
    int                       nginx_master = 0;
    int                       daemon_pid = 0;
    int                       redis_pid = 0;
    std::string               label;

    // broadcast (publisher.h)
    bool                      plain_websocket = false;
    std::string               publish_url;
    std::string               publish_format = "signalr";  // or "raw"
    std::string               publish_key_file;
    std::string               join_url;
    double                    rate = 0;          // messages/s, 0: no limit
    size_t                    payload_bytes = 100;
    unsigned                  publishers = 1;
    unsigned                  window = 16;       // --rate 0: see publisher.h

    // Derived by parse_options().
    sockaddr_in               addr {};
    std::string               host_header;
    sockaddr_in               rest_addr {};
    std::string               rest_host_header;
    std::vector<sockaddr_in>  source_addrs;
};

// Parses argv (argv[1] is the scenario). On failure the Status says
// what is wrong in one line. "--help" gives Status "help".
Status parse_options(int argc, char **argv, Options *opts);

const char *usage_text();

// Splits "a,b,c" on commas, dropping empty items.
std::vector<std::string> split_list(const std::string &s);

}  // namespace bench

#endif  // SIGNALR_BENCH_OPTIONS_H
