/*
 * The hub handshake (HubProtocol.md, "Overview"): always JSON, whatever
 * protocol it picks, and terminated by the record separator.
 */

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <signalr/handshake.h>

#include "hub_codec_internal.h"


/*
 * Protocol versions accepted: 1, and 2, which official clients (the
 * JavaScript one from 8.0) send when stateful reconnect was negotiated;
 * it adds the Ack and Sequence messages and changes nothing else.
 */
#define SR_HANDSHAKE_MIN_VERSION  1
#define SR_HANDSHAKE_MAX_VERSION  2

/* Longest protocol name echoed back in an error: longer ones are not
 * names of anything and are left out of the reply. */
#define SR_HANDSHAKE_ECHO_MAX  32


static int sr_handshake_find(const unsigned char *buf, size_t len,
    size_t max_len, size_t *end, sr_error_t *err);
static int sr_handshake_echoable(const char *s, size_t len);
static int sr_handshake_protocol(const json_t *value,
    sr_handshake_request_t *req, sr_error_t *err);
static int sr_handshake_append(sr_buf_t *out, json_t *obj);
static int sr_handshake_dump(const char *data, size_t size, void *buf);


static const char *sr_protocol_names[SR_PROTOCOL_COUNT] = {
    "json",
    "messagepack"
};


const char *
sr_protocol_name(sr_protocol_t protocol)
{
    if ((int) protocol < 0 || protocol >= SR_PROTOCOL_COUNT) {
        return "unknown";
    }

    return sr_protocol_names[protocol];
}


static int
sr_handshake_find(const unsigned char *buf, size_t len, size_t max_len,
    size_t *end, sr_error_t *err)
{
    size_t                scan;
    const unsigned char  *sep;

    scan = (max_len && len > max_len) ? max_len : len;
    sep = scan ? memchr(buf, SR_RECORD_SEPARATOR, scan) : NULL;

    if (sep == NULL) {
        if (max_len && len >= max_len) {
            return sr_error_set(err, SR_ERR_TOO_LARGE,
                                "handshake exceeds %zu bytes", max_len);
        }

        return SR_AGAIN;
    }

    *end = sep - buf;

    return SR_OK;
}


int
sr_handshake_parse_request(const unsigned char *buf, size_t len,
    size_t max_len, sr_handshake_request_t *req, size_t *consumed,
    sr_error_t *err)
{
    int           rc;
    size_t        end;
    json_t       *root, *version;
    json_error_t  jerr;

    rc = sr_handshake_find(buf, len, max_len, &end, err);
    if (rc != SR_OK) {
        return rc;
    }

    root = json_loadb((const char *) buf, end, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (root == NULL) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "handshake request is not valid JSON: %s",
                            jerr.text);
    }

    if (!json_is_object(root)) {
        json_decref(root);
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "handshake request is not a JSON object");
    }

    version = json_object_get(root, "version");

    if (version == NULL || !json_is_integer(version)) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "handshake request has no integer 'version'");
        goto done;
    }

    rc = sr_handshake_protocol(json_object_get(root, "protocol"), req, err);
    if (rc != SR_OK) {
        goto done;
    }

    if (json_integer_value(version) < SR_HANDSHAKE_MIN_VERSION
        || json_integer_value(version) > SR_HANDSHAKE_MAX_VERSION)
    {
        rc = sr_error_set(err, SR_ERR_UNSUPPORTED,
                          "Version %lld of protocol '%s' is not supported.",
                          (long long) json_integer_value(version),
                          sr_protocol_name(req->protocol));
        goto done;
    }

    req->version = (int) json_integer_value(version);
    *consumed = end + 1;

done:

    json_decref(root);

    return rc;
}


static int
sr_handshake_protocol(const json_t *value, sr_handshake_request_t *req,
    sr_error_t *err)
{
    int          i;
    size_t       len;
    const char  *name;

    if (value == NULL || !json_is_string(value)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "handshake request has no string 'protocol'");
    }

    name = json_string_value(value);
    len = json_string_length(value);

    for (i = 0; i < SR_PROTOCOL_COUNT; i++) {
        if (len == strlen(sr_protocol_names[i])
            && memcmp(name, sr_protocol_names[i], len) == 0)
        {
            req->protocol = i;
            return SR_OK;
        }
    }

    /* err->str goes back to the client: echo only a plain short name */
    if (!sr_handshake_echoable(name, len)) {
        return sr_error_set(err, SR_ERR_UNSUPPORTED,
                            "The requested protocol is not supported.");
    }

    return sr_error_set(err, SR_ERR_UNSUPPORTED,
                        "Protocol '%s' is not supported.", name);
}


static int
sr_handshake_echoable(const char *s, size_t len)
{
    size_t          i;
    unsigned char   c;

    if (len == 0 || len > SR_HANDSHAKE_ECHO_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c < 0x20 || c > 0x7e || c == '\'') {
            return 0;
        }
    }

    return 1;
}


int
sr_handshake_write_request(sr_buf_t *out, sr_protocol_t protocol)
{
    json_t  *obj;

    if ((int) protocol < 0 || protocol >= SR_PROTOCOL_COUNT) {
        return SR_ERR_INVALID;
    }

    obj = json_pack("{s:s,s:i}", "protocol", sr_protocol_names[protocol],
                    "version", SR_HANDSHAKE_MIN_VERSION);

    return sr_handshake_append(out, obj);
}


int
sr_handshake_write_response(sr_buf_t *out, const char *error)
{
    json_t  *obj;

    if (error && !sr_utf8_valid((const unsigned char *) error,
                                strlen(error)))
    {
        return SR_ERR_INVALID;
    }

    obj = error ? json_pack("{s:s}", "error", error) : json_object();

    return sr_handshake_append(out, obj);
}


/* Appends obj and the separator, and releases obj (NULL: no memory). */
static int
sr_handshake_append(sr_buf_t *out, json_t *obj)
{
    int     rc;
    size_t  old;

    if (obj == NULL) {
        return SR_ERR_NOMEM;
    }

    old = out->len;

    rc = json_dump_callback(obj, sr_handshake_dump, out, JSON_COMPACT);
    json_decref(obj);

    if (rc != 0 || sr_buf_append_byte(out, SR_RECORD_SEPARATOR) != SR_OK) {
        out->len = old;
        return SR_ERR_NOMEM;
    }

    return SR_OK;
}


static int
sr_handshake_dump(const char *data, size_t size, void *buf)
{
    return sr_buf_append(buf, data, size) == SR_OK ? 0 : -1;
}


int
sr_handshake_parse_response(const unsigned char *buf, size_t len,
    char **server_error, size_t *consumed, sr_error_t *err)
{
    int           rc;
    size_t        end;
    json_t       *root, *error;
    json_error_t  jerr;

    *server_error = NULL;

    rc = sr_handshake_find(buf, len, 0, &end, err);
    if (rc != SR_OK) {
        return rc;
    }

    root = json_loadb((const char *) buf, end, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "handshake response is not a JSON object");
    }

    /* a hub message where the handshake response should be */
    if (json_object_get(root, "type") != NULL) {
        json_decref(root);
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "expected a handshake response, got a message");
    }

    error = json_object_get(root, "error");

    if (error != NULL && !json_is_null(error)) {
        if (!json_is_string(error)) {
            json_decref(root);
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "handshake response 'error' is not a "
                                "string");
        }

        *server_error = sr_hub_strndup(json_string_value(error),
                                       json_string_length(error));

        if (*server_error == NULL) {
            json_decref(root);
            return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
        }
    }

    json_decref(root);

    *consumed = end + 1;

    return SR_OK;
}
