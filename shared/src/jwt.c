/*
 * JWT verification on libjwt 1.10 and OpenSSL 3.
 *
 * Design note: libjwt 1.10 takes the algorithm from the token's own
 * header and has no RSA-PSS, so the header is parsed here first and the
 * key's type decides what may run (an HS256 token never meets an RSA
 * public key used as an HMAC secret). libjwt then checks HS*, RS* and
 * ES* signatures; PS* is verified with OpenSSL's EVP_DigestVerify. The
 * claims are read from the payload parsed here, whose bytes are the
 * ones the signature covers.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
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
static int sr_jwt_verify_pss(const sr_jwt_key_t *key,
    const sr_jwt_alg_t *alg, const sr_jwt_parts_t *parts);
static int sr_jwt_check_signature(const sr_jwt_keys_t *keys,
    const sr_jwt_parts_t *parts, sr_error_t *err);
static int sr_jwt_time_claim(const json_t *payload, const char *name,
    double *value);
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

    if (memmem(pem, len, "-----BEGIN CERTIFICATE-----", 27) != NULL) {
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
