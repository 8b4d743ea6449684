/*
 * The negotiate response body (TransportProtocols.md, "POST
 * [endpoint-base]/negotiate request") and random connection ids.
 */

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include <signalr/negotiate.h>


#define SR_RANDOM_ID_BYTES  16


static int sr_negotiate_transports(json_t *obj, unsigned transports);
static int sr_negotiate_dump(const char *data, size_t size, void *buf);


/*
 * Keys are added in the order the spec's examples show them; jansson
 * keeps insertion order when it writes an object.
 */
int
sr_negotiate_write(const sr_negotiate_response_t *res, sr_buf_t *out,
    sr_error_t *err)
{
    int      rc;
    size_t   old;
    json_t  *obj;

    if (res->version != 0 && res->version != 1) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "unknown negotiate version %d", res->version);
    }

    if (res->connection_id == NULL
        || (res->version == 1 && res->connection_token == NULL))
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "negotiate response lacks its connection ids");
    }

    if (!(res->transports & (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE
                             | SR_TRANSPORT_LONG_POLLING)))
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "negotiate response offers no transport");
    }

    obj = json_object();
    if (obj == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    rc = 0;

    if (res->version == 1) {
        rc |= json_object_set_new(obj, "connectionToken",
                                  json_string(res->connection_token));
    }

    rc |= json_object_set_new(obj, "connectionId",
                              json_string(res->connection_id));
    rc |= json_object_set_new(obj, "negotiateVersion",
                              json_integer(res->version));
    rc |= sr_negotiate_transports(obj, res->transports);

    if (res->stateful_reconnect) {
        rc |= json_object_set_new(obj, "useStatefulReconnect", json_true());
    }

    old = out->len;

    if (rc == 0) {
        rc = json_dump_callback(obj, sr_negotiate_dump, out, JSON_COMPACT);
    }

    json_decref(obj);

    if (rc != 0) {
        out->len = old;
        return sr_error_set(err, SR_ERR_NOMEM,
                            "negotiate response could not be written");
    }

    return SR_OK;
}


static int
sr_negotiate_transports(json_t *obj, unsigned transports)
{
    int      rc;
    json_t  *list;

    list = json_array();
    if (list == NULL) {
        return -1;
    }

    rc = 0;

    if (transports & SR_TRANSPORT_WEBSOCKETS) {
        rc |= json_array_append_new(list,
                  json_pack("{s:s,s:[s,s]}", "transport", "WebSockets",
                            "transferFormats", "Text", "Binary"));
    }

    if (transports & SR_TRANSPORT_SSE) {
        rc |= json_array_append_new(list,
                  json_pack("{s:s,s:[s]}", "transport", "ServerSentEvents",
                            "transferFormats", "Text"));
    }

    if (transports & SR_TRANSPORT_LONG_POLLING) {
        rc |= json_array_append_new(list,
                  json_pack("{s:s,s:[s,s]}", "transport", "LongPolling",
                            "transferFormats", "Text", "Binary"));
    }

    return rc | json_object_set_new(obj, "availableTransports", list);
}


static int
sr_negotiate_dump(const char *data, size_t size, void *buf)
{
    return sr_buf_append(buf, data, size) == SR_OK ? 0 : -1;
}


int
sr_negotiate_version(const char *value, size_t len, int *version,
    sr_error_t *err)
{
    size_t  i;

    if (value == NULL) {
        *version = 0;
        return SR_OK;
    }

    if (len == 0) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "negotiateVersion is empty");
    }

    for (i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9') {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "negotiateVersion is not a number");
        }
    }

    /* any digit other than 0 makes the value at least 1 */
    for (i = 0; i < len && value[i] == '0'; i++) {
        /* void */
    }

    *version = i < len ? 1 : 0;

    return SR_OK;
}


int
sr_random_id(char out[SR_RANDOM_ID_LEN + 1], sr_error_t *err)
{
    static const char  alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    size_t             got, i, bit, n;
    ssize_t            rc;
    unsigned char      raw[SR_RANDOM_ID_BYTES];
    unsigned int       index;

    got = 0;

    while (got < sizeof(raw)) {
        rc = getrandom(raw + got, sizeof(raw) - got, 0);

        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }

            return sr_error_set(err, SR_ERR_IO, "getrandom() failed: %s",
                                strerror(errno));
        }

        got += (size_t) rc;
    }

    /* unpadded base64url: 6 bits a character, the last one takes 2 */
    for (n = 0; n < SR_RANDOM_ID_LEN; n++) {
        bit = n * 6;
        i = bit / 8;
        index = raw[i] << 8;

        if (i + 1 < sizeof(raw)) {
            index |= raw[i + 1];
        }

        index = (index >> (10 - bit % 8)) & 0x3f;
        out[n] = alphabet[index];
    }

    out[SR_RANDOM_ID_LEN] = '\0';

    return SR_OK;
}
