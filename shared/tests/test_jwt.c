/*
 * JWT verification: every algorithm family, key files, the refusals
 * that stop algorithm confusion, and the claim checks. Tokens are signed
 * here with OpenSSL directly, independently of the code under test.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <signalr/jwt.h>


#define NOW  ((time_t) 1700000000)

static EVP_PKEY  *rsa1, *rsa2, *ec256;

static const unsigned char  secret[] = "a-test-secret-of-32-bytes-length";

/* RFC 7515 appendix A.1: an HS256 token from another implementation. */
static const char  rfc_token[] =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";


static char *
b64url(const unsigned char *data, size_t len)
{
    char    *out;
    size_t   i, n;

    out = malloc(len / 3 * 4 + 8);
    assert_non_null(out);

    n = (size_t) EVP_EncodeBlock((unsigned char *) out, data, (int) len);

    while (n > 0 && out[n - 1] == '=') {
        n--;
    }

    out[n] = '\0';

    for (i = 0; i < n; i++) {
        out[i] = (out[i] == '+') ? '-' : (out[i] == '/') ? '_' : out[i];
    }

    return out;
}


static const EVP_MD *
md_of(const char *alg)
{
    if (strcmp(alg + 2, "384") == 0) {
        return EVP_sha384();
    }

    return (strcmp(alg + 2, "512") == 0) ? EVP_sha512() : EVP_sha256();
}


/* Signs input with alg's family: HMAC with key_bytes, else with pkey. */
static unsigned char *
sign(const char *alg, EVP_PKEY *pkey, const unsigned char *key_bytes,
    size_t key_len, const char *input, size_t *sig_len)
{
    const unsigned char  *p;
    unsigned char        *sig, *raw;
    const BIGNUM         *r, *s;
    EVP_PKEY_CTX         *pctx;
    unsigned int          mac_len;
    EVP_MD_CTX           *ctx;
    ECDSA_SIG            *ecdsa;
    size_t                half;

    if (alg[0] == 'H') {
        sig = malloc(EVP_MAX_MD_SIZE);
        assert_non_null(HMAC(md_of(alg), key_bytes, (int) key_len,
                             (const unsigned char *) input, strlen(input),
                             sig, &mac_len));
        *sig_len = mac_len;
        return sig;
    }

    ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, &pctx, md_of(alg), NULL, pkey),
                     1);

    if (alg[0] == 'P') {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx,
                                                      RSA_PKCS1_PSS_PADDING),
                         1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                    RSA_PSS_SALTLEN_DIGEST),
                         1);
    }

    assert_int_equal(EVP_DigestSign(ctx, NULL, sig_len,
                                    (const unsigned char *) input,
                                    strlen(input)), 1);
    sig = malloc(*sig_len);
    assert_int_equal(EVP_DigestSign(ctx, sig, sig_len,
                                    (const unsigned char *) input,
                                    strlen(input)), 1);
    EVP_MD_CTX_free(ctx);

    if (alg[0] != 'E') {
        return sig;
    }

    /* JWS wants R || S, not DER */
    p = sig;
    ecdsa = d2i_ECDSA_SIG(NULL, &p, (long) *sig_len);
    assert_non_null(ecdsa);
    ECDSA_SIG_get0(ecdsa, &r, &s);

    half = ((size_t) EVP_PKEY_get_bits(pkey) + 7) / 8;
    raw = malloc(2 * half);
    BN_bn2binpad(r, raw, (int) half);
    BN_bn2binpad(s, raw + half, (int) half);

    ECDSA_SIG_free(ecdsa);
    free(sig);

    *sig_len = 2 * half;
    return raw;
}


/* A token with header and payload given as JSON text. */
static char *
make_token(const char *header, const char *payload, const char *alg,
    EVP_PKEY *pkey, const unsigned char *key_bytes, size_t key_len)
{
    unsigned char  *sig;
    char           *h, *p, *s, *input, *token;
    size_t          sig_len;

    h = b64url((const unsigned char *) header, strlen(header));
    p = b64url((const unsigned char *) payload, strlen(payload));

    input = malloc(strlen(h) + strlen(p) + 2);
    sprintf(input, "%s.%s", h, p);

    sig = sign(alg, pkey, key_bytes, key_len, input, &sig_len);
    s = b64url(sig, sig_len);

    token = malloc(strlen(input) + strlen(s) + 2);
    sprintf(token, "%s.%s", input, s);

    free(h);
    free(p);
    free(s);
    free(sig);
    free(input);

    return token;
}


/*
 * Changes one signature character into another base64url character,
 * away from the last one, whose low bits may be padding.
 */
static void
tamper(char *token)
{
    char  *c;

    c = token + strlen(token) - 3;
    *c = (*c == 'A') ? 'B' : 'A';
}


static char *
header_for(const char *alg, const char *kid)
{
    static char  buf[128];

    if (kid == NULL) {
        snprintf(buf, sizeof(buf), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);

    } else {
        snprintf(buf, sizeof(buf), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg,
                 kid);
    }

    return buf;
}


static const char  alice[] =
    "{\"sub\":\"alice\",\"exp\":1700003600,\"role\":\"user\"}";


/* Verifies and returns the result code; err holds the reason. */
static int
verify(const sr_jwt_keys_t *keys, const sr_jwt_policy_t *policy,
    const char *token, sr_error_t *err)
{
    sr_jwt_identity_t  id;
    int                rc;

    rc = sr_jwt_verify(keys, policy, token, strlen(token), NOW, &id, err);

    if (rc == SR_OK) {
        assert_non_null(id.user);
        assert_non_null(id.claims);

    } else {
        assert_int_equal(err->code, rc);
        assert_null(id.user);
        /* the reason never quotes the token */
        if (strlen(token) >= 8) {
            assert_null(strstr(err->str, token));
        }
    }

    sr_jwt_identity_clear(&id);

    return rc;
}


static void
expect_refusal(const sr_jwt_keys_t *keys, const sr_jwt_policy_t *policy,
    const char *token, const char *reason)
{
    sr_error_t  err;

    assert_int_equal(verify(keys, policy, token, &err), SR_ERR_AUTH);
    assert_string_equal(err.str, reason);
}


static char *
pem_of(EVP_PKEY *pkey)
{
    BIO   *bio;
    char  *data, *copy;
    long   len;

    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    len = BIO_get_mem_data(bio, &data);

    copy = malloc((size_t) len + 1);
    memcpy(copy, data, (size_t) len);
    copy[len] = '\0';
    BIO_free(bio);

    return copy;
}


static char *
write_temp(const char *content)
{
    char  *path;
    int    fd;

    path = strdup("/tmp/test_jwt_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)),
                     (ssize_t) strlen(content));
    close(fd);

    return path;
}


static void
test_hmac_family(void **state)
{
    static const char  *algs[] = { "HS256", "HS384", "HS512" };
    sr_jwt_identity_t   id;
    sr_jwt_keys_t      *keys;
    sr_error_t          err;
    char               *token;
    size_t              i;

    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_add_secret(keys, NULL, secret,
                                            sizeof(secret) - 1, &err),
                     SR_OK);

    for (i = 0; i < 3; i++) {
        token = make_token(header_for(algs[i], NULL), alice, algs[i], NULL,
                           secret, sizeof(secret) - 1);

        assert_int_equal(sr_jwt_verify(keys, NULL, token, strlen(token), NOW,
                                       &id, &err), SR_OK);
        assert_string_equal(id.user, "alice");
        assert_string_equal(json_string_value(json_object_get(id.claims,
                                                              "role")),
                            "user");
        assert_int_equal(id.expires, 1700003600);
        sr_jwt_identity_clear(&id);

        tamper(token);
        expect_refusal(keys, NULL, token, "invalid signature");
        free(token);
    }

    token = make_token(header_for("HS256", NULL), alice, "HS256", NULL,
                       (const unsigned char *) "another", 7);
    expect_refusal(keys, NULL, token, "invalid signature");
    free(token);

    sr_jwt_keys_free(keys);
}


static void
test_rsa_pkcs1_and_pss_with_a_pem_key(void **state)
{
    static const char  *algs[] = { "RS256", "RS384", "PS256", "PS512" };
    sr_jwt_keys_t      *keys;
    sr_error_t          err;
    char               *pem, *token;
    size_t              i;

    pem = pem_of(rsa1);
    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_add_pem(keys, NULL, pem, strlen(pem), &err),
                     SR_OK);

    for (i = 0; i < 4; i++) {
        token = make_token(header_for(algs[i], NULL), alice, algs[i], rsa1,
                           NULL, 0);
        assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
        free(token);

        /* signed by another RSA key */
        token = make_token(header_for(algs[i], NULL), alice, algs[i], rsa2,
                           NULL, 0);
        expect_refusal(keys, NULL, token, "invalid signature");
        free(token);
    }

    sr_jwt_keys_free(keys);
    free(pem);
}


static void
test_ecdsa_p256(void **state)
{
    sr_jwt_keys_t  *keys;
    sr_error_t      err;
    char           *pem, *token;

    pem = pem_of(ec256);
    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_add_pem(keys, "ec", pem, strlen(pem), &err),
                     SR_OK);

    token = make_token(header_for("ES256", "ec"), alice, "ES256", ec256,
                       NULL, 0);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    free(token);

    /* the same curve signature can not pass as ES384 */
    token = make_token(header_for("ES384", "ec"), alice, "ES384", ec256,
                       NULL, 0);
    expect_refusal(keys, NULL, token, "algorithm not allowed");
    free(token);

    /* and an RSA token meets no RSA key here */
    token = make_token(header_for("RS256", "ec"), alice, "RS256", rsa1,
                       NULL, 0);
    expect_refusal(keys, NULL, token, "algorithm not allowed");
    free(token);

    sr_jwt_keys_free(keys);
    free(pem);
}


static char *
bn_b64url(EVP_PKEY *pkey, const char *name)
{
    unsigned char  buf[512];
    BIGNUM        *bn;
    char          *out;
    int            n;

    bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pkey, name, &bn), 1);
    n = BN_bn2bin(bn, buf);
    BN_free(bn);

    out = b64url(buf, (size_t) n);
    return out;
}


/* A JWKS with an RSA key "k1" and an EC key "k2", in a temporary file. */
static char *
write_jwks(void)
{
    unsigned char  point[65];
    char          *n, *e, *x, *y, *path;
    char           doc[2048];
    size_t         len;

    n = bn_b64url(rsa1, OSSL_PKEY_PARAM_RSA_N);
    e = bn_b64url(rsa1, OSSL_PKEY_PARAM_RSA_E);

    assert_int_equal(EVP_PKEY_get_octet_string_param(ec256,
                         OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                         &len), 1);
    assert_int_equal(len, 65);
    x = b64url(point + 1, 32);
    y = b64url(point + 33, 32);

    snprintf(doc, sizeof(doc),
             "{\"keys\":["
             "{\"kty\":\"RSA\",\"kid\":\"k1\",\"alg\":\"RS256\","
             "\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"k2\",\"crv\":\"P-256\","
             "\"x\":\"%s\",\"y\":\"%s\"}]}\n", n, e, x, y);

    path = write_temp(doc);

    free(n);
    free(e);
    free(x);
    free(y);

    return path;
}


static void
test_jwks_file_with_two_kids(void **state)
{
    sr_jwt_keys_t  *keys;
    sr_error_t      err;
    char           *path, *token;

    path = write_jwks();
    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_load_file(keys, path, &err), SR_OK);

    token = make_token(header_for("RS256", "k1"), alice, "RS256", rsa1,
                       NULL, 0);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    free(token);

    token = make_token(header_for("ES256", "k2"), alice, "ES256", ec256,
                       NULL, 0);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    free(token);

    /* no kid: every key of the right type is tried */
    token = make_token("{\"alg\":\"ES256\"}", alice, "ES256", ec256, NULL,
                       0);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    free(token);

    token = make_token(header_for("RS256", "k3"), alice, "RS256", rsa1,
                       NULL, 0);
    expect_refusal(keys, NULL, token, "unknown key");
    free(token);

    /* k1 is pinned to RS256 by its "alg" */
    token = make_token(header_for("PS256", "k1"), alice, "PS256", rsa1,
                       NULL, 0);
    expect_refusal(keys, NULL, token, "algorithm not allowed");
    free(token);

    /* the kid names the RSA key, the signature is the EC key's */
    token = make_token(header_for("ES256", "k1"), alice, "ES256", ec256,
                       NULL, 0);
    expect_refusal(keys, NULL, token, "algorithm not allowed");
    free(token);

    sr_jwt_keys_free(keys);
    unlink(path);
    free(path);
}


static void
test_rfc_example_token_from_a_jwks_oct_key(void **state)
{
    sr_jwt_identity_t  id;
    sr_jwt_policy_t    policy;
    sr_jwt_keys_t     *keys;
    sr_error_t         err;

    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_load_file(keys,
                         TEST_DATA_DIR "/jwt/rfc7515-a1.jwks.json", &err),
                     SR_OK);

    memset(&policy, 0, sizeof(policy));
    policy.user_claim = "iss";

    assert_int_equal(sr_jwt_verify(keys, &policy, rfc_token,
                                   strlen(rfc_token), 1300819370, &id, &err),
                     SR_OK);
    assert_string_equal(id.user, "joe");
    assert_int_equal(id.expires, 1300819380);
    assert_true(json_is_true(json_object_get(id.claims,
                                             "http://example.com/is_root")));
    sr_jwt_identity_clear(&id);

    assert_int_equal(sr_jwt_verify(keys, &policy, rfc_token,
                                   strlen(rfc_token), 1300819380, &id, &err),
                     SR_ERR_AUTH);
    assert_string_equal(err.str, "token expired");

    sr_jwt_keys_free(keys);
}


static void
test_alg_none_is_refused(void **state)
{
    static const char  *nones[] = {
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",     /* "none" */
        "eyJhbGciOiJOb25lIn0.eyJzdWIiOiJhbGljZSJ9.",     /* "None" */
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2ln", /* with a sig */
    };
    sr_jwt_keys_t      *keys;
    sr_error_t          err;
    size_t              i;

    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_add_secret(keys, NULL, secret,
                                            sizeof(secret) - 1, &err),
                     SR_OK);

    for (i = 0; i < 3; i++) {
        expect_refusal(keys, NULL, nones[i], "algorithm not allowed");
    }

    sr_jwt_keys_free(keys);
}


static void
test_hs256_signed_with_the_rsa_public_key_is_refused(void **state)
{
    sr_jwt_keys_t  *keys;
    sr_error_t      err;
    char           *pem, *path, *token;

    pem = pem_of(rsa1);
    path = write_temp(pem);

    /* the key file is recognised as PEM, never taken as a secret */
    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_load_file(keys, path, &err), SR_OK);

    token = make_token(header_for("HS256", NULL), alice, "HS256", NULL,
                       (const unsigned char *) pem, strlen(pem));
    expect_refusal(keys, NULL, token, "algorithm not allowed");
    free(token);

    sr_jwt_keys_free(keys);
    unlink(path);
    free(path);
    free(pem);
}


static void
test_raw_secret_file_trims_the_newline(void **state)
{
    sr_jwt_keys_t  *keys;
    sr_error_t      err;
    char           *path, *token;

    path = write_temp("dev-secret\r\n");
    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_load_file(keys, path, &err), SR_OK);

    token = make_token(header_for("HS256", NULL), alice, "HS256", NULL,
                       (const unsigned char *) "dev-secret", 10);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    free(token);

    token = make_token(header_for("HS256", NULL), alice, "HS256", NULL,
                       (const unsigned char *) "dev-secret\n", 11);
    expect_refusal(keys, NULL, token, "invalid signature");
    free(token);

    sr_jwt_keys_free(keys);
    unlink(path);
    free(path);

    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_load_file(keys, "/nonexistent/key", &err),
                     SR_ERR_IO);
    path = write_temp("\n");
    assert_int_equal(sr_jwt_keys_load_file(keys, path, &err),
                     SR_ERR_INVALID);
    unlink(path);
    free(path);
    path = write_temp("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
                      "\"x\":\"AAAA\",\"y\":\"AAAA\"}]}");
    assert_int_equal(sr_jwt_keys_load_file(keys, path, &err),
                     SR_ERR_INVALID);
    unlink(path);
    free(path);
    sr_jwt_keys_free(keys);
}


/* An HS256 token with the given payload, under the test secret. */
static char *
hs(const char *payload)
{
    return make_token(header_for("HS256", NULL), payload, "HS256", NULL,
                      secret, sizeof(secret) - 1);
}


static sr_jwt_keys_t *
secret_keys(void)
{
    sr_jwt_keys_t  *keys;
    sr_error_t      err;

    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_add_secret(keys, NULL, secret,
                                            sizeof(secret) - 1, &err),
                     SR_OK);
    return keys;
}


static void
check_payload(const sr_jwt_keys_t *keys, const sr_jwt_policy_t *policy,
    const char *payload, const char *reason)
{
    sr_error_t  err;
    char       *token;

    token = hs(payload);

    if (reason == NULL) {
        assert_int_equal(verify(keys, policy, token, &err), SR_OK);

    } else {
        expect_refusal(keys, policy, token, reason);
    }

    free(token);
}


static void
test_exp_and_nbf_with_leeway(void **state)
{
    sr_jwt_policy_t   policy;
    sr_jwt_keys_t    *keys;

    keys = secret_keys();
    memset(&policy, 0, sizeof(policy));

    check_payload(keys, &policy, "{\"sub\":\"a\",\"exp\":1699999990}",
                  "token expired");
    check_payload(keys, &policy, "{\"sub\":\"a\",\"exp\":1700000000}",
                  "token expired");
    check_payload(keys, &policy, "{\"sub\":\"a\",\"nbf\":1700000010}",
                  "token not yet valid");
    check_payload(keys, &policy, "{\"sub\":\"a\",\"exp\":\"soon\"}",
                  "malformed token");
    check_payload(keys, &policy, "{\"sub\":\"a\",\"nbf\":1700000000,"
                  "\"exp\":1700000001.5}", NULL);

    policy.leeway = 30;
    check_payload(keys, &policy, "{\"sub\":\"a\",\"exp\":1699999990}", NULL);
    check_payload(keys, &policy, "{\"sub\":\"a\",\"nbf\":1700000010}", NULL);
    check_payload(keys, &policy, "{\"sub\":\"a\",\"exp\":1699999970}",
                  "token expired");

    sr_jwt_keys_free(keys);
}


static void
test_issuer_and_audience(void **state)
{
    static const char *const  auds[] = { "api", "chat" };
    sr_jwt_policy_t           policy;
    sr_jwt_keys_t            *keys;

    keys = secret_keys();
    memset(&policy, 0, sizeof(policy));
    policy.issuer = "https://id.example";

    check_payload(keys, &policy,
                  "{\"sub\":\"a\",\"iss\":\"https://id.example\"}", NULL);
    check_payload(keys, &policy,
                  "{\"sub\":\"a\",\"iss\":\"https://evil.example\"}",
                  "wrong issuer");
    check_payload(keys, &policy, "{\"sub\":\"a\"}", "wrong issuer");

    policy.issuer = NULL;
    policy.audiences = auds;
    policy.audiences_n = 2;

    check_payload(keys, &policy, "{\"sub\":\"a\",\"aud\":\"chat\"}", NULL);
    check_payload(keys, &policy, "{\"sub\":\"a\",\"aud\":[\"x\",\"api\"]}",
                  NULL);
    check_payload(keys, &policy, "{\"sub\":\"a\",\"aud\":\"x\"}",
                  "wrong audience");
    check_payload(keys, &policy, "{\"sub\":\"a\",\"aud\":[\"x\",1]}",
                  "wrong audience");
    check_payload(keys, &policy, "{\"sub\":\"a\"}", "wrong audience");

    sr_jwt_keys_free(keys);
}


static void
test_user_claim(void **state)
{
    sr_jwt_policy_t   policy;
    sr_jwt_keys_t    *keys;

    keys = secret_keys();

    check_payload(keys, NULL, "{\"name\":\"a\"}", "missing user claim");
    check_payload(keys, NULL, "{\"sub\":\"\"}", "missing user claim");
    check_payload(keys, NULL, "{\"sub\":42}", "missing user claim");
    check_payload(keys, NULL, "{\"sub\":\"a\\u0000b\"}", "malformed token");

    memset(&policy, 0, sizeof(policy));
    policy.user_claim = "name";
    check_payload(keys, &policy, "{\"name\":\"a\"}", NULL);

    sr_jwt_keys_free(keys);
}


static void
test_garbage_is_malformed(void **state)
{
    static const char  *bad[] = {
        "", "abc", "a.b", "..", "eyJ9.eyJ9.x",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.a!b",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",             /* not json */
        "eyJhbGciOiJIUzI1NiJ9.WzFd.c2ln",                    /* an array */
        "eyJhbGciOjF9.eyJzdWIiOiJhIn0.c2ln",                 /* alg 1 */
        "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsieCJdfQ.eyJzdWIiOiJhIn0.c2ln",
    };
    sr_jwt_keys_t      *keys;
    char               *huge;
    size_t              i;

    keys = secret_keys();

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_refusal(keys, NULL, bad[i], "malformed token");
    }

    huge = malloc(20001);
    memset(huge, 'a', 20000);
    huge[20000] = '\0';
    huge[10] = '.';
    huge[20] = '.';
    expect_refusal(keys, NULL, huge, "malformed token");
    free(huge);

    sr_jwt_keys_free(keys);
}


static void
test_typ_other_than_jwt_is_verified(void **state)
{
    sr_jwt_keys_t  *keys;
    sr_error_t      err;
    char           *pem, *token;

    pem = pem_of(rsa1);
    keys = sr_jwt_keys_new();
    assert_int_equal(sr_jwt_keys_add_pem(keys, NULL, pem, strlen(pem), &err),
                     SR_OK);
    assert_int_equal(sr_jwt_keys_add_secret(keys, NULL, secret,
                                            sizeof(secret) - 1, &err),
                     SR_OK);

    token = make_token("{\"alg\":\"RS256\",\"typ\":\"at+jwt\"}", alice,
                       "RS256", rsa1, NULL, 0);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    tamper(token);
    expect_refusal(keys, NULL, token, "invalid signature");
    free(token);

    token = make_token("{\"alg\":\"HS512\",\"typ\":\"at+jwt\"}", alice,
                       "HS512", NULL, secret, sizeof(secret) - 1);
    assert_int_equal(verify(keys, NULL, token, &err), SR_OK);
    free(token);

    sr_jwt_keys_free(keys);
    free(pem);
}


static void
test_sign_hs256_round_trip(void **state)
{
    sr_jwt_identity_t  id;
    sr_jwt_keys_t     *keys;
    sr_error_t         err;
    json_t            *claims;
    char              *token;

    claims = json_pack("{s:s, s:I, s:[s]}", "sub", "bob", "exp",
                       (json_int_t) NOW + 60, "scope", "chat");
    token = sr_jwt_sign_hs256(claims, secret, sizeof(secret) - 1, &err);
    assert_non_null(token);

    keys = secret_keys();
    assert_int_equal(sr_jwt_verify(keys, NULL, token, strlen(token), NOW,
                                   &id, &err), SR_OK);
    assert_string_equal(id.user, "bob");
    assert_int_equal(id.expires, NOW + 60);
    sr_jwt_identity_clear(&id);

    assert_null(sr_jwt_sign_hs256(claims, secret, 0, &err));
    assert_int_equal(err.code, SR_ERR_INVALID);

    free(token);
    json_decref(claims);
    sr_jwt_keys_free(keys);
}


static void
test_weak_or_foreign_keys_are_refused(void **state)
{
    sr_jwt_keys_t  *keys;
    EVP_PKEY       *small;
    sr_error_t      err;
    char           *pem;

    keys = sr_jwt_keys_new();

    small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
    assert_non_null(small);
    pem = pem_of(small);
    assert_int_equal(sr_jwt_keys_add_pem(keys, NULL, pem, strlen(pem), &err),
                     SR_ERR_INVALID);
    free(pem);
    EVP_PKEY_free(small);

    assert_int_equal(sr_jwt_keys_add_pem(keys, NULL, "-----BEGIN junk", 15,
                                         &err), SR_ERR_INVALID);
    assert_int_equal(sr_jwt_keys_add_secret(keys, NULL, secret, 0, &err),
                     SR_ERR_INVALID);

    expect_refusal(keys, NULL, alice, "malformed token");

    sr_jwt_keys_free(keys);
}


static int
setup(void **state)
{
    /* as the module's workers do at start, twice to show it is harmless */
    sr_jwt_prepare();
    sr_jwt_prepare();

    rsa1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

    return (rsa1 && rsa2 && ec256) ? 0 : -1;
}


static int
teardown(void **state)
{
    EVP_PKEY_free(rsa1);
    EVP_PKEY_free(rsa2);
    EVP_PKEY_free(ec256);

    return 0;
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_hmac_family),
        cmocka_unit_test(test_rsa_pkcs1_and_pss_with_a_pem_key),
        cmocka_unit_test(test_ecdsa_p256),
        cmocka_unit_test(test_jwks_file_with_two_kids),
        cmocka_unit_test(test_rfc_example_token_from_a_jwks_oct_key),
        cmocka_unit_test(test_alg_none_is_refused),
        cmocka_unit_test(test_hs256_signed_with_the_rsa_public_key_is_refused),
        cmocka_unit_test(test_raw_secret_file_trims_the_newline),
        cmocka_unit_test(test_exp_and_nbf_with_leeway),
        cmocka_unit_test(test_issuer_and_audience),
        cmocka_unit_test(test_user_claim),
        cmocka_unit_test(test_garbage_is_malformed),
        cmocka_unit_test(test_typ_other_than_jwt_is_verified),
        cmocka_unit_test(test_sign_hs256_round_trip),
        cmocka_unit_test(test_weak_or_foreign_keys_are_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
