// Daemon-internal routes for sending hub messages through the backplane, served only on
// the HTTP socket (nginx does not proxy /admin): whoever can reach that socket may use
// them, as whoever can reach Redis may publish. The push API for business services
// will sit in front of the same Backplane calls.
//
//   POST   /admin/v1/hubs/{hub}                         everyone on the hub
//   POST   /admin/v1/hubs/{hub}/users/{user}            every connection of the user
//   POST   /admin/v1/hubs/{hub}/groups/{group}          every connection in the group
//   POST   /admin/v1/hubs/{hub}/connections/{id}        one connection
//          body {"target": "Method", "arguments": [...]} -> 202 {"instances": N}
//   PUT    /admin/v1/hubs/{hub}/groups/{group}/connections/{id}   204, 404 when no
//   DELETE /admin/v1/hubs/{hub}/groups/{group}/connections/{id}   instance holds it
//
// Path segments are taken as they are (no percent-decoding) and must not be empty.

#pragma once

#include "backplane.h"
#include "http_server.h"

namespace signalrd {

class AdminApi {
public:
    explicit AdminApi(Backplane &backplane) : backplane_(backplane) {}

    static bool handles(const std::string &path) { return path.rfind("/admin/", 0) == 0; }

    asio::awaitable<HttpResponse> handle(const HttpRequest &request);

private:
    asio::awaitable<HttpResponse> send(const HttpRequest &request, const HubAudience &audience);
    asio::awaitable<HttpResponse> group(const HttpRequest &request, const std::string &hub,
                                        const std::string &group, const std::string &id);

    Backplane &backplane_;
};

}  // namespace signalrd
