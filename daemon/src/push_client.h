// A client of the push API (push_api.h), for signalrctl: signs each request's token
// as Azure SignalR Service's SDKs do (HS256 with the access key, "aud" the URL without
// its query) and makes the request with libcurl's easy interface, which is enough for
// a command-line tool that makes one request and exits.

#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "status.h"

namespace signalrd {

struct PushReply {
    long status = 0;
    std::string body;
};

// A token for url (scheme, host and path; no query), valid from now for ttl seconds.
Result<std::string> sign_push_token(const std::string &url, const std::string &access_key,
                                    int64_t now, int64_t ttl = 300);

// Percent-encodes one path segment or query value (unreserved characters stay).
std::string encode_component(std::string_view text);

// method url[?query] with body (JSON when not empty). A transport failure is io_error.
Result<PushReply> push_request(const std::string &method, const std::string &url,
                               const std::string &query, const std::string &body,
                               const std::string &access_key);

}  // namespace signalrd
