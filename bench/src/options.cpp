#include "options.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace bench {

namespace {

enum OptionId {
    kUrl = 256, kHub, kProtocol, kConnections, kProcs, kSource, kDuration,
    kWarmup, kHold, kTimeout, kTokenRate, kKeepalive, kInflight,
    kSetupConcurrency, kTarget, kPrompt, kUserPrefix, kUserOffset,
    kSignalrctl, kDevKey, kSkipNegotiate, kJson, kOutput, kPids,
    kNginxMaster, kDaemonPid, kRedisPid, kLabel, kRestUrl, kPlainWebsocket, kPublish,
    kPublishFormat, kPublishKey, kJoin, kRate, kPayloadBytes, kPublishers,
    kWindow, kTokenArgs, kFragmentLog,
    kHelp
};

const struct option  kLongOptions[] = {
    {"url", required_argument, nullptr, kUrl},
    {"rest-url", required_argument, nullptr, kRestUrl},
    {"hub", required_argument, nullptr, kHub},
    {"protocol", required_argument, nullptr, kProtocol},
    {"connections", required_argument, nullptr, kConnections},
    {"conversations", required_argument, nullptr, kConnections},
    {"procs", required_argument, nullptr, kProcs},
    {"source", required_argument, nullptr, kSource},
    {"duration", required_argument, nullptr, kDuration},
    {"warmup", required_argument, nullptr, kWarmup},
    {"hold", required_argument, nullptr, kHold},
    {"timeout", required_argument, nullptr, kTimeout},
    {"token-rate", required_argument, nullptr, kTokenRate},
    {"keepalive", required_argument, nullptr, kKeepalive},
    {"inflight", required_argument, nullptr, kInflight},
    {"setup-concurrency", required_argument, nullptr, kSetupConcurrency},
    {"target", required_argument, nullptr, kTarget},
    {"prompt", required_argument, nullptr, kPrompt},
    {"fragment-log", required_argument, nullptr, kFragmentLog},
    {"user-prefix", required_argument, nullptr, kUserPrefix},
    {"user-offset", required_argument, nullptr, kUserOffset},
    {"signalrctl", required_argument, nullptr, kSignalrctl},
    {"dev-key", required_argument, nullptr, kDevKey},
    {"skip-negotiate", no_argument, nullptr, kSkipNegotiate},
    {"json", no_argument, nullptr, kJson},
    {"output", required_argument, nullptr, kOutput},
    {"pids", required_argument, nullptr, kPids},
    {"nginx-master", required_argument, nullptr, kNginxMaster},
    {"daemon-pid", required_argument, nullptr, kDaemonPid},
    {"redis-pid", required_argument, nullptr, kRedisPid},
    {"label", required_argument, nullptr, kLabel},
    {"plain-websocket", no_argument, nullptr, kPlainWebsocket},
    {"publish", required_argument, nullptr, kPublish},
    {"publish-format", required_argument, nullptr, kPublishFormat},
    {"publish-key", required_argument, nullptr, kPublishKey},
    {"join", required_argument, nullptr, kJoin},
    {"rate", required_argument, nullptr, kRate},
    {"payload-bytes", required_argument, nullptr, kPayloadBytes},
    {"publishers", required_argument, nullptr, kPublishers},
    {"window", required_argument, nullptr, kWindow},
    {"token-args", required_argument, nullptr, kTokenArgs},
    {"help", no_argument, nullptr, kHelp},
    {nullptr, 0, nullptr, 0}
};


bool
parse_number(const char *s, double min, double max, double *out)
{
    char    *end;
    double   v;

    errno = 0;
    v = strtod(s, &end);

    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }

    *out = v;
    return true;
}


Status
parse_count(const char *name, const char *s, double min, double max,
    size_t *out)
{
    double  v;

    if (!parse_number(s, min, max, &v) || v != double(size_t(v))) {
        return Status::Error(std::string("--") + name + ": \"" + s
                             + "\" is not a whole number in range");
    }

    *out = size_t(v);
    return Status::Ok();
}


Status
parse_seconds(const char *name, const char *s, double min, double *out)
{
    if (!parse_number(s, min, 86400, out)) {
        return Status::Error(std::string("--") + name + ": \"" + s
                             + "\" is not a number of seconds in range");
    }

    return Status::Ok();
}


// Parses flag's http://IPv4:PORT url into addr and the Host header.
Status
parse_http_url(const char *flag, const std::string &url, sockaddr_in *addr,
    std::string *host_header)
{
    std::string  rest, host, port = "80";
    size_t       colon, slash;

    if (url.rfind("http://", 0) != 0) {
        return Status::Error(std::string(flag)
                             + ": only http:// URLs are supported");
    }

    rest = url.substr(7);
    slash = rest.find('/');
    if (slash != std::string::npos) {
        rest = rest.substr(0, slash);
    }

    colon = rest.rfind(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) {
        port = rest.substr(colon + 1);
    }

    addr->sin_family = AF_INET;
    addr->sin_port = htons(uint16_t(atoi(port.c_str())));
    if (inet_pton(AF_INET, host.c_str(), &addr->sin_addr) != 1
        || atoi(port.c_str()) <= 0 || atoi(port.c_str()) > 65535)
    {
        return Status::Error(std::string(flag) + ": \"" + url
                             + "\" needs a numeric IPv4 address and port");
    }

    *host_header = rest;
    return Status::Ok();
}


Status
parse_url(Options *opts)
{
    Status  s = parse_http_url("--url", opts->url, &opts->addr,
                               &opts->host_header);
    if (!s.ok()) {
        return s;
    }
    if (opts->rest_url.empty()) {
        opts->rest_addr = opts->addr;
        opts->rest_host_header = opts->host_header;
        return Status::Ok();
    }
    return parse_http_url("--rest-url", opts->rest_url, &opts->rest_addr,
                          &opts->rest_host_header);
}


Status
parse_sources(Options *opts)
{
    for (const auto &s : opts->sources) {
        sockaddr_in  a {};

        a.sin_family = AF_INET;
        if (inet_pton(AF_INET, s.c_str(), &a.sin_addr) != 1) {
            return Status::Error("--source: \"" + s
                                 + "\" is not an IPv4 address");
        }
        opts->source_addrs.push_back(a);
    }

    return Status::Ok();
}


Status
apply_number(int id, const char *arg, Options *o)
{
    size_t  n;
    Status  s = Status::Ok();

    switch (id) {
    case kConnections:
        s = parse_count("connections", arg, 1, 1e6, &o->connections);
        break;
    case kProcs:
        s = parse_count("procs", arg, 1, 256, &n);
        o->procs = unsigned(n);
        break;
    case kInflight:
        s = parse_count("inflight", arg, 1, 1e4, &n);
        o->inflight = unsigned(n);
        break;
    case kSetupConcurrency:
        s = parse_count("setup-concurrency", arg, 1, 1e5, &n);
        o->setup_concurrency = unsigned(n);
        break;
    case kUserOffset:
        s = parse_count("user-offset", arg, 0, 1e9, &o->user_offset);
        break;
    case kNginxMaster:
        s = parse_count("nginx-master", arg, 1, 1e9, &n);
        o->nginx_master = int(n);
        break;
    case kDaemonPid:
        s = parse_count("daemon-pid", arg, 1, 1e9, &n);
        o->daemon_pid = int(n);
        break;
    case kRedisPid:
        s = parse_count("redis-pid", arg, 1, 1e9, &n);
        o->redis_pid = int(n);
        break;
    case kPayloadBytes:
        s = parse_count("payload-bytes", arg, 48, 16384, &o->payload_bytes);
        break;
    case kPublishers:
        s = parse_count("publishers", arg, 1, 64, &n);
        o->publishers = unsigned(n);
        break;
    case kWindow:
        s = parse_count("window", arg, 1, 1e6, &n);
        o->window = unsigned(n);
        break;
    case kRate:
        if (!parse_number(arg, 0, 1e6, &o->rate)) {
            return Status::Error("--rate: not a rate in messages/s");
        }
        break;
    case kDuration:
        return parse_seconds("duration", arg, 0.1, &o->duration_s);
    case kWarmup:
        return parse_seconds("warmup", arg, 0, &o->warmup_s);
    case kHold:
        return parse_seconds("hold", arg, 0.1, &o->hold_s);
    case kTimeout:
        return parse_seconds("timeout", arg, 1, &o->timeout_s);
    case kKeepalive:
        return parse_seconds("keepalive", arg, 0.1, &o->keepalive_s);
    case kTokenRate:
        if (!parse_number(arg, 0.001, 1e6, &o->token_rate)) {
            return Status::Error("--token-rate: not a positive rate");
        }
        break;
    default:
        return Status::Error("unknown option");
    }

    return s;
}


Status
apply_option(int id, const char *arg, Options *o)
{
    switch (id) {
    case kUrl:           o->url = arg; break;
    case kRestUrl:       o->rest_url = arg; break;
    case kHub:           o->hub_path = arg; break;
    case kSource:        o->sources = split_list(arg); break;
    case kTarget:        o->target = arg; break;
    case kPrompt:        o->prompt = arg; break;
    case kFragmentLog:   o->fragment_log = arg; break;
    case kUserPrefix:    o->user_prefix = arg; break;
    case kSignalrctl:    o->signalrctl = arg; break;
    case kDevKey:        o->dev_key = arg; break;
    case kSkipNegotiate: o->negotiate = false; break;
    case kJson:          o->json = true; break;
    case kOutput:        o->output = arg; break;
    case kLabel:         o->label = arg; break;
    case kPlainWebsocket: o->plain_websocket = true; break;
    case kPublish:       o->publish_url = arg; break;
    case kPublishKey:    o->publish_key_file = arg; break;
    case kJoin:          o->join_url = arg; break;
    case kTokenArgs:     o->token_args = arg; break;
    case kHelp:          return Status::Error("help");

    case kPublishFormat:
        if (strcmp(arg, "signalr") != 0 && strcmp(arg, "raw") != 0) {
            return Status::Error("--publish-format: signalr or raw");
        }
        o->publish_format = arg;
        break;

    case kProtocol:
        if (strcmp(arg, "json") == 0) {
            o->protocol = SR_PROTOCOL_JSON;
        } else if (strcmp(arg, "messagepack") == 0) {
            o->protocol = SR_PROTOCOL_MSGPACK;
        } else {
            return Status::Error("--protocol: json or messagepack");
        }
        break;

    case kPids:
        for (const auto &p : split_list(arg)) {
            size_t  n;
            Status  s = parse_count("pids", p.c_str(), 1, 1e9, &n);
            if (!s.ok()) {
                return s;
            }
            o->pids.push_back(int(n));
        }
        break;

    default:
        return apply_number(id, arg, o);
    }

    return Status::Ok();
}


Status
validate(Options *o)
{
    long  cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (o->scenario != "chat" && o->scenario != "invoke"
        && o->scenario != "idle" && o->scenario != "broadcast")
    {
        return Status::Error("unknown scenario \"" + o->scenario
                             + "\": chat, invoke, idle or broadcast");
    }

    // Idle connections cost no CPU to speak of, but a socket each: past
    // the open-file limit of one process, idle takes more processes.
    if (cores > 0 && o->procs > unsigned(cores) && o->scenario != "idle") {
        return Status::Error("--procs: at most one process per core ("
                             + std::to_string(cores) + "), but for idle");
    }

    if (o->scenario == "broadcast" && o->publish_url.empty()) {
        return Status::Error("broadcast: --publish URL is required");
    }

    if (o->connections == 0) {
        o->connections = o->scenario == "chat" ? 10
                         : o->scenario == "invoke" ? 1 : 1000;
    }

    if (o->procs > o->connections) {
        o->procs = unsigned(o->connections);
    }

    Status  s = parse_url(o);
    if (!s.ok()) {
        return s;
    }

    return parse_sources(o);
}

}  // namespace


std::vector<std::string>
split_list(const std::string &s)
{
    std::vector<std::string>  items;
    size_t                    start = 0, comma;

    while (start <= s.size()) {
        comma = s.find(',', start);
        if (comma == std::string::npos) {
            comma = s.size();
        }
        if (comma > start) {
            items.push_back(s.substr(start, comma - start));
        }
        start = comma + 1;
    }

    return items;
}


Status
parse_options(int argc, char **argv, Options *opts)
{
    int  id;

    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
            return Status::Error("help");
        }
        return Status::Error("no scenario given: chat, invoke, idle or "
                             "broadcast");
    }

    opts->scenario = argv[1];
    optind = 2;
    opterr = 0;

    while ((id = getopt_long(argc, argv, "", kLongOptions, nullptr))
           != -1)
    {
        if (id == '?' || id == ':') {
            return Status::Error(std::string("unknown option or missing "
                                             "value: ")
                                 + argv[optind - 1]);
        }

        Status  s = apply_option(id, optarg, opts);
        if (!s.ok()) {
            return s;
        }
    }

    if (optind < argc) {
        return Status::Error(std::string("unexpected argument: ")
                             + argv[optind]);
    }

    return validate(opts);
}


const char *
usage_text()
{
    return
"usage: signalr-bench chat|invoke|idle|broadcast [options]\n"
"\n"
"  --url URL              the edge, http://IPv4:PORT "
"(http://127.0.0.1:8080)\n"
"  --rest-url URL         chat: POST the chats to this edge instead,\n"
"                         so replies stream across instances\n"
"  --hub PATH             hub path (/api/v1/chats/stream)\n"
"  --protocol P           json or messagepack (json)\n"
"  --connections N        connections; for chat, conversations\n"
"                         (chat 10, invoke 1, idle 1000)\n"
"  --procs P              worker processes, at most one per core (1)\n"
"  --source A,B,...       loopback source addresses, used in turn\n"
"  --duration S           invoke, broadcast: measured seconds (10)\n"
"  --warmup S             invoke, broadcast: seconds not measured first\n"
"                         (2)\n"
"  --hold S               idle: seconds held open before sampling (30)\n"
"  --timeout S            chat: give up after S seconds (120)\n"
"  --token-rate R         chat: the demo provider's tokens/s (20)\n"
"  --keepalive S          client Ping interval (15)\n"
"  --inflight K           invoke: invocations outstanding per "
"connection (1)\n"
"  --setup-concurrency N  connection setups in progress per process "
"(64)\n"
"  --target NAME          invoke: hub method invoked (BenchRoundTrip)\n"
"  --prompt TEXT          chat: the prompt of every conversation\n"
"  --fragment-log PREFIX  chat: one line an assistant fragment, to\n"
"                         PREFIX.<first conversation of the process>:\n"
"                         read time (Unix ns), age (us), conversation,\n"
"                         1 for the final fragment\n"
"  --user-prefix P        users are P<N> (bench)\n"
"  --user-offset N        first N (0)\n"
"  --token-args A=B&...   more query arguments of GET /dev/token\n"
"                         (claims a hub wants, such as groups)\n"
"  --signalrctl PATH      tokens from `signalrctl token` instead of\n"
"                         GET /dev/token (with --dev-key FILE)\n"
"  --skip-negotiate       connect the WebSocket without negotiate\n"
"  --pids A,B,...         processes to sample (idle: memory and CPU;\n"
"                         the others: CPU over the measured window)\n"
"  --nginx-master PID     sample that master's workers\n"
"  --daemon-pid PID       sample this signalrd\n"
"  --redis-pid PID        sample this redis-server too\n"
"                         (idle default: every nginx worker and\n"
"                         signalrd; the others: none)\n"
"  --json                 print JSON instead of the table\n"
"  --output FILE          also write the JSON to FILE\n"
"  --label TEXT           a note carried into the results\n"
"\n"
"broadcast (--duration and --warmup apply):\n"
"  --publish URL          the publish API: http://IPv4:PORT/PATH or\n"
"                         unix:SOCKET:/PATH (required)\n"
"  --publish-format F     signalr: {\"target\",\"arguments\":[payload]};\n"
"                         raw: the payload as the body (signalr)\n"
"  --publish-key FILE     sign a Bearer HS256 JWT (aud = the URL) with\n"
"                         the key in FILE\n"
"  --join URL             PUT URL/<connectionId> for every subscriber\n"
"  --rate R               messages/s, 0 for as fast as answered (0)\n"
"  --payload-bytes N      payload size (100)\n"
"  --publishers K         publishing connections (1)\n"
"  --window W             --rate 0: at most W messages ahead of what\n"
"                         the publisher's own process has read (16)\n"
"  --plain-websocket      subscribers are bare WebSocket clients of\n"
"                         --url and --hub (no SignalR), any scenario\n";
}

}  // namespace bench
