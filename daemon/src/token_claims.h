// Development tokens: the one place that decides their claims, used by both
// `signalrctl token` and GET /dev/token. HS256 over a shared secret; for the dev stack
// and tests only.

#pragma once

#include <cstdint>
#include <string>

#include "json.h"
#include "status.h"

namespace signalrd {

inline constexpr const char *dev_token_issuer = "nginx-signalr-dev";
inline constexpr const char *dev_token_audience = "nginx-signalr";
inline constexpr const char *dev_token_scope = "chatting_read chatting_write";
inline constexpr int64_t dev_token_default_ttl = 3600;

struct DevTokenRequest {
    std::string subject;      // 1 to 128 of [A-Za-z0-9._@-]
    std::string role;         // empty: "user"; same alphabet, at most 64
    int64_t ttl = dev_token_default_ttl;   // seconds, 1 to 30 days
    int64_t now = 0;          // Unix seconds
};

// {sub, role, roles: ["user", role?], scope, iss, aud, iat, exp}.
Result<Json> dev_token_claims(const DevTokenRequest &request);

// Signs the claims of request with secret.
Result<std::string> sign_dev_token(const DevTokenRequest &request, const std::string &secret);

// Reads an HMAC secret file; a trailing newline (LF or CRLF) is not part of the secret.
Result<std::string> read_secret_file(const std::string &path);

}  // namespace signalrd
