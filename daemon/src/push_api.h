// The push API: Azure SignalR Service's data-plane REST API (version 2022-06-01, and
// the v1 paths), for business services that push to hubs. nginx proxies /api/hubs/,
// /api/v1/hubs/ and /api/health to the daemon's HTTP socket; every route and its
// answers are in docs/push-api.md.
//
// Authentication is Azure's: a JWT in "Authorization: Bearer", signed with HS256 and
// the configured access key, whose "aud" is the request's URL without its query
// ("http://host:port/api/hubs/orders/:send"), as the service SDKs sign it; the scheme
// and host are nginx's X-Forwarded-Proto and X-Forwarded-Host when present. A bad or
// missing token is 401 before anything else is looked at, so hub names are not told
// to strangers; an unknown hub is then 404.
//
// Deliveries go through the backplane (backplane.h) and so reach connections on every
// instance; memberships are stored in Redis (group_store.h) and applied on the
// instances holding the connections; existence checks and presence read presence.h.

#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backplane.h"
#include "group_store.h"
#include "http_server.h"
#include "presence.h"
#include "push_config.h"

struct sr_jwt_keys_s;

namespace signalrd {

enum class PushAction {
    health,
    send,               // the scope's connections get an invocation
    close,              // the scope's connections are closed
    exists,             // 200 when the scope has a connection anywhere, else 404
    join_group,         // the scope (a connection or a user) joins group
    leave_group,
    leave_all_groups,
    user_in_group,      // 200 when the user is in group, else 404
    presence,           // the hub's (or one user's) presence, as JSON
};

struct PushRoute {
    PushAction action = PushAction::health;
    HubAudience::Kind scope = HubAudience::Kind::all;
    std::string hub;
    std::string name;    // the user, group or connection the scope names; "" for all
    std::string group;   // for join_group, leave_group and user_in_group
    bool v1 = false;     // a /api/v1/ path (answers as v1 does)
};

// A parsed request path: a route, or (route empty) the methods the path allows, empty
// when no route has that path.
struct PushRouteMatch {
    std::optional<PushRoute> route;
    std::string allow;
};

// Parses method and path (undecoded, without the query). Segments are percent-decoded;
// a bad escape, an empty segment, a NUL or a bad hub or group name is invalid_argument.
Result<PushRouteMatch> parse_push_route(const std::string &method, const std::string &path);

// Every value of a query parameter, percent-decoded ('+' is a space), in order.
std::vector<std::string> query_values(std::string_view query, std::string_view name);

// The URL a token must name in "aud" for this request.
std::string expected_audience(const HttpRequest &request);

class PushApi {
public:
    // hubs: every hub the daemon serves (push hubs and the others), as registered. Without
    // an access key in settings, every route answers 404.
    PushApi(asio::any_io_executor executor, PushSettings settings, std::vector<std::string> hubs,
            Backplane &backplane, GroupStore &groups, Presence &presence, RedisClient &redis);
    ~PushApi();

    PushApi(const PushApi &) = delete;
    PushApi &operator=(const PushApi &) = delete;

    static bool handles(const std::string &path);

    asio::awaitable<HttpResponse> handle(const HttpRequest &request);

    // The registry's observer: claim rules, stored memberships and presence.
    // Called after the backplane's observer, so the connection is known there.
    void on_connection(const ConnectionInfo &connection, bool opened);

    // Verifies the request's bearer token; the failure's message is a short reason.
    // A token that verified is remembered (see verified_).
    Status authenticate(const HttpRequest &request) const;
    static constexpr size_t max_verified_tokens = 256;
    static constexpr time_t verified_for_s = 60;

    // The configured hub whose name matches name without regard to case, or nullopt.
    std::optional<std::string> find_hub(const std::string &name) const;

private:
    asio::awaitable<HttpResponse> dispatch(const HttpRequest &request, const PushRoute &route);
    asio::awaitable<HttpResponse> send(const HttpRequest &request, const PushRoute &route);
    asio::awaitable<HttpResponse> close(const HttpRequest &request, const PushRoute &route);
    asio::awaitable<HttpResponse> exists(const PushRoute &route);
    asio::awaitable<HttpResponse> change_group(const HttpRequest &request,
                                               const PushRoute &route);
    asio::awaitable<HttpResponse> leave_all(const PushRoute &route);
    asio::awaitable<HttpResponse> presence(const PushRoute &route);
    asio::awaitable<void> restore_groups(ConnectionInfo connection);

    void announce(const std::string &hub, const std::string &user, bool online);

    asio::any_io_executor executor_;
    PushSettings settings_;
    std::vector<std::string> hubs_;
    sr_jwt_keys_s *keys_ = nullptr;
    Backplane &backplane_;
    GroupStore &groups_;
    Presence &presence_;
    RedisClient &redis_;
    // Design note: verifying a token (base64, JSON, the signature) cost a fifth of the
    // daemon's time in a broadcast, and a publisher sends one token with every request
    // until it expires. So the SHA-256 of a token that verified, with its audience, is
    // kept (never the token) until its exp or verified_for_s from then, whichever comes
    // first; at most max_verified_tokens, forgotten all at once past that.
    mutable std::unordered_map<std::string, time_t> verified_;   // -> good until
};

}  // namespace signalrd
