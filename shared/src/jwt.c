/*
 * JWT verification on libjwt 1.10 and OpenSSL 3.
 *
 * Design note: libjwt 1.10 takes the algorithm from the token's own
 * header and has no RSA-PSS, so the header is parsed here first and the
 * key's type decides what may run (an HS256 token never meets an RSA
 * public key used as an HMAC secret). libjwt then checks HS*, RS* and
 * ES* signatures; PS*, and tokens whose "typ" libjwt would refuse, are
 * verified with OpenSSL directly (sr_jwt_verify_openssl). The claims
 * are read from the payload parsed here, whose bytes are the ones the
 * signature covers.
 */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <signalr/jwt.h>


#define SR_JWT_MAX_TOKEN     16384
#define SR_JWT_MAX_FILE      (1024 * 1024)
#define SR_JWT_MIN_RSA_BITS  2048
#define SR_JWT_SKIPPED       2       /* a JWK not meant for us */

typedef enum {
    SR_JWT_KEY_HMAC,
    SR_JWT_KEY_RSA,
    SR_JWT_KEY_EC
} sr_jwt_key_type_t;

typedef struct {
    const char          *name;
    sr_jwt_key_type_t    type;
    const EVP_MD      *(*md)(void);
    int                  pss;
} sr_jwt_alg_t;

typedef struct {
    sr_jwt_key_type_t    type;
    char                *kid;        /* NULL: any token kid */
    char                *alg;        /* a JWKS "alg", or NULL */
    const char          *ec_alg;     /* EC: the one ES* of its curve */
    unsigned char       *material;   /* secret, or SPKI PEM text */
    size_t               material_len;
    EVP_PKEY            *pkey;       /* RSA and EC */
} sr_jwt_key_t;

struct sr_jwt_keys_s {
    sr_jwt_key_t  *keys;
    size_t         n;
    size_t         cap;
};

/* The three dot-separated parts of a token, decoded where needed. */
typedef struct {
    const char  *token;
    size_t       signed_len;     /* header "." payload */
    const char  *signature;
    size_t       signature_len;
    json_t      *header;
    json_t      *payload;
} sr_jwt_parts_t;


static const sr_jwt_alg_t  sr_jwt_algs[] = {
    { "HS256", SR_JWT_KEY_HMAC, EVP_sha256, 0 },
    { "HS384", SR_JWT_KEY_HMAC, EVP_sha384, 0 },
    { "HS512", SR_JWT_KEY_HMAC, EVP_sha512, 0 },
    { "RS256", SR_JWT_KEY_RSA, EVP_sha256, 0 },
    { "RS384", SR_JWT_KEY_RSA, EVP_sha384, 0 },
    { "RS512", SR_JWT_KEY_RSA, EVP_sha512, 0 },
    { "PS256", SR_JWT_KEY_RSA, EVP_sha256, 1 },
    { "PS384", SR_JWT_KEY_RSA, EVP_sha384, 1 },
    { "PS512", SR_JWT_KEY_RSA, EVP_sha512, 1 },
    { "ES256", SR_JWT_KEY_EC, EVP_sha256, 0 },
    { "ES384", SR_JWT_KEY_EC, EVP_sha384, 0 },
    { "ES512", SR_JWT_KEY_EC, EVP_sha512, 0 },
};


static int sr_b64url_value(unsigned char c);
static int sr_b64url_decode(const char *in, size_t len, unsigned char **out,
    size_t *out_len);
static char *sr_jwt_strdup(const char *s);
static int sr_jwt_has(const char *data, size_t len, const char *needle);
static int sr_jwt_keys_push(sr_jwt_keys_t *keys, sr_jwt_key_t *key,
    const char *kid, const char *alg, sr_error_t *err);
static int sr_jwt_add_secret_alg(sr_jwt_keys_t *keys, const char *kid,
    const char *alg, const unsigned char *secret, size_t len,
    sr_error_t *err);
static int sr_jwt_keys_add_pkey(sr_jwt_keys_t *keys, const char *kid,
    const char *alg, EVP_PKEY *pkey, sr_error_t *err);
static int sr_jwt_pem_material(sr_jwt_key_t *key, sr_error_t *err);
static EVP_PKEY *sr_jwt_pem_to_pkey(const char *pem, size_t len);
static int sr_jwt_read_file(const char *path, char **data, size_t *len,
    sr_error_t *err);
static int sr_jwt_bn_param(OSSL_PARAM_BLD *bld, const char *name,
    const char *b64, BIGNUM **bn);
static EVP_PKEY *sr_jwt_from_params(const char *type, OSSL_PARAM_BLD *bld);
static EVP_PKEY *sr_jwt_jwk_rsa(const json_t *jwk);
static EVP_PKEY *sr_jwt_jwk_ec(const json_t *jwk);
static int sr_jwt_jwk_add(sr_jwt_keys_t *keys, const json_t *jwk,
    sr_error_t *err);
static int sr_jwt_jwks_add(sr_jwt_keys_t *keys, const char *text,
    size_t len, sr_error_t *err);
static json_t *sr_jwt_decode_part(const char *part, size_t len);
static int sr_jwt_split(const char *token, size_t len, sr_jwt_parts_t *parts);
static const sr_jwt_alg_t *sr_jwt_alg_find(const char *name);
static int sr_jwt_key_fits(const sr_jwt_key_t *key, const sr_jwt_alg_t *alg);
static int sr_jwt_ec_der(const sr_jwt_key_t *key, const unsigned char *raw,
    size_t raw_len, unsigned char **der, size_t *der_len);
static int sr_jwt_verify_openssl(const sr_jwt_key_t *key,
    const sr_jwt_alg_t *alg, const sr_jwt_parts_t *parts);
static int sr_jwt_verify_one(const sr_jwt_key_t *key,
    const sr_jwt_alg_t *alg, const sr_jwt_parts_t *parts, const char *token,
    int use_libjwt);
static int sr_jwt_read_header(const json_t *header,
    const sr_jwt_alg_t **alg, const char **kid, int *use_libjwt,
    sr_error_t *err);
static int sr_jwt_check_signature(const sr_jwt_keys_t *keys,
    const sr_jwt_parts_t *parts, sr_error_t *err);
static int sr_jwt_time_claim(const json_t *payload, const char *name,
    double *value);
static int sr_jwt_check_times(const json_t *payload,
    const sr_jwt_policy_t *policy, time_t now, double *exp, sr_error_t *err);
static int sr_jwt_audience_ok(const json_t *aud,
    const sr_jwt_policy_t *policy);
static int sr_jwt_check_claims(const json_t *payload,
    const sr_jwt_policy_t *policy, time_t now, sr_jwt_identity_t *id,
    sr_error_t *err);


/*
 * Design note: base64url without padding is decoded by hand. OpenSSL's
 * EVP_DecodeBlock() wants the standard alphabet with padding, which
 * would mean a translated, padded copy of every part, and libjwt keeps
 * its decoder private.
 */

static int
sr_b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    return (c == '_') ? 63 : -1;
}


static int
sr_b64url_decode(const char *in, size_t len, unsigned char **out,
    size_t *out_len)
{
    unsigned char  *p;
    uint32_t        acc;
    size_t          i, n;
    int             v, bits;

    if (len % 4 == 1) {
        return SR_ERR_PROTOCOL;
    }

    p = malloc(len / 4 * 3 + 3);
    if (p == NULL) {
        return SR_ERR_NOMEM;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        v = sr_b64url_value((unsigned char) in[i]);
        if (v < 0) {
            free(p);
            return SR_ERR_PROTOCOL;
        }

        acc = (acc << 6 | (uint32_t) v) & 0xffffff;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            p[n++] = (unsigned char) (acc >> bits);
        }
    }

    *out = p;
    *out_len = n;

    return SR_OK;
}


static char *
sr_jwt_strdup(const char *s)
{
    char    *copy;
    size_t   len;

    len = strlen(s) + 1;

    copy = malloc(len);
    if (copy != NULL) {
        memcpy(copy, s, len);
    }

    return copy;
}


/* Whether needle occurs in data[0, len), which need not end in NUL. */

static int
sr_jwt_has(const char *data, size_t len, const char *needle)
{
    size_t  n, i;

    n = strlen(needle);

    for (i = 0; i + n <= len; i++) {
        if (memcmp(data + i, needle, n) == 0) {
            return 1;
        }
    }

    return 0;
}


sr_jwt_keys_t *
sr_jwt_keys_new(void)
{
    return calloc(1, sizeof(sr_jwt_keys_t));
}


void
sr_jwt_keys_free(sr_jwt_keys_t *keys)
{
    size_t  i;

    if (keys == NULL) {
        return;
    }

    for (i = 0; i < keys->n; i++) {
        free(keys->keys[i].kid);
        free(keys->keys[i].alg);
        OPENSSL_clear_free(keys->keys[i].material,
                           keys->keys[i].material_len);
        EVP_PKEY_free(keys->keys[i].pkey);
    }

    free(keys->keys);
    free(keys);
}


/* Appends key, taking its material and pkey whatever the outcome. */

static int
sr_jwt_keys_push(sr_jwt_keys_t *keys, sr_jwt_key_t *key, const char *kid,
    const char *alg, sr_error_t *err)
{
    sr_jwt_key_t  *grown;
    size_t         cap;

    key->kid = (kid != NULL) ? sr_jwt_strdup(kid) : NULL;
    key->alg = (alg != NULL) ? sr_jwt_strdup(alg) : NULL;

    if (keys->n == keys->cap) {
        cap = keys->cap ? keys->cap * 2 : 4;
        grown = realloc(keys->keys, cap * sizeof(sr_jwt_key_t));

        if (grown != NULL) {
            keys->keys = grown;
            keys->cap = cap;
        }
    }

    if (keys->n == keys->cap || (kid != NULL && key->kid == NULL)
        || (alg != NULL && key->alg == NULL))
    {
        free(key->kid);
        free(key->alg);
        OPENSSL_clear_free(key->material, key->material_len);
        EVP_PKEY_free(key->pkey);
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a key");
    }

    keys->keys[keys->n++] = *key;

    return SR_OK;
}


int
sr_jwt_keys_add_secret(sr_jwt_keys_t *keys, const char *kid,
    const unsigned char *secret, size_t len, sr_error_t *err)
{
    return sr_jwt_add_secret_alg(keys, kid, NULL, secret, len, err);
}


static int
sr_jwt_add_secret_alg(sr_jwt_keys_t *keys, const char *kid, const char *alg,
    const unsigned char *secret, size_t len, sr_error_t *err)
{
    sr_jwt_key_t  key;

    if (len == 0 || len > SR_JWT_MAX_FILE) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "hmac secret empty or over 1 MiB");
    }

    memset(&key, 0, sizeof(key));
    key.type = SR_JWT_KEY_HMAC;

    key.material = malloc(len);
    if (key.material == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a key");
    }

    memcpy(key.material, secret, len);
    key.material_len = len;

    return sr_jwt_keys_push(keys, &key, kid, alg, err);
}


/* Writes the key's public half as SPKI PEM, the form libjwt reads. */

static int
sr_jwt_pem_material(sr_jwt_key_t *key, sr_error_t *err)
{
    BIO   *bio;
    char  *data;
    long   len;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key->pkey) != 1) {
        BIO_free(bio);
        return sr_error_set(err, SR_ERR_NOMEM,
                            "PEM_write_bio_PUBKEY() failed");
    }

    len = BIO_get_mem_data(bio, &data);

    key->material = malloc((size_t) len + 1);
    if (key->material == NULL) {
        BIO_free(bio);
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a key");
    }

    memcpy(key->material, data, (size_t) len);
    key->material[len] = '\0';
    key->material_len = (size_t) len;

    BIO_free(bio);

    return SR_OK;
}


/* Takes pkey: checks it is a usable RSA or EC public key and adds it. */

static int
sr_jwt_keys_add_pkey(sr_jwt_keys_t *keys, const char *kid, const char *alg,
    EVP_PKEY *pkey, sr_error_t *err)
{
    sr_jwt_key_t  key;
    char          group[64];
    int           rc;

    memset(&key, 0, sizeof(key));
    key.pkey = pkey;

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        key.type = SR_JWT_KEY_RSA;
        rc = (EVP_PKEY_get_bits(pkey) >= SR_JWT_MIN_RSA_BITS)
             ? SR_OK
             : sr_error_set(err, SR_ERR_INVALID,
                            "rsa key shorter than %d bits",
                            SR_JWT_MIN_RSA_BITS);
        break;

    case EVP_PKEY_EC:
        key.type = SR_JWT_KEY_EC;
        rc = SR_OK;

        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), NULL) != 1)
        {
            group[0] = '\0';
        }

        if (strcmp(group, "prime256v1") == 0) {
            key.ec_alg = "ES256";

        } else if (strcmp(group, "secp384r1") == 0) {
            key.ec_alg = "ES384";

        } else if (strcmp(group, "secp521r1") == 0) {
            key.ec_alg = "ES512";

        } else {
            rc = sr_error_set(err, SR_ERR_INVALID, "unsupported ec curve");
        }

        break;

    default:
        rc = sr_error_set(err, SR_ERR_INVALID,
                          "key is neither rsa nor ec");
    }

    if (rc == SR_OK) {
        rc = sr_jwt_pem_material(&key, err);
    }

    if (rc != SR_OK) {
        EVP_PKEY_free(pkey);
        return rc;
    }

    return sr_jwt_keys_push(keys, &key, kid, alg, err);
}


/* A public key, a private key (its public half) or a certificate. */

static EVP_PKEY *
sr_jwt_pem_to_pkey(const char *pem, size_t len)
{
    OSSL_DECODER_CTX     *dctx;
    const unsigned char  *data;
    EVP_PKEY             *pkey;
    X509                 *cert;
    BIO                  *bio;
    size_t                left;

    pkey = NULL;

    if (sr_jwt_has(pem, len, "-----BEGIN CERTIFICATE-----")) {
        bio = BIO_new_mem_buf(pem, (int) len);
        cert = (bio != NULL) ? PEM_read_bio_X509(bio, NULL, NULL, NULL)
                             : NULL;

        if (cert != NULL) {
            pkey = X509_get_pubkey(cert);
            X509_free(cert);
        }

        BIO_free(bio);
        return pkey;
    }

    dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL,
                                         EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (dctx == NULL) {
        return NULL;
    }

    data = (const unsigned char *) pem;
    left = len;

    if (OSSL_DECODER_from_data(dctx, &data, &left) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    OSSL_DECODER_CTX_free(dctx);

    return pkey;
}


int
sr_jwt_keys_add_pem(sr_jwt_keys_t *keys, const char *kid, const char *pem,
    size_t len, sr_error_t *err)
{
    EVP_PKEY  *pkey;

    if (len > SR_JWT_MAX_FILE) {
        return sr_error_set(err, SR_ERR_INVALID, "pem text over 1 MiB");
    }

    pkey = sr_jwt_pem_to_pkey(pem, len);
    if (pkey == NULL) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "pem text holds no readable key");
    }

    return sr_jwt_keys_add_pkey(keys, kid, NULL, pkey, err);
}


static int
sr_jwt_read_file(const char *path, char **data, size_t *len,
    sr_error_t *err)
{
    FILE    *f;
    char    *buf;
    size_t   n;

    f = fopen(path, "rb");
    if (f == NULL) {
        return sr_error_set(err, SR_ERR_IO, "fopen() \"%s\" failed: %s",
                            path, strerror(errno));
    }

    buf = malloc(SR_JWT_MAX_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a file");
    }

    n = fread(buf, 1, SR_JWT_MAX_FILE + 1, f);

    if (ferror(f) || n > SR_JWT_MAX_FILE) {
        fclose(f);
        free(buf);
        return sr_error_set(err, SR_ERR_IO,
                            "reading \"%s\" failed or it is over 1 MiB",
                            path);
    }

    fclose(f);

    buf[n] = '\0';
    *data = buf;
    *len = n;

    return SR_OK;
}


int
sr_jwt_keys_add_pem_file(sr_jwt_keys_t *keys, const char *kid,
    const char *path, sr_error_t *err)
{
    char    *data;
    size_t   len;
    int      rc;

    rc = sr_jwt_read_file(path, &data, &len, err);
    if (rc != SR_OK) {
        return rc;
    }

    rc = sr_jwt_keys_add_pem(keys, kid, data, len, err);

    free(data);

    return rc;
}


/* Pushes a JWK member (base64url of a big-endian integer) as a BIGNUM. */

static int
sr_jwt_bn_param(OSSL_PARAM_BLD *bld, const char *name, const char *b64,
    BIGNUM **bn)
{
    unsigned char  *bytes;
    size_t          len;

    if (b64 == NULL || sr_b64url_decode(b64, strlen(b64), &bytes, &len)
                       != SR_OK)
    {
        return 0;
    }

    *bn = (len > 0) ? BN_bin2bn(bytes, (int) len, NULL) : NULL;
    free(bytes);

    return *bn != NULL && OSSL_PARAM_BLD_push_BN(bld, name, *bn) == 1;
}


static EVP_PKEY *
sr_jwt_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY_CTX  *ctx, *check;
    OSSL_PARAM    *params;
    EVP_PKEY      *pkey;

    pkey = NULL;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    if (pkey == NULL) {
        return NULL;
    }

    /* an EC point off its curve must not pass for a key */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(check);

    return pkey;
}


static EVP_PKEY *
sr_jwt_jwk_rsa(const json_t *jwk)
{
    OSSL_PARAM_BLD  *bld;
    EVP_PKEY        *pkey;
    BIGNUM          *n, *e;

    n = NULL;
    e = NULL;
    pkey = NULL;

    bld = OSSL_PARAM_BLD_new();

    if (bld != NULL
        && sr_jwt_bn_param(bld, OSSL_PKEY_PARAM_RSA_N,
                           json_string_value(json_object_get(jwk, "n")), &n)
        && sr_jwt_bn_param(bld, OSSL_PKEY_PARAM_RSA_E,
                           json_string_value(json_object_get(jwk, "e")), &e))
    {
        pkey = sr_jwt_from_params("RSA", bld);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    return pkey;
}


/* An EC JWK: the point is 0x04 || x || y, each one field size long. */

static EVP_PKEY *
sr_jwt_jwk_ec(const json_t *jwk)
{
    OSSL_PARAM_BLD  *bld;
    unsigned char    point[1 + 2 * 66];
    unsigned char   *x, *y;
    const char      *crv, *group, *xs, *ys;
    EVP_PKEY        *pkey;
    size_t           size, x_len, y_len;

    crv = json_string_value(json_object_get(jwk, "crv"));
    xs = json_string_value(json_object_get(jwk, "x"));
    ys = json_string_value(json_object_get(jwk, "y"));

    if (crv == NULL || xs == NULL || ys == NULL) {
        return NULL;
    }

    if (strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        size = 32;

    } else if (strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        size = 48;

    } else if (strcmp(crv, "P-521") == 0) {
        group = "secp521r1";
        size = 66;

    } else {
        return NULL;
    }

    x = NULL;
    y = NULL;
    pkey = NULL;
    bld = NULL;

    if (sr_b64url_decode(xs, strlen(xs), &x, &x_len) == SR_OK
        && sr_b64url_decode(ys, strlen(ys), &y, &y_len) == SR_OK
        && x_len == size && y_len == size
        && (bld = OSSL_PARAM_BLD_new()) != NULL)
    {
        point[0] = 0x04;
        memcpy(point + 1, x, size);
        memcpy(point + 1 + size, y, size);

        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            group, 0) == 1
            && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                                point, 1 + 2 * size) == 1)
        {
            pkey = sr_jwt_from_params("EC", bld);
        }
    }

    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);

    return pkey;
}


/* Adds one JWK. Keys for other uses or of other types are skipped. */

static int
sr_jwt_jwk_add(sr_jwt_keys_t *keys, const json_t *jwk, sr_error_t *err)
{
    const char     *kty, *kid, *alg, *use, *k;
    unsigned char  *secret;
    EVP_PKEY       *pkey;
    size_t          len;
    int             rc;

    kty = json_string_value(json_object_get(jwk, "kty"));
    kid = json_string_value(json_object_get(jwk, "kid"));
    alg = json_string_value(json_object_get(jwk, "alg"));
    use = json_string_value(json_object_get(jwk, "use"));

    if (kty == NULL || (use != NULL && strcmp(use, "sig") != 0)) {
        return SR_JWT_SKIPPED;
    }

    if (strcmp(kty, "oct") == 0) {
        k = json_string_value(json_object_get(jwk, "k"));

        if (k == NULL || sr_b64url_decode(k, strlen(k), &secret, &len)
                         != SR_OK)
        {
            return sr_error_set(err, SR_ERR_INVALID,
                                "jwks oct key without a valid \"k\"");
        }

        rc = sr_jwt_add_secret_alg(keys, kid, alg, secret, len, err);
        OPENSSL_clear_free(secret, len);

        return rc;
    }

    if (strcmp(kty, "RSA") == 0) {
        pkey = sr_jwt_jwk_rsa(jwk);

    } else if (strcmp(kty, "EC") == 0) {
        pkey = sr_jwt_jwk_ec(jwk);

    } else {
        return SR_JWT_SKIPPED;
    }

    if (pkey == NULL) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "jwks %s key \"%s\" is not a valid public key",
                            kty, kid ? kid : "");
    }

    return sr_jwt_keys_add_pkey(keys, kid, alg, pkey, err);
}


static int
sr_jwt_jwks_add(sr_jwt_keys_t *keys, const char *text, size_t len,
    sr_error_t *err)
{
    json_error_t   jerr;
    json_t        *root, *list, *jwk;
    size_t         i, added;
    int            rc;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!json_is_object(root)) {
        json_decref(root);
        return sr_error_set(err, SR_ERR_INVALID,
                            "key file is not a json object (line %d)",
                            jerr.line);
    }

    list = json_object_get(root, "keys");

    if (list == NULL && json_object_get(root, "kty") != NULL) {
        rc = sr_jwt_jwk_add(keys, root, err);
        added = (rc == SR_OK);

    } else if (!json_is_array(list)) {
        rc = sr_error_set(err, SR_ERR_INVALID,
                          "jwks without a \"keys\" array");
        added = 0;

    } else {
        rc = SR_OK;
        added = 0;

        json_array_foreach(list, i, jwk) {
            rc = json_is_object(jwk)
                 ? sr_jwt_jwk_add(keys, jwk, err)
                 : sr_error_set(err, SR_ERR_INVALID,
                                "jwks key %zu is not an object", i);
            if (rc < 0) {
                break;
            }

            added += (rc == SR_OK);
        }
    }

    json_decref(root);

    if (rc >= 0 && added == 0) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "jwks holds no usable signing key");
    }

    return (rc < 0) ? rc : SR_OK;
}


/*
 * "-----BEGIN" anywhere makes the file PEM; a first non-blank "{" makes
 * it JSON (a JWKS or one JWK); anything else is an HMAC secret, taken
 * byte for byte but for the line ending editors add.
 */

int
sr_jwt_keys_load_file(sr_jwt_keys_t *keys, const char *path,
    sr_error_t *err)
{
    char    *data;
    size_t   len, i, n;
    int      rc;

    rc = sr_jwt_read_file(path, &data, &len, err);
    if (rc != SR_OK) {
        return rc;
    }

    for (i = 0; i < len && strchr(" \t\r\n", data[i]) != NULL; i++) {
        /* skip leading blanks */
    }

    n = len;
    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r')) {
        n--;
    }

    if (sr_jwt_has(data, len, "-----BEGIN")) {
        rc = sr_jwt_keys_add_pem(keys, NULL, data, len, err);

    } else if (i < len && data[i] == '{') {
        rc = sr_jwt_jwks_add(keys, data, len, err);

    } else if (n == 0) {
        rc = sr_error_set(err, SR_ERR_INVALID, "key file \"%s\" is empty",
                          path);

    } else {
        rc = sr_jwt_keys_add_secret(keys, NULL, (unsigned char *) data, n,
                                    err);
    }

    OPENSSL_clear_free(data, len + 1);

    return rc;
}


static json_t *
sr_jwt_decode_part(const char *part, size_t len)
{
    unsigned char  *text;
    json_error_t    jerr;
    json_t         *value;
    size_t          text_len;

    if (sr_b64url_decode(part, len, &text, &text_len) != SR_OK) {
        return NULL;
    }

    value = json_loadb((const char *) text, text_len,
                       JSON_REJECT_DUPLICATES, &jerr);
    free(text);

    if (!json_is_object(value)) {
        json_decref(value);
        return NULL;
    }

    return value;
}


/* Three base64url parts, the first two JSON objects. */

static int
sr_jwt_split(const char *token, size_t len, sr_jwt_parts_t *parts)
{
    const char  *dot1, *dot2;
    size_t       i;

    memset(parts, 0, sizeof(*parts));

    if (len == 0 || len > SR_JWT_MAX_TOKEN) {
        return SR_ERR_AUTH;
    }

    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t) (dot1 + 1 - token))
                : NULL;

    if (dot2 == NULL) {
        return SR_ERR_AUTH;
    }

    parts->token = token;
    parts->signed_len = (size_t) (dot2 - token);
    parts->signature = dot2 + 1;
    parts->signature_len = len - parts->signed_len - 1;

    for (i = 0; i < parts->signature_len; i++) {
        if (sr_b64url_value((unsigned char) parts->signature[i]) < 0) {
            return SR_ERR_AUTH;
        }
    }

    parts->header = sr_jwt_decode_part(token, (size_t) (dot1 - token));
    parts->payload = sr_jwt_decode_part(dot1 + 1,
                                        (size_t) (dot2 - dot1 - 1));

    if (parts->header == NULL || parts->payload == NULL) {
        json_decref(parts->header);
        json_decref(parts->payload);
        parts->header = NULL;
        parts->payload = NULL;
        return SR_ERR_AUTH;
    }

    return SR_OK;
}


static const sr_jwt_alg_t *
sr_jwt_alg_find(const char *name)
{
    size_t  i;

    for (i = 0; i < sizeof(sr_jwt_algs) / sizeof(sr_jwt_algs[0]); i++) {
        if (strcmp(sr_jwt_algs[i].name, name) == 0) {
            return &sr_jwt_algs[i];
        }
    }

    return NULL;
}


/* The key's type, its JWKS "alg" and its curve must all agree. */

static int
sr_jwt_key_fits(const sr_jwt_key_t *key, const sr_jwt_alg_t *alg)
{
    if (key->type != alg->type) {
        return 0;
    }

    if (key->alg != NULL && strcmp(key->alg, alg->name) != 0) {
        return 0;
    }

    return key->ec_alg == NULL || strcmp(key->ec_alg, alg->name) == 0;
}


/* JWS carries an ECDSA signature as R || S; OpenSSL wants DER. */

static int
sr_jwt_ec_der(const sr_jwt_key_t *key, const unsigned char *raw,
    size_t raw_len, unsigned char **der, size_t *der_len)
{
    unsigned char  *p;
    ECDSA_SIG      *sig;
    BIGNUM         *r, *s;
    size_t          half;
    int             n;

    half = ((size_t) EVP_PKEY_get_bits(key->pkey) + 7) / 8;

    if (raw_len != 2 * half) {
        return 0;
    }

    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw, (int) half, NULL);
    s = BN_bin2bn(raw + half, (int) half, NULL);

    if (sig == NULL || r == NULL || s == NULL
        || ECDSA_SIG_set0(sig, r, s) != 1)
    {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return 0;
    }

    n = i2d_ECDSA_SIG(sig, NULL);
    p = (n > 0) ? malloc((size_t) n) : NULL;

    *der = p;
    *der_len = (p != NULL) ? (size_t) i2d_ECDSA_SIG(sig, &p) : 0;

    ECDSA_SIG_free(sig);

    return *der != NULL;
}


/*
 * OpenSSL's check, for what libjwt 1.10 cannot do: PS* (it has no
 * RSA-PSS) and tokens whose "typ" is not "JWT" (it refuses them, while
 * RFC 7519 leaves typ to applications and identity servers sign
 * "at+jwt" access tokens). Returns 1 when the signature holds.
 */

static int
sr_jwt_verify_openssl(const sr_jwt_key_t *key, const sr_jwt_alg_t *alg,
    const sr_jwt_parts_t *parts)
{
    unsigned char   mac[EVP_MAX_MD_SIZE];
    unsigned char  *sig, *der;
    unsigned int    mac_len;
    EVP_PKEY_CTX   *pctx;
    EVP_MD_CTX     *ctx;
    size_t          sig_len, der_len;
    int             ok;

    if (sr_b64url_decode(parts->signature, parts->signature_len, &sig,
                         &sig_len) != SR_OK)
    {
        return 0;
    }

    if (key->type == SR_JWT_KEY_HMAC) {
        ok = HMAC(alg->md(), key->material, (int) key->material_len,
                  (const unsigned char *) parts->token, parts->signed_len,
                  mac, &mac_len) != NULL
             && mac_len == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0;
        free(sig);
        return ok;
    }

    if (key->type == SR_JWT_KEY_EC) {
        ok = sr_jwt_ec_der(key, sig, sig_len, &der, &der_len);
        free(sig);

        if (!ok) {
            return 0;
        }

        sig = der;
        sig_len = der_len;
    }

    pctx = NULL;
    ctx = EVP_MD_CTX_new();

    ok = ctx != NULL
         && EVP_DigestVerifyInit(ctx, &pctx, alg->md(), NULL, key->pkey) == 1
         && (!alg->pss
             || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING)
                 == 1
                 && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                     RSA_PSS_SALTLEN_DIGEST)
                 == 1))
         && EVP_DigestVerify(ctx, sig, sig_len,
                             (const unsigned char *) parts->token,
                             parts->signed_len) == 1;

    EVP_MD_CTX_free(ctx);
    free(sig);

    return ok;
}


static int
sr_jwt_verify_one(const sr_jwt_key_t *key, const sr_jwt_alg_t *alg,
    const sr_jwt_parts_t *parts, const char *token, int use_libjwt)
{
    jwt_t  *jwt;
    int     ok;

    if (parts->signature_len == 0) {
        return 0;
    }

    if (alg->pss || !use_libjwt) {
        return sr_jwt_verify_openssl(key, alg, parts);
    }

    jwt = NULL;

    ok = jwt_decode(&jwt, token, key->material, (int) key->material_len)
         == 0
         && jwt != NULL && jwt_get_alg(jwt) == jwt_str_alg(alg->name);

    if (jwt != NULL) {
        jwt_free(jwt);
    }

    return ok;
}


/*
 * The header's alg (one of the table: "none" is not), kid and typ. A
 * "crit" header is refused, since no extension is understood here.
 */

static int
sr_jwt_read_header(const json_t *header, const sr_jwt_alg_t **alg,
    const char **kid, int *use_libjwt, sr_error_t *err)
{
    const json_t  *kid_v, *typ;
    const char    *name;

    name = json_string_value(json_object_get(header, "alg"));
    kid_v = json_object_get(header, "kid");
    typ = json_object_get(header, "typ");

    if (name == NULL || (kid_v != NULL && !json_is_string(kid_v))
        || (typ != NULL && !json_is_string(typ))
        || json_object_get(header, "crit") != NULL)
    {
        return sr_error_set(err, SR_ERR_AUTH, "malformed token");
    }

    *alg = sr_jwt_alg_find(name);
    if (*alg == NULL) {
        return sr_error_set(err, SR_ERR_AUTH, "algorithm not allowed");
    }

    *kid = json_string_value(kid_v);
    *use_libjwt = typ == NULL
                  || strcasecmp(json_string_value(typ), "JWT") == 0;

    return SR_OK;
}


/*
 * Picks the keys by kid (a key without a kid matches any) and tries
 * those whose type fits the header's alg. Keys a token names by URL or
 * embeds (jku, x5u, jwk) are never used.
 */

static int
sr_jwt_check_signature(const sr_jwt_keys_t *keys,
    const sr_jwt_parts_t *parts, sr_error_t *err)
{
    const sr_jwt_alg_t  *alg;
    const sr_jwt_key_t  *key;
    const char          *kid;
    char                *token;
    size_t               i, named, fitting;
    int                  ok, use_libjwt, rc;

    rc = sr_jwt_read_header(parts->header, &alg, &kid, &use_libjwt, err);
    if (rc != SR_OK) {
        return rc;
    }

    token = malloc(parts->signed_len + 1 + parts->signature_len + 1);
    if (token == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    memcpy(token, parts->token, parts->signed_len + 1 + parts->signature_len);
    token[parts->signed_len + 1 + parts->signature_len] = '\0';

    named = 0;
    fitting = 0;
    ok = 0;

    for (i = 0; !ok && i < keys->n; i++) {
        key = &keys->keys[i];

        if (kid != NULL && key->kid != NULL && strcmp(key->kid, kid) != 0) {
            continue;
        }

        named++;

        if (sr_jwt_key_fits(key, alg)) {
            fitting++;
            ok = sr_jwt_verify_one(key, alg, parts, token, use_libjwt);
        }
    }

    free(token);

    if (ok) {
        return SR_OK;
    }

    return sr_error_set(err, SR_ERR_AUTH, "%s",
                        named == 0 ? "unknown key"
                        : fitting == 0 ? "algorithm not allowed"
                        : "invalid signature");
}


/* 0 when absent, 1 with *value when a number, -1 for another type. */

static int
sr_jwt_time_claim(const json_t *payload, const char *name, double *value)
{
    const json_t  *v;

    v = json_object_get(payload, name);

    if (v == NULL) {
        return 0;
    }

    if (!json_is_number(v)) {
        return -1;
    }

    *value = json_number_value(v);

    return 1;
}


/*
 * exp and nbf, with leeway: a token is good from nbf - leeway until
 * just before exp + leeway. Returns 1 with *exp when there is an exp,
 * 0 without one, -1 with err set when refused.
 */

static int
sr_jwt_check_times(const json_t *payload, const sr_jwt_policy_t *policy,
    time_t now, double *exp, sr_error_t *err)
{
    double  nbf, leeway;
    int     has_exp, has_nbf;

    leeway = (policy->leeway > 0) ? (double) policy->leeway : 0;

    has_exp = sr_jwt_time_claim(payload, "exp", exp);
    has_nbf = sr_jwt_time_claim(payload, "nbf", &nbf);

    if (has_exp < 0 || has_nbf < 0) {
        sr_error_set(err, SR_ERR_AUTH, "malformed token");
        return -1;
    }

    if (has_exp && (double) now >= *exp + leeway) {
        sr_error_set(err, SR_ERR_AUTH, "token expired");
        return -1;
    }

    if (has_nbf && (double) now + leeway < nbf) {
        sr_error_set(err, SR_ERR_AUTH, "token not yet valid");
        return -1;
    }

    return has_exp;
}


static int
sr_jwt_audience_ok(const json_t *aud, const sr_jwt_policy_t *policy)
{
    const json_t  *item;
    size_t         i, j;

    for (j = 0; j < policy->audiences_n; j++) {

        if (json_is_string(aud)
            && strcmp(json_string_value(aud), policy->audiences[j]) == 0)
        {
            return 1;
        }

        json_array_foreach(aud, i, item) {
            if (json_is_string(item)
                && strcmp(json_string_value(item), policy->audiences[j])
                   == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


static int
sr_jwt_check_claims(const json_t *payload, const sr_jwt_policy_t *policy,
    time_t now, sr_jwt_identity_t *id, sr_error_t *err)
{
    static const sr_jwt_policy_t   defaults;
    const json_t                  *user;
    const char                    *iss, *claim;
    double                         exp;
    int                            has_exp;

    if (policy == NULL) {
        policy = &defaults;
    }

    exp = 0;
    has_exp = sr_jwt_check_times(payload, policy, now, &exp, err);
    if (has_exp < 0) {
        return SR_ERR_AUTH;
    }

    iss = json_string_value(json_object_get(payload, "iss"));

    if (policy->issuer != NULL
        && (iss == NULL || strcmp(iss, policy->issuer) != 0))
    {
        return sr_error_set(err, SR_ERR_AUTH, "wrong issuer");
    }

    if (policy->audiences != NULL && policy->audiences_n > 0
        && !sr_jwt_audience_ok(json_object_get(payload, "aud"), policy))
    {
        return sr_error_set(err, SR_ERR_AUTH, "wrong audience");
    }

    claim = (policy->user_claim != NULL) ? policy->user_claim : "sub";
    user = json_object_get(payload, claim);

    /* a NUL inside would make the C string a different user */
    if (!json_is_string(user) || json_string_length(user) == 0
        || strlen(json_string_value(user)) != json_string_length(user))
    {
        return sr_error_set(err, SR_ERR_AUTH, "missing user claim");
    }

    id->user = sr_jwt_strdup(json_string_value(user));
    if (id->user == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    id->claims = json_incref((json_t *) payload);
    id->expires = (time_t) 0;

    if (has_exp) {
        /* clamped to 9999-12-31 so that the cast stays defined */
        id->expires = (time_t) (exp < 253402300799.0 ? exp : 253402300799.0);
    }

    return SR_OK;
}


int
sr_jwt_verify(const sr_jwt_keys_t *keys, const sr_jwt_policy_t *policy,
    const char *token, size_t token_len, time_t now, sr_jwt_identity_t *id,
    sr_error_t *err)
{
    sr_jwt_parts_t  parts;
    int             rc;

    memset(id, 0, sizeof(*id));

    if (keys == NULL || token == NULL) {
        return sr_error_set(err, SR_ERR_INVALID, "no keys or no token");
    }

    if (sr_jwt_split(token, token_len, &parts) != SR_OK) {
        return sr_error_set(err, SR_ERR_AUTH, "malformed token");
    }

    /* the claims are looked at only once the signature holds */
    rc = sr_jwt_check_signature(keys, &parts, err);

    if (rc == SR_OK) {
        rc = sr_jwt_check_claims(parts.payload, policy, now, id, err);
    }

    json_decref(parts.header);
    json_decref(parts.payload);

    if (rc != SR_OK) {
        sr_jwt_identity_clear(id);
    }

    return rc;
}


void
sr_jwt_identity_clear(sr_jwt_identity_t *id)
{
    free(id->user);
    json_decref(id->claims);

    memset(id, 0, sizeof(*id));
}


/*
 * OpenSSL 3 fetches an algorithm's implementation from its provider at
 * the first use in a process, loading the provider and its tables then;
 * one HMAC of each digest a token may name does it here.
 */

void
sr_jwt_prepare(void)
{
    size_t          i;
    unsigned int    mac_len;
    unsigned char   mac[EVP_MAX_MD_SIZE];
    static const unsigned char  sample[] = "signalr";

    for (i = 0; i < sizeof(sr_jwt_algs) / sizeof(sr_jwt_algs[0]); i++) {

        if (sr_jwt_algs[i].type != SR_JWT_KEY_HMAC) {
            continue;
        }

        (void) HMAC(sr_jwt_algs[i].md(), sample, sizeof(sample), sample,
                    sizeof(sample), mac, &mac_len);
    }
}


char *
sr_jwt_sign_hs256(const json_t *claims, const unsigned char *secret,
    size_t secret_len, sr_error_t *err)
{
    jwt_t  *jwt;
    char   *text, *token;

    if (!json_is_object(claims) || secret_len == 0 || secret_len > INT_MAX) {
        sr_error_set(err, SR_ERR_INVALID,
                     "claims must be an object and the secret non-empty");
        return NULL;
    }

    text = json_dumps(claims, JSON_COMPACT);
    jwt = NULL;
    token = NULL;

    if (text != NULL && jwt_new(&jwt) == 0
        && jwt_add_grants_json(jwt, text) == 0
        && jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int) secret_len) == 0)
    {
        token = jwt_encode_str(jwt);
    }

    if (jwt != NULL) {
        jwt_free(jwt);
    }

    free(text);

    if (token == NULL) {
        sr_error_set(err, SR_ERR_NOMEM, "jwt_encode_str() failed");
    }

    return token;
}
