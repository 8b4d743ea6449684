/*
 * Fuzzes JWT verification against a fixed key set: an HMAC secret, an
 * RSA and an EC public key (the private halves were thrown away). The
 * input is the token; a refusal must be SR_ERR_AUTH with one of the
 * documented reasons, and an identity must carry a non-empty user.
 *
 * A mutated token almost never keeps a valid signature, which would
 * leave the claim checks unreached; so when the first byte has its top
 * bit set, the rest is taken as "header.payload" and signed here with
 * HS256 under the fixed secret.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <signalr/jwt.h>


#define FUZZ_NOW  ((time_t) 1700000000)

static const char  fuzz_rsa_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtUSCNuu/mzB6yOLnbXvO\n"
    "0dDGdt5b+ick40kbpgi84aJ1L0DtqCBH+0g1VLmc7jKuwzNTGDTbma+e1hbMcXv0\n"
    "3WdEWT7v/1gPoP9qRzSsHkm5T0lel24B8Geu8SpDY5qOZC4t/uIJvFT8B6WPphMl\n"
    "t5lem2uVBb3sV9pb6r3oH0aczYznJXAilaepvOBbPRiKTsVz9Xwj0tcogYWF9xX8\n"
    "OPGLB3E8NOsfEcjWJDOiPFCy8KIXTU5hnS7jja2AN3OiBGgfL/uGiO4BO41WusfX\n"
    "cXsLjhMO4rE/DKteb2TSL/BtSIR+a6KXuA+61xkDo20MHW360ScFtofjG5YiL9qH\n"
    "CwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char  fuzz_ec_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEX3AZVM4nli6tXKNKODCOq5HZ/nWF\n"
    "Y+JKOLUtTD+NYHOk0FhRrixuCZs6jx0/V+Mk1c5rBwA1U2V3w9trsVv3rQ==\n"
    "-----END PUBLIC KEY-----\n";

/* The seed corpus is signed with this secret. */
static const char  fuzz_secret[] = "fuzz-secret";

static const char *const  fuzz_reasons[] = {
    "token expired", "token not yet valid", "invalid signature",
    "unknown key", "algorithm not allowed", "malformed token",
    "wrong issuer", "wrong audience", "missing user claim",
};

static sr_jwt_keys_t  *fuzz_keys;


static void
fuzz_expect(int ok)
{
    if (!ok) {
        abort();
    }
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    sr_error_t  err;

    fuzz_keys = sr_jwt_keys_new();
    fuzz_expect(fuzz_keys != NULL);

    fuzz_expect(sr_jwt_keys_add_secret(fuzz_keys, NULL,
                                       (const unsigned char *) fuzz_secret,
                                       sizeof(fuzz_secret) - 1, &err)
                == SR_OK);
    fuzz_expect(sr_jwt_keys_add_pem(fuzz_keys, "rsa", fuzz_rsa_pem,
                                    sizeof(fuzz_rsa_pem) - 1, &err)
                == SR_OK);
    fuzz_expect(sr_jwt_keys_add_pem(fuzz_keys, "ec", fuzz_ec_pem,
                                    sizeof(fuzz_ec_pem) - 1, &err)
                == SR_OK);

    return 0;
}


static int
fuzz_known_reason(const char *reason)
{
    size_t  i;

    for (i = 0; i < sizeof(fuzz_reasons) / sizeof(fuzz_reasons[0]); i++) {
        if (strcmp(reason, fuzz_reasons[i]) == 0) {
            return 1;
        }
    }

    return 0;
}


/* Returns "input.signature", exactly as long as it says in *len. */
static char *
fuzz_sign(const uint8_t *input, size_t size, size_t *len)
{
    unsigned char  mac[EVP_MAX_MD_SIZE], b64[2 * EVP_MAX_MD_SIZE];
    unsigned int   mac_len;
    char          *token;
    size_t         n, i;

    fuzz_expect(HMAC(EVP_sha256(), fuzz_secret, sizeof(fuzz_secret) - 1,
                     input, size, mac, &mac_len) != NULL);

    n = (size_t) EVP_EncodeBlock(b64, mac, (int) mac_len);

    while (n > 0 && b64[n - 1] == '=') {
        n--;
    }

    for (i = 0; i < n; i++) {
        b64[i] = (b64[i] == '+') ? '-' : (b64[i] == '/') ? '_' : b64[i];
    }

    *len = size + 1 + n;
    token = malloc(*len);
    fuzz_expect(token != NULL);

    memcpy(token, input, size);
    token[size] = '.';
    memcpy(token + size + 1, b64, n);

    return token;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const  audiences[] = { "api" };
    sr_jwt_identity_t         id;
    sr_jwt_policy_t           policy;
    sr_error_t                err;
    char                     *token;
    size_t                    len;
    int                       rc;

    if (size < 1) {
        return 0;
    }

    /* the first byte picks the policy */
    memset(&policy, 0, sizeof(policy));
    policy.leeway = data[0] & 0x0f;
    policy.issuer = (data[0] & 0x10) ? "issuer" : NULL;
    policy.audiences = (data[0] & 0x20) ? audiences : NULL;
    policy.audiences_n = (data[0] & 0x20) ? 1 : 0;
    policy.user_claim = (data[0] & 0x40) ? "name" : NULL;

    /* not NUL-terminated, and exactly as long as the token */
    if (data[0] & 0x80) {
        token = fuzz_sign(data + 1, size - 1, &len);

    } else {
        len = size - 1;
        token = malloc(len ? len : 1);
        fuzz_expect(token != NULL);
        memcpy(token, data + 1, len);
    }

    rc = sr_jwt_verify(fuzz_keys, &policy, token, len, FUZZ_NOW, &id, &err);

    if (rc == SR_OK) {
        fuzz_expect(id.user != NULL && id.user[0] != '\0');
        fuzz_expect(json_is_object(id.claims));

    } else {
        fuzz_expect(rc == SR_ERR_NOMEM
                    || (rc == SR_ERR_AUTH && fuzz_known_reason(err.str)));
        fuzz_expect(id.user == NULL && id.claims == NULL);
    }

    sr_jwt_identity_clear(&id);
    free(token);

    return 0;
}
