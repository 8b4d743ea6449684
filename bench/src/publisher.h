// The broadcast publisher: sends payloads to a server's publish API
// over keep-alive HTTP connections, either at a fixed rate (scheduled
// against absolute deadlines, so a slow answer does not slow the rate)
// or as fast as the server delivers: each connection sends its next
// message as soon as the previous one is answered, but never more than
// --window messages ahead of what every subscriber on the publisher's
// own process has read. Without that bound, a
// server that answers before it delivers would be flooded until its
// queues, not its delivery, set the pace.
//
// What a publish request looks like is all in PublishTarget, so that
// switching the edge from one publish API to another is a matter of
// options: where (--publish), the body (--publish-format) and the
// credentials (--publish-key).

#ifndef SIGNALR_BENCH_PUBLISHER_H
#define SIGNALR_BENCH_PUBLISHER_H

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "event_loop.h"
#include "http_client.h"
#include "options.h"
#include "results.h"
#include "status.h"

namespace bench {

// An HTTP endpoint: "http://IPv4:PORT/path?query" or, for a server's own
// Unix socket, "unix:/path/to.sock:/path?query".
struct Endpoint {
    std::string  url;          // as given
    std::string  unix_path;    // "" for TCP
    sockaddr_in  addr {};
    std::string  host;         // the Host header
    std::string  target;       // path and query
};

Status parse_endpoint(const std::string &url, Endpoint *out);

// A new HTTP client on the endpoint's socket.
std::unique_ptr<HttpClient> make_client(EventLoop &loop, const Endpoint &e);

// An HS256 JWT for aud, signed with key, valid for an hour: the bearer
// token of the Azure SignalR Service REST API (aud = the request URL
// without its query); "" when signing fails.
std::string sign_access_token(const std::string &key, const std::string &aud,
                              int64_t now_s);

struct PublishTarget {
    Endpoint     endpoint;
    bool         signalr_body = true;   // {"target","arguments":[payload]}
    std::string  method = "broadcast";  // the target of that body
    std::string  authorization;         // "" or "Bearer ..."
};

Status make_publish_target(const Options &opts, PublishTarget *out);

// The whole request that publishes payload.
std::string publish_request(const PublishTarget &t,
                            const std::string &payload);


class Publisher {
public:
    Publisher(EventLoop &loop, const Options &opts, Results &results);

    Status init();

    // Publishes from now until stop(); counts "published" (answered 2xx)
    // and "publish_failed", and records "publish" (request to answer).
    void start();
    void stop() { stopped_ = true; }

    // How many subscribers on this process the window waits for.
    void set_readers(size_t n) { readers_ = n; }

    // A subscriber on this process read payload seq.
    void delivered(uint64_t seq);

    // Only messages sent from then on count as "published".
    void measure_from(int64_t ns) { measure_from_ns_ = ns; }

private:
    void tick();
    void publish(size_t client);
    void resume();
    void advance(uint64_t to, int64_t now_ns);
    void watch();

    EventLoop                                 &loop_;
    const Options                             &opts_;
    Results                                   &results_;
    PublishTarget                              target_;
    std::vector<std::unique_ptr<HttpClient>>   clients_;
    std::vector<bool>                          busy_;
    uint64_t                                   seq_ = 0;
    // The window: acked_ is the last payload every reader has read.
    size_t                                     readers_ = 1;
    uint64_t                                   acked_ = 0;
    std::unordered_map<uint64_t, size_t>       reads_;
    int64_t                                    advanced_ns_ = 0;
    std::vector<bool>                          waiting_;
    int64_t                                    start_ns_ = 0;
    int64_t                                    measure_from_ns_ = 0;
    bool                                       stopped_ = false;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_PUBLISHER_H
