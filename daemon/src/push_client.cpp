#include "push_client.h"

#include <cstdlib>
#include <ctime>

#include <curl/curl.h>
#include <signalr/jwt.h>

#include "json.h"

namespace signalrd {

namespace {

size_t collect(char *data, size_t size, size_t n, void *out)
{
    static_cast<std::string *>(out)->append(data, size * n);
    return size * n;
}

}  // namespace

Result<std::string> sign_push_token(const std::string &url, const std::string &access_key,
                                    int64_t now, int64_t ttl)
{
    Json claims = Json::object();
    sr_error_t err;

    json_set_string(claims.get(), "aud", url);
    json_object_set_new(claims.get(), "iat", json_integer(now));
    json_object_set_new(claims.get(), "nbf", json_integer(now));
    json_object_set_new(claims.get(), "exp", json_integer(now + ttl));
    char *token = sr_jwt_sign_hs256(claims.get(),
                                    reinterpret_cast<const unsigned char *>(access_key.data()),
                                    access_key.size(), &err);
    if (token == nullptr) {
        return Status::internal(std::string("signing failed: ") + err.str);
    }
    std::string out(token);
    std::free(token);
    return out;
}

std::string encode_component(std::string_view text)
{
    static const char hex[] = "0123456789ABCDEF";
    std::string out;

    for (unsigned char c : text) {
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == '~';
        if (plain) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

Result<PushReply> push_request(const std::string &method, const std::string &url,
                               const std::string &query, const std::string &body,
                               const std::string &access_key)
{
    Result<std::string> token = sign_push_token(url, access_key,
                                                static_cast<int64_t>(std::time(nullptr)));
    if (!token.is_ok()) {
        return token.status();
    }
    CURL *curl = curl_easy_init();
    if (curl == nullptr) {
        return Status::internal("curl_easy_init() failed");
    }
    std::string full = query.empty() ? url : url + "?" + query;
    std::string auth = "Authorization: Bearer " + *token;
    curl_slist *headers = curl_slist_append(nullptr, auth.c_str());
    if (!body.empty()) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
    }
    PushReply reply;

    curl_easy_setopt(curl, CURLOPT_URL, full.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl, CURLOPT_NOBODY, method == "HEAD" ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply.body);
    if (!body.empty() || method == "POST") {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        return Status::io_error(std::string(method) + " " + url + " failed: " +
                                curl_easy_strerror(rc));
    }
    return reply;
}

}  // namespace signalrd
