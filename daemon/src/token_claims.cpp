#include "token_claims.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <signalr/jwt.h>

namespace signalrd {

namespace {

bool valid_name(const std::string &s, size_t max)
{
    if (s.empty() || s.size() > max) {
        return false;
    }
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@';
        if (!ok) {
            return false;
        }
    }
    return true;
}

}  // namespace

Result<Json> dev_token_claims(const DevTokenRequest &r)
{
    if (!valid_name(r.subject, 128)) {
        return Status::invalid_argument("sub must be 1 to 128 letters, digits or ._@-");
    }
    if (!r.role.empty() && !valid_name(r.role, 64)) {
        return Status::invalid_argument("role must be 1 to 64 letters, digits or ._@-");
    }
    if (r.ttl < 1 || r.ttl > 30 * 86400) {
        return Status::invalid_argument("ttl must be between 1 and 2592000 seconds");
    }

    std::string role = r.role.empty() ? "user" : r.role;
    Json claims = Json::object();
    Json roles = Json::array();

    json_array_append_new(roles.get(), json_string("user"));
    if (role != "user") {
        json_array_append_new(roles.get(), json_stringn(role.data(), role.size()));
    }
    json_set_string(claims.get(), "sub", r.subject);
    json_set_string(claims.get(), "role", role);
    json_object_set(claims.get(), "roles", roles.get());
    json_set_string(claims.get(), "scope", dev_token_scope);
    json_set_string(claims.get(), "iss", dev_token_issuer);
    json_set_string(claims.get(), "aud", dev_token_audience);
    json_object_set_new(claims.get(), "iat", json_integer(r.now));
    json_object_set_new(claims.get(), "exp", json_integer(r.now + r.ttl));
    return claims;
}

Result<std::string> sign_dev_token(const DevTokenRequest &request, const std::string &secret)
{
    Result<Json> claims = dev_token_claims(request);
    if (!claims.is_ok()) {
        return claims.status();
    }

    sr_error_t err;
    char *token = sr_jwt_sign_hs256(claims->get(),
                                    reinterpret_cast<const unsigned char *>(secret.data()),
                                    secret.size(), &err);
    if (token == nullptr) {
        return Status::internal(std::string("signing failed: ") + err.str);
    }
    std::string out(token);
    std::free(token);
    return out;
}

Result<std::string> read_secret_file(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return Status::io_error("cannot read key file \"" + path + "\": " + std::strerror(errno));
    }

    std::stringstream content;
    content << in.rdbuf();
    std::string secret = content.str();
    if (!secret.empty() && secret.back() == '\n') {
        secret.pop_back();
        if (!secret.empty() && secret.back() == '\r') {
            secret.pop_back();
        }
    }
    if (secret.empty()) {
        return Status::invalid_argument("key file \"" + path + "\" is empty");
    }
    return secret;
}

}  // namespace signalrd
