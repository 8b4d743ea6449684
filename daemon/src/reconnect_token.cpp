#include "reconnect_token.h"

#include <cstring>

#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

namespace signalrd {

namespace {

// OpenSSL 3's SHA256() looks the digest's implementation up on every call; the push
// API hashes every request's token, and the lookup was half of what that cost. Looked
// up once for the process instead (nullptr: SHA256() is used as before).
const EVP_MD *sha256_md()
{
    static EVP_MD *md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}

}  // namespace

std::string token_hash(const std::string &token)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[SHA256_DIGEST_LENGTH];
    unsigned int digest_len = 0;
    const EVP_MD *md = sha256_md();
    std::string out;

    if (md == nullptr || EVP_Digest(token.data(), token.size(), digest, &digest_len, md,
                                    nullptr) != 1) {
        SHA256(reinterpret_cast<const unsigned char *>(token.data()), token.size(), digest);
    }
    out.reserve(2 * sizeof(digest));
    for (unsigned char byte : digest) {
        out.push_back(hex[byte >> 4]);
        out.push_back(hex[byte & 0x0f]);
    }
    return out;
}

std::string open_body_token(const unsigned char *body, size_t len)
{
    msgpack_unpacked result;
    std::string token;

    msgpack_unpacked_init(&result);
    size_t offset = 0;
    int rc = msgpack_unpack_next(&result, reinterpret_cast<const char *>(body), len, &offset);
    if (rc == MSGPACK_UNPACK_SUCCESS && result.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map &map = result.data.via.map;
        for (uint32_t i = 0; i < map.size; i++) {
            const msgpack_object &key = map.ptr[i].key;
            const msgpack_object &value = map.ptr[i].val;
            if (key.type == MSGPACK_OBJECT_STR && key.via.str.size == 5 &&
                std::memcmp(key.via.str.ptr, "token", 5) == 0 &&
                value.type == MSGPACK_OBJECT_STR) {
                token.assign(value.via.str.ptr, value.via.str.size);
            }
        }
    }
    msgpack_unpacked_destroy(&result);
    return token;
}

}  // namespace signalrd
