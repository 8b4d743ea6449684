/*
 * JSON Web Token verification (and HS256 signing, for dev tokens and
 * the push API's clients), on libjwt with OpenSSL for keys.
 *
 * Verification is strict: the key decides the algorithm. A token whose
 * header names another algorithm family than its key (an HMAC token
 * against an RSA key, say) or "none" is refused before any signature
 * check.
 */

#ifndef SIGNALR_JWT_H
#define SIGNALR_JWT_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include <signalr/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A set of verification keys, each optionally named by a "kid". */
typedef struct sr_jwt_keys_s  sr_jwt_keys_t;

sr_jwt_keys_t *sr_jwt_keys_new(void);
void sr_jwt_keys_free(sr_jwt_keys_t *keys);

/* Adds an HMAC secret; kid may be NULL (matches any token kid). */
int sr_jwt_keys_add_secret(sr_jwt_keys_t *keys, const char *kid,
    const unsigned char *secret, size_t len, sr_error_t *err);

/* Adds an RSA or EC public key from a PEM file or PEM text. */
int sr_jwt_keys_add_pem_file(sr_jwt_keys_t *keys, const char *kid,
    const char *path, sr_error_t *err);
int sr_jwt_keys_add_pem(sr_jwt_keys_t *keys, const char *kid,
    const char *pem, size_t len, sr_error_t *err);

/*
 * Adds every key of a file: a PEM key, a JWKS document, or a raw HMAC
 * secret, recognised by content. SR_ERR_IO, SR_ERR_INVALID.
 */
int sr_jwt_keys_load_file(sr_jwt_keys_t *keys, const char *path,
    sr_error_t *err);

/* What a token must satisfy besides its signature. */
typedef struct {
    const char         *issuer;      /* NULL: not checked */
    const char *const  *audiences;   /* any one must match; NULL: none */
    size_t              audiences_n;
    long                leeway;      /* seconds, for exp and nbf */
    const char         *user_claim;  /* NULL means "sub" */
} sr_jwt_policy_t;

/* The result of a successful verification. */
typedef struct {
    char    *user;       /* owned: the user claim's value */
    json_t  *claims;     /* owned: the whole payload object */
    time_t   expires;    /* exp, or 0 when the token has none */
} sr_jwt_identity_t;

/*
 * Verifies token (token_len bytes, not NUL-terminated) at time now.
 * SR_OK with *id filled; SR_ERR_AUTH with a short reason fit for a 401
 * body ("token expired", "invalid signature", "unknown key", ...) that
 * never echoes the token.
 */
int sr_jwt_verify(const sr_jwt_keys_t *keys, const sr_jwt_policy_t *policy,
    const char *token, size_t token_len, time_t now, sr_jwt_identity_t *id,
    sr_error_t *err);

void sr_jwt_identity_clear(sr_jwt_identity_t *id);

/*
 * Makes OpenSSL load what HMAC verification needs (its default provider
 * and the SHA-2 digests) now instead of at the first token: about a
 * millisecond and 2 MB the first time in a process. Call once in each
 * process that verifies, after fork(), since the pages it touches are
 * counted where they are first used. Public-key algorithms still load
 * their own code at their first use.
 */
void sr_jwt_prepare(void);

/*
 * Signs claims (a JSON object, not consumed) with HS256 and secret.
 * Returns a malloc'ed NUL-terminated token, or NULL with err set.
 */
char *sr_jwt_sign_hs256(const json_t *claims, const unsigned char *secret,
    size_t secret_len, sr_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_JWT_H */
