#include "admin_api.h"

#include <vector>

namespace signalrd {

namespace {

const std::string admin_prefix = "/admin/v1/hubs/";

std::vector<std::string> segments(const std::string &path)
{
    std::vector<std::string> out;
    size_t pos = 0;

    while (pos <= path.size()) {
        size_t slash = path.find('/', pos);
        if (slash == std::string::npos) {
            slash = path.size();
        }
        out.push_back(path.substr(pos, slash - pos));
        pos = slash + 1;
    }
    return out;
}

HttpResponse unavailable(const Status &s)
{
    if (s.code() != StatusCode::unavailable) {
        log_error("backplane: %s", s.message().c_str());
    }
    return HttpResponse::problem(503, "the backplane is unavailable");
}

}  // namespace

asio::awaitable<HttpResponse> AdminApi::handle(const HttpRequest &request)
{
    if (request.path.rfind(admin_prefix, 0) != 0) {
        co_return HttpResponse::problem(404, "no such resource");
    }
    std::vector<std::string> parts = segments(request.path.substr(admin_prefix.size()));
    for (const std::string &p : parts) {
        if (p.empty()) {
            co_return HttpResponse::problem(404, "no such resource");
        }
    }

    const std::string &hub = parts[0];
    if (parts.size() == 5 && parts[1] == "groups" && parts[3] == "connections") {
        co_return co_await group(request, hub, parts[2], parts[4]);
    }

    HubAudience audience{HubAudience::Kind::all, hub, ""};
    if (parts.size() == 3 && parts[1] == "users") {
        audience = {HubAudience::Kind::user, hub, parts[2]};
    } else if (parts.size() == 3 && parts[1] == "groups") {
        audience = {HubAudience::Kind::group, hub, parts[2]};
    } else if (parts.size() == 3 && parts[1] == "connections") {
        audience = {HubAudience::Kind::connection, hub, parts[2]};
    } else if (parts.size() != 1) {
        co_return HttpResponse::problem(404, "no such resource");
    }
    if (request.method != "POST") {
        HttpResponse res = HttpResponse::problem(405, "method not allowed here");
        res.headers.emplace_back("Allow", "POST");
        co_return res;
    }
    co_return co_await send(request, audience);
}

asio::awaitable<HttpResponse> AdminApi::send(const HttpRequest &request,
                                             const HubAudience &audience)
{
    Result<Json> body = parse_json(request.body);
    if (!body.is_ok() || !json_is_object(body->get())) {
        co_return HttpResponse::problem(400, "the body must be a JSON object");
    }
    const char *target = json_get_string(body->get(), "target");
    json_t *arguments = json_object_get(body->get(), "arguments");
    if (target == nullptr || *target == '\0') {
        co_return HttpResponse::problem(400, "target: a method name is required");
    }
    if (arguments != nullptr && !json_is_array(arguments)) {
        co_return HttpResponse::problem(400, "arguments: must be an array");
    }

    Result<long long> sent = co_await backplane_.send(audience, target, arguments);
    if (!sent.is_ok()) {
        co_return unavailable(sent.status());
    }
    Json answer = Json::object();
    json_object_set_new(answer.get(), "instances", json_integer(*sent));
    co_return HttpResponse::json(202, answer.get());
}

asio::awaitable<HttpResponse> AdminApi::group(const HttpRequest &request, const std::string &hub,
                                              const std::string &group, const std::string &id)
{
    if (request.method != "PUT" && request.method != "DELETE") {
        HttpResponse res = HttpResponse::problem(405, "method not allowed here");
        res.headers.emplace_back("Allow", "PUT, DELETE");
        co_return res;
    }
    Result<bool> held = co_await backplane_.change_group(hub, id, group, request.method == "PUT");
    if (!held.is_ok()) {
        co_return unavailable(held.status());
    }
    if (!*held) {
        co_return HttpResponse::problem(404, "no instance holds that connection");
    }
    co_return HttpResponse::empty(204);
}

}  // namespace signalrd
