#include "push_api.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <strings.h>

#include <signalr/jwt.h>

#include "reconnect_token.h"
#include "text_split.h"

namespace signalrd {

namespace {

using Kind = HubAudience::Kind;

const std::string prefix_v2 = "/api/hubs/";
const std::string prefix_v1 = "/api/v1/hubs/";

// One route: the path after the hub ({c}, {g}, {u}: a connection, group, user) and
// the method that selects it.
struct RouteSpec {
    const char *tail;
    const char *method;
    PushAction action;
    Kind scope;
};

const RouteSpec route_specs[] = {
    {"", "POST", PushAction::send, Kind::all},   // v1
    {":send", "POST", PushAction::send, Kind::all},
    {":closeConnections", "POST", PushAction::close, Kind::all},
    {"presence", "GET", PushAction::presence, Kind::all},
    {"connections/{c}", "HEAD", PushAction::exists, Kind::connection},
    {"connections/{c}", "GET", PushAction::exists, Kind::connection},   // v1
    {"connections/{c}", "DELETE", PushAction::close, Kind::connection},
    {"connections/{c}", "POST", PushAction::send, Kind::connection},   // v1
    {"connections/{c}/:send", "POST", PushAction::send, Kind::connection},
    {"connections/{c}/groups", "DELETE", PushAction::leave_all_groups, Kind::connection},
    {"groups/{g}", "HEAD", PushAction::exists, Kind::group},
    {"groups/{g}", "GET", PushAction::exists, Kind::group},   // v1
    {"groups/{g}", "POST", PushAction::send, Kind::group},   // v1
    {"groups/{g}/:send", "POST", PushAction::send, Kind::group},
    {"groups/{g}/:closeConnections", "POST", PushAction::close, Kind::group},
    {"groups/{g}/connections/{c}", "PUT", PushAction::join_group, Kind::connection},
    {"groups/{g}/connections/{c}", "DELETE", PushAction::leave_group, Kind::connection},
    {"groups/{g}/users/{u}", "PUT", PushAction::join_group, Kind::user},   // v1
    {"groups/{g}/users/{u}", "DELETE", PushAction::leave_group, Kind::user},   // v1
    {"groups/{g}/users/{u}", "GET", PushAction::user_in_group, Kind::user},   // v1
    {"users/{u}", "HEAD", PushAction::exists, Kind::user},
    {"users/{u}", "GET", PushAction::exists, Kind::user},   // v1
    {"users/{u}", "POST", PushAction::send, Kind::user},   // v1
    {"users/{u}/:send", "POST", PushAction::send, Kind::user},
    {"users/{u}/:closeConnections", "POST", PushAction::close, Kind::user},
    {"users/{u}/groups", "DELETE", PushAction::leave_all_groups, Kind::user},
    {"users/{u}/groups/{g}", "PUT", PushAction::join_group, Kind::user},
    {"users/{u}/groups/{g}", "DELETE", PushAction::leave_group, Kind::user},
    {"users/{u}/groups/{g}", "HEAD", PushAction::user_in_group, Kind::user},
    {"users/{u}/groups/{g}", "GET", PushAction::user_in_group, Kind::user},
    {"users/{u}/presence", "GET", PushAction::presence, Kind::user},
};

// The segments of a path ("" has none).
std::vector<std::string> split(std::string_view s)
{
    if (s.empty()) {
        return {};
    }
    return split_on(s, '/');
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Strict percent-decoding: a bad escape or a NUL is nullopt.
std::optional<std::string> decode(std::string_view s, bool plus_is_space)
{
    std::string out;

    for (size_t i = 0; i < s.size(); i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) {
                return std::nullopt;
            }
            int hi = hex_digit(s[i + 1]);
            int lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return std::nullopt;
            }
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0') {
            return std::nullopt;
        }
        out.push_back(c);
    }
    return out;
}

// Matches the segments after the hub against spec's tail, filling route's names.
bool match_tail(const std::vector<std::string> &rest, const RouteSpec &spec, PushRoute &route)
{
    std::vector<std::string> pattern = split(spec.tail);

    if (pattern.size() != rest.size()) {
        return false;
    }
    for (size_t i = 0; i < pattern.size(); i++) {
        if (pattern[i] == "{c}" || pattern[i] == "{u}") {
            route.name = rest[i];
        } else if (pattern[i] == "{g}") {
            (spec.scope == Kind::group ? route.name : route.group) = rest[i];
        } else if (pattern[i] != rest[i]) {
            return false;
        }
    }
    return true;
}

HttpResponse failure(int status, const char *code, const std::string &message)
{
    Json extra = Json::object();

    json_set_string(extra.get(), "code", code);
    json_set_string(extra.get(), "message", message);
    return HttpResponse::problem(status, message, extra.get());
}

HttpResponse unavailable(const Status &s)
{
    if (s.code() != StatusCode::unavailable) {
        log_error("push api: %s", s.message().c_str());
    }
    return failure(503, "ServiceUnavailable", "Redis is unavailable; retry later");
}

}  // namespace

std::vector<std::string> query_values(std::string_view query, std::string_view name)
{
    std::vector<std::string> out;
    size_t pos = 0;

    while (!query.empty() && pos <= query.size()) {
        size_t amp = query.find('&', pos);
        if (amp == std::string_view::npos) {
            amp = query.size();
        }
        std::string_view pair = query.substr(pos, amp - pos);
        size_t eq = pair.find('=');
        std::optional<std::string> key = decode(pair.substr(0, eq), true);
        if (key && *key == name) {
            std::optional<std::string> value =
                eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1), true);
            if (value) {
                out.push_back(*value);
            }
        }
        pos = amp + 1;
    }
    return out;
}

Result<PushRouteMatch> parse_push_route(const std::string &method, const std::string &path)
{
    PushRouteMatch match;

    if (path == "/api/health" || path == "/api/v1/health") {
        if (method == "HEAD" || method == "GET") {
            match.route = PushRoute{};
            match.route->v1 = path == "/api/v1/health";
        } else {
            match.allow = "GET, HEAD";
        }
        return match;
    }

    bool v1 = path.rfind(prefix_v1, 0) == 0;
    if (!v1 && path.rfind(prefix_v2, 0) != 0) {
        return match;
    }
    std::vector<std::string> raw = split(path.substr(v1 ? prefix_v1.size() : prefix_v2.size()));
    std::vector<std::string> segments;
    for (const std::string &r : raw) {
        std::optional<std::string> s = decode(r, false);
        if (!s || s->empty()) {
            return Status::invalid_argument("the path has an empty or badly escaped segment");
        }
        segments.push_back(*s);
    }
    if (segments.empty()) {
        return match;
    }
    std::vector<std::string> rest(segments.begin() + 1, segments.end());

    for (const RouteSpec &spec : route_specs) {
        PushRoute route;
        if (!match_tail(rest, spec, route)) {
            continue;
        }
        if (method != spec.method) {
            match.allow += (match.allow.empty() ? "" : ", ") + std::string(spec.method);
            continue;
        }
        if (!valid_hub_name(segments[0])) {
            return Status::invalid_argument("a hub name is a letter, then letters, digits or _");
        }
        // users and connection ids follow the rule of group names
        if ((!route.name.empty() && !valid_group_name(route.name)) ||
            (!route.group.empty() && !valid_group_name(route.group))) {
            return Status::invalid_argument("names are 1 to 1024 characters, no control ones");
        }
        route.action = spec.action;
        route.scope = spec.scope;
        route.hub = segments[0];
        route.v1 = v1;
        match.route = route;
        match.allow.clear();
        return match;
    }
    return match;
}

std::string expected_audience(const HttpRequest &request)
{
    const std::string *proto = request.header("x-forwarded-proto");
    const std::string *host = request.header("x-forwarded-host");

    if (host == nullptr || host->empty()) {
        host = request.header("host");
    }
    std::string scheme = proto && !proto->empty() ? *proto : "http";
    return scheme + "://" + (host ? *host : "localhost") + request.path;
}

PushApi::PushApi(asio::any_io_executor executor, PushSettings settings,
                 std::vector<std::string> hubs, Backplane &backplane, GroupStore &groups,
                 Presence &presence, RedisClient &redis)
    : executor_(executor),
      settings_(std::move(settings)),
      hubs_(std::move(hubs)),
      backplane_(backplane),
      groups_(groups),
      presence_(presence),
      redis_(redis)
{
    const std::string &access_key = settings_.access_key;

    if (!access_key.empty()) {
        sr_error_t err;
        keys_ = sr_jwt_keys_new();
        if (keys_ != nullptr &&
            sr_jwt_keys_add_secret(keys_, nullptr,
                                   reinterpret_cast<const unsigned char *>(access_key.data()),
                                   access_key.size(), &err) != SR_OK) {
            log_error("push api: sr_jwt_keys_add_secret() failed: %s", err.str);
            sr_jwt_keys_free(keys_);
            keys_ = nullptr;
        }
    }
    if (keys_ != nullptr) {
        log_info("push api: %zu push hubs, %zu group rules", settings_.hubs.size(),
                 settings_.rules.size());
    }
    if (!settings_.events_group.empty()) {
        presence_.set_event_handler([this](const std::string &hub, const std::string &user,
                                           bool online) { announce(hub, user, online); });
    }
}

PushApi::~PushApi()
{
    sr_jwt_keys_free(keys_);
}

bool PushApi::handles(const std::string &path)
{
    return path.rfind(prefix_v2, 0) == 0 || path.rfind(prefix_v1, 0) == 0 ||
           path == "/api/health" || path == "/api/v1/health";
}

std::optional<std::string> PushApi::find_hub(const std::string &name) const
{
    for (const std::string &hub : hubs_) {
        if (strcasecmp(hub.c_str(), name.c_str()) == 0) {
            return hub;
        }
    }
    return std::nullopt;
}

Status PushApi::authenticate(const HttpRequest &request) const
{
    const std::string *header = request.header("authorization");

    if (keys_ == nullptr) {
        return Status::unavailable("no access key is configured");
    }
    if (header == nullptr || header->size() < 7 || strncasecmp(header->c_str(), "Bearer ", 7)) {
        return Status::invalid_argument("a bearer token is required");
    }
    std::string token = header->substr(7);
    std::string audience = expected_audience(request);
    time_t now = std::time(nullptr);
    std::string remembered = token_hash(audience + "\n" + token);
    auto known = verified_.find(remembered);
    if (known != verified_.end()) {
        if (now < known->second) {
            return Status::ok();
        }
        verified_.erase(known);
    }
    const char *audiences[] = {audience.c_str()};
    sr_jwt_policy_t policy{};
    sr_jwt_identity_t identity{};
    sr_error_t err;

    policy.audiences = audiences;
    policy.audiences_n = 1;
    policy.leeway = 30;
    // Azure's REST tokens carry no user: any string claim that must be there will do
    policy.user_claim = "aud";
    int rc = sr_jwt_verify(keys_, &policy, token.data(), token.size(), now, &identity, &err);
    time_t expires = identity.expires;
    sr_jwt_identity_clear(&identity);
    if (rc != SR_OK) {
        return Status::invalid_argument(rc == SR_ERR_AUTH ? err.str : "invalid token");
    }
    if (verified_.size() >= max_verified_tokens) {
        verified_.clear();
    }
    time_t until = now + verified_for_s;
    verified_[remembered] = expires != 0 && expires < until ? expires : until;
    return Status::ok();
}

asio::awaitable<HttpResponse> PushApi::handle(const HttpRequest &request)
{
    Result<PushRouteMatch> match = parse_push_route(request.method, request.path);
    HttpResponse res;

    if (!match.is_ok()) {
        res = failure(400, "BadRequest", match.status().message());
    } else if (!match->route && match->allow.empty()) {
        res = failure(404, "NotFound", "no such resource");
    } else if (!match->route) {
        res = failure(405, "MethodNotAllowed", "method not allowed here");
        res.headers.emplace_back("Allow", match->allow);
    } else if (keys_ == nullptr) {
        res = failure(404, "NotFound", "the push API is not configured (push_access_key_file)");
    } else {
        res = co_await dispatch(request, *match->route);
    }
    if (request.method == "HEAD") {
        res.body.clear();
        res.content_type.clear();
    }
    co_return res;
}

asio::awaitable<HttpResponse> PushApi::dispatch(const HttpRequest &request,
                                                const PushRoute &given)
{
    if (given.hub.empty()) {
        co_return redis_.connected() ? HttpResponse::empty(200)
                                     : failure(503, "ServiceUnavailable", "Redis is down");
    }
    Status auth = authenticate(request);
    if (!auth.is_ok()) {
        HttpResponse res = failure(401, "Unauthorized", auth.message());
        res.headers.emplace_back("WWW-Authenticate", "Bearer");
        co_return res;
    }

    PushRoute route = given;
    std::vector<std::string> application = query_values(request.query, "application");
    std::string name = application.empty() ? route.hub : application[0] + "_" + route.hub;
    std::optional<std::string> hub = find_hub(name);
    if (!hub) {
        co_return failure(404, "NotFound", "hub '" + name + "' does not exist");
    }
    route.hub = *hub;

    switch (route.action) {
    case PushAction::send:
        co_return co_await send(request, route);
    case PushAction::close:
        co_return co_await close(request, route);
    case PushAction::exists:
        co_return co_await exists(route);
    case PushAction::join_group:
    case PushAction::leave_group:
    case PushAction::user_in_group:
        co_return co_await change_group(request, route);
    case PushAction::leave_all_groups:
        co_return co_await leave_all(route);
    case PushAction::presence:
        co_return co_await presence(route);
    case PushAction::health:
        break;
    }
    co_return failure(404, "NotFound", "no such resource");
}

asio::awaitable<HttpResponse> PushApi::send(const HttpRequest &request, const PushRoute &route)
{
    Result<Json> body = parse_json(request.body);
    if (!body.is_ok() || !json_is_object(body->get())) {
        co_return failure(400, "BadRequest", "the body must be a JSON object");
    }
    json_t *target = json_object_get(body->get(), "target");
    json_t *arguments = json_object_get(body->get(), "arguments");
    if (!json_is_string(target) || json_string_length(target) == 0 ||
        json_string_length(target) > 1024) {
        co_return failure(400, "BadRequest", "target: a method name is required");
    }
    if (arguments != nullptr && !json_is_array(arguments) && !json_is_null(arguments)) {
        co_return failure(400, "BadRequest", "arguments: must be an array");
    }
    if (json_is_null(arguments)) {
        arguments = nullptr;
    }
    // TODO(docs/push-api.md): Azure's rawBytes and rawOnly members are ignored.

    HubAudience audience{route.scope, route.hub, route.name};
    Result<long long> sent = co_await backplane_.send(audience, json_string_value(target),
                                                      arguments,
                                                      query_values(request.query, "excluded"));
    if (!sent.is_ok()) {
        co_return unavailable(sent.status());
    }
    Json answer = Json::object();
    json_object_set_new(answer.get(), "instances", json_integer(*sent));
    co_return HttpResponse::json(202, answer.get());
}

asio::awaitable<HttpResponse> PushApi::close(const HttpRequest &request, const PushRoute &route)
{
    std::vector<std::string> reason = query_values(request.query, "reason");
    std::string text = reason.empty() ? "" : reason[0].substr(0, 512);
    HubAudience audience{route.scope, route.hub, route.name};

    Result<long long> r = co_await backplane_.control(audience, "close", text,
                                                      query_values(request.query, "excluded"));
    if (!r.is_ok()) {
        co_return unavailable(r.status());
    }
    co_return HttpResponse::empty(route.scope == Kind::connection ? 200 : 204);
}

asio::awaitable<HttpResponse> PushApi::exists(const PushRoute &route)
{
    Result<bool> found = false;

    if (route.scope == Kind::connection) {
        found = co_await presence_.connection_exists(route.hub, route.name);
    } else if (route.scope == Kind::group) {
        found = co_await presence_.group_exists(route.hub, route.name);
    } else {
        Result<long long> n = co_await presence_.user_connections(route.hub, route.name);
        found = n.is_ok() ? Result<bool>(*n > 0) : Result<bool>(n.status());
    }
    if (!found.is_ok()) {
        co_return unavailable(found.status());
    }
    co_return *found ? HttpResponse::empty(200) : failure(404, "NotFound", "not found");
}

namespace {

// ttl of a user's membership: absent is the default, 0 means "current connections only".
std::optional<long long> parse_ttl(const std::vector<std::string> &values)
{
    if (values.empty()) {
        return static_cast<long long>(GroupStore::user_default_ttl.count());
    }
    const std::string &v = values[0];
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    return std::stoll(v);
}

}  // namespace

asio::awaitable<HttpResponse> PushApi::change_group(const HttpRequest &request,
                                                    const PushRoute &route)
{
    bool join = route.action == PushAction::join_group;
    HubAudience audience{route.scope, route.hub, route.name};

    if (route.action == PushAction::user_in_group) {
        Result<bool> in = co_await groups_.user_in_group(route.hub, route.name, route.group);
        if (!in.is_ok()) {
            co_return unavailable(in.status());
        }
        co_return *in ? HttpResponse::empty(200) : failure(404, "NotFound", "not in the group");
    }

    Status stored = Status::ok();
    if (route.scope == Kind::connection) {
        Result<bool> found = co_await presence_.connection_exists(route.hub, route.name);
        if (!found.is_ok()) {
            co_return unavailable(found.status());
        }
        if (!*found) {
            co_return failure(404, "NotFound", "connection '" + route.name + "' does not exist");
        }
        // (no co_await inside ?: : g++ 12 miscompiles it)
        if (join) {
            stored = co_await groups_.add_connection(route.hub, route.name, route.group);
        } else {
            stored = co_await groups_.remove_connection(route.hub, route.name, route.group);
        }
    } else if (join) {
        std::optional<long long> ttl = parse_ttl(query_values(request.query, "ttl"));
        if (!ttl) {
            co_return failure(400, "BadRequest", "ttl: a number of seconds is expected");
        }
        if (*ttl > 0) {
            stored = co_await groups_.add_user(route.hub, route.name, route.group,
                                               std::chrono::seconds(*ttl));
        }
    } else {
        stored = co_await groups_.remove_user(route.hub, route.name, route.group);
    }
    if (!stored.is_ok()) {
        co_return unavailable(stored);
    }

    // TODO(docs/push-api.md): an instance keeps one set of groups per connection, so a
    // user leaving a group takes its connections out even if they joined it themselves.
    Result<long long> r = co_await backplane_.control(audience, join ? "join" : "leave",
                                                      route.group);
    if (!r.is_ok()) {
        co_return unavailable(r.status());
    }
    bool no_content = route.scope == Kind::user && !join && !route.v1;
    co_return HttpResponse::empty(no_content ? 204 : 200);
}

asio::awaitable<HttpResponse> PushApi::leave_all(const PushRoute &route)
{
    HubAudience audience{route.scope, route.hub, route.name};

    if (route.scope == Kind::connection) {
        Status s = co_await groups_.clear_connection(route.hub, route.name);
        if (!s.is_ok()) {
            co_return unavailable(s);
        }
        Result<long long> r = co_await backplane_.control(audience, "leave_all", "");
        co_return r.is_ok() ? HttpResponse::empty(200) : unavailable(r.status());
    }

    Result<std::vector<std::string>> left = co_await groups_.clear_user(route.hub, route.name);
    if (!left.is_ok()) {
        co_return unavailable(left.status());
    }
    for (const std::string &group : *left) {
        Result<long long> r = co_await backplane_.control(audience, "leave", group);
        if (!r.is_ok()) {
            co_return unavailable(r.status());
        }
    }
    co_return HttpResponse::empty(204);
}

asio::awaitable<HttpResponse> PushApi::presence(const PushRoute &route)
{
    Json answer = Json::object();
    json_set_string(answer.get(), "hub", route.hub);

    if (route.scope == Kind::user) {
        Result<long long> n = co_await presence_.user_connections(route.hub, route.name);
        if (!n.is_ok()) {
            co_return unavailable(n.status());
        }
        json_set_string(answer.get(), "user", route.name);
        json_object_set_new(answer.get(), "online", json_boolean(*n > 0));
        json_object_set_new(answer.get(), "connections", json_integer(*n));
        co_return HttpResponse::json(200, answer.get());
    }

    Result<std::map<std::string, long long>> users = co_await presence_.users(route.hub);
    if (!users.is_ok()) {
        co_return unavailable(users.status());
    }
    Json list = Json::array();
    long long total = 0;
    for (const auto &[user, n] : *users) {
        Json item = Json::object();
        json_set_string(item.get(), "user", user);
        json_object_set_new(item.get(), "connections", json_integer(n));
        json_array_append(list.get(), item.get());
        total += n;
    }
    json_object_set(answer.get(), "users", list.get());
    json_object_set_new(answer.get(), "userCount", json_integer(users->size()));
    json_object_set_new(answer.get(), "connectionCount", json_integer(total));
    co_return HttpResponse::json(200, answer.get());
}

void PushApi::on_connection(const ConnectionInfo &connection, bool opened)
{
    if (!opened) {
        presence_.on_connection(connection, false);
        auto gone = [](GroupStore &groups, std::string hub,
                       std::string id) -> asio::awaitable<void> {
            co_await groups.connection_gone(hub, id);
        };
        spawn_detached(executor_, gone(groups_, connection.hub, connection.id), "group expiry");
        return;
    }

    presence_.on_connection(connection, true);
    for (const std::string &group : groups_from_claims(settings_.rules, connection)) {
        backplane_.change_local_group(connection.id, group, true);
    }
    spawn_detached(executor_, restore_groups(connection), "group restore");
}

asio::awaitable<void> PushApi::restore_groups(ConnectionInfo connection)
{
    Result<std::vector<std::string>> groups =
        co_await groups_.groups_on_connect(connection.hub, connection.id, connection.user);
    if (!groups.is_ok()) {
        log_warn("connection %s: stored groups not read: %s", connection.id.c_str(),
                 groups.status().message().c_str());
        co_return;
    }
    for (const std::string &group : *groups) {
        backplane_.change_local_group(connection.id, group, true);
    }
}

void PushApi::announce(const std::string &hub, const std::string &user, bool online)
{
    if (std::find(settings_.hubs.begin(), settings_.hubs.end(), hub) == settings_.hubs.end()) {
        return;
    }
    auto run = [](Backplane &backplane, HubAudience audience, std::string who,
                  bool appeared) -> asio::awaitable<void> {
        Json arguments = Json::array();
        json_array_append_new(arguments.get(), json_stringn(who.data(), who.size()));
        co_await backplane.send(audience, appeared ? "UserConnected" : "UserDisconnected",
                                arguments.get());
    };
    HubAudience audience{Kind::group, hub, settings_.events_group};
    spawn_detached(executor_, run(backplane_, audience, user, online), "presence event");
}

}  // namespace signalrd
