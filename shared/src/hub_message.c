/*
 * The protocol-neutral side of the hub codec: message lifetime, framing,
 * dispatch to the JSON and MessagePack halves, the checks both share,
 * and fan-out of one message to many connections.
 */

#include <stdlib.h>
#include <string.h>

#include <signalr/hub_message.h>

#include "hub_codec_internal.h"
#include "hub_transcode.h"


#define SR_VARINT_MAX_BYTES  5


static const char *sr_message_type_names[] = {
    "unknown",
    "Invocation",
    "StreamItem",
    "Completion",
    "StreamInvocation",
    "CancelInvocation",
    "Ping",
    "Close",
    "Ack",
    "Sequence"
};


static int sr_frame_next_json(const unsigned char *buf, size_t len,
    size_t max_size, const unsigned char **payload, size_t *payload_len,
    size_t *consumed, sr_error_t *err);
static int sr_frame_next_msgpack(const unsigned char *buf, size_t len,
    size_t max_size, const unsigned char **payload, size_t *payload_len,
    size_t *consumed, sr_error_t *err);
static size_t sr_varint_write(unsigned char *p, size_t value);
static int sr_check_string_array(const json_t *array, const char *what,
    sr_error_t *err);
static int sr_check_text(const char *s, const char *what, sr_error_t *err);
static int sr_check_invocation(const sr_message_t *msg, const char *name,
    sr_error_t *err);
static int sr_check_headers(const json_t *headers, sr_error_t *err);
static int sr_string_equal(const char *a, const char *b);
static int sr_value_equal(const json_t *a, const json_t *b);
static int sr_headers_equal(const json_t *a, const json_t *b);
static int sr_fanout_decode(sr_fanout_t *fanout, sr_error_t *err);
static int sr_fanout_transcode(sr_fanout_t *fanout, sr_buf_t *out,
    sr_error_t *err);


void
sr_message_init(sr_message_t *msg, sr_message_type_t type)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = type;
}


void
sr_message_clear(sr_message_t *msg)
{
    json_decref(msg->headers);
    free(msg->invocation_id);
    free(msg->target);
    json_decref(msg->arguments);
    json_decref(msg->stream_ids);
    json_decref(msg->item);
    json_decref(msg->result);
    free(msg->error);

    memset(msg, 0, sizeof(*msg));
}


const char *
sr_message_type_name(int type)
{
    if (type < SR_MSG_INVOCATION || type > SR_MSG_SEQUENCE) {
        return sr_message_type_names[0];
    }

    return sr_message_type_names[type];
}


int
sr_frame_next(sr_protocol_t protocol, const unsigned char *buf, size_t len,
    size_t max_size, const unsigned char **payload, size_t *payload_len,
    size_t *consumed, sr_error_t *err)
{
    switch (protocol) {

    case SR_PROTOCOL_JSON:
        return sr_frame_next_json(buf, len, max_size, payload, payload_len,
                                  consumed, err);

    case SR_PROTOCOL_MSGPACK:
        return sr_frame_next_msgpack(buf, len, max_size, payload,
                                     payload_len, consumed, err);
    }

    return sr_error_set(err, SR_ERR_INVALID, "unknown protocol %d",
                        (int) protocol);
}


static int
sr_frame_next_json(const unsigned char *buf, size_t len, size_t max_size,
    const unsigned char **payload, size_t *payload_len, size_t *consumed,
    sr_error_t *err)
{
    const unsigned char  *sep;

    sep = len ? memchr(buf, SR_RECORD_SEPARATOR, len) : NULL;

    if (sep == NULL) {
        if (max_size && len > max_size) {
            return sr_error_set(err, SR_ERR_TOO_LARGE,
                                "message exceeds %zu bytes", max_size);
        }

        return SR_AGAIN;
    }

    if (max_size && (size_t) (sep - buf) > max_size) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "message exceeds %zu bytes", max_size);
    }

    *payload = buf;
    *payload_len = sep - buf;
    *consumed = *payload_len + 1;

    return SR_OK;
}


static int
sr_frame_next_msgpack(const unsigned char *buf, size_t len, size_t max_size,
    const unsigned char **payload, size_t *payload_len, size_t *consumed,
    sr_error_t *err)
{
    size_t  i, value;

    value = 0;

    /*
     * Overlong prefixes (a last byte of 0) are accepted, as other
     * implementations do, so the bits read so far are all that bound
     * the length from below.
     */
    for (i = 0; i < SR_VARINT_MAX_BYTES; i++) {
        if (i == len) {
            return SR_AGAIN;
        }

        value |= (size_t) (buf[i] & 0x7f) << (7 * i);

        if (max_size && value > max_size && value <= SR_MSGPACK_MAX_FRAME) {
            return sr_error_set(err, SR_ERR_TOO_LARGE,
                                "message exceeds %zu bytes", max_size);
        }

        if (!(buf[i] & 0x80)) {
            break;
        }
    }

    if (i == SR_VARINT_MAX_BYTES) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message length prefix is longer than 5 bytes");
    }

    if (value > SR_MSGPACK_MAX_FRAME) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message length prefix exceeds 2 GiB");
    }

    if (max_size && value > max_size) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "message of %zu bytes exceeds %zu bytes",
                            value, max_size);
    }

    i++;

    if (len - i < value) {
        return SR_AGAIN;
    }

    *payload = buf + i;
    *payload_len = value;
    *consumed = i + value;

    return SR_OK;
}


static size_t
sr_varint_write(unsigned char *p, size_t value)
{
    size_t  n;

    n = 0;

    do {
        p[n] = value & 0x7f;
        value >>= 7;

        if (value) {
            p[n] |= 0x80;
        }

        n++;

    } while (value);

    return n;
}


int
sr_frame_write(sr_protocol_t protocol, const unsigned char *payload,
    size_t len, sr_buf_t *out, sr_error_t *err)
{
    size_t         n;
    unsigned char  prefix[SR_VARINT_MAX_BYTES];

    if (protocol == SR_PROTOCOL_JSON) {
        if (sr_buf_reserve(out, len + 1) != SR_OK) {
            return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
        }

        sr_buf_append(out, payload, len);
        sr_buf_append_byte(out, SR_RECORD_SEPARATOR);

        return SR_OK;
    }

    if (protocol != SR_PROTOCOL_MSGPACK) {
        return sr_error_set(err, SR_ERR_INVALID, "unknown protocol %d",
                            (int) protocol);
    }

    if (len > SR_MSGPACK_MAX_FRAME) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "message of %zu bytes exceeds 2 GiB", len);
    }

    n = sr_varint_write(prefix, len);

    if (sr_buf_reserve(out, n + len) != SR_OK) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    sr_buf_append(out, prefix, n);
    sr_buf_append(out, payload, len);

    return SR_OK;
}


int
sr_message_decode_payload(sr_protocol_t protocol,
    const unsigned char *payload, size_t len, const sr_limits_t *limits,
    sr_message_t *msg, sr_error_t *err)
{
    int  rc;

    sr_message_init(msg, 0);

    if (limits && limits->max_message_size
        && len > limits->max_message_size)
    {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "message of %zu bytes exceeds %zu bytes",
                            len, limits->max_message_size);
    }

    switch (protocol) {

    case SR_PROTOCOL_JSON:
        rc = sr_hub_json_decode(payload, len, msg, err);
        break;

    case SR_PROTOCOL_MSGPACK:
        rc = sr_hub_msgpack_decode(payload, len, msg, err);
        break;

    default:
        rc = sr_error_set(err, SR_ERR_INVALID, "unknown protocol %d",
                          (int) protocol);
    }

    if (rc == SR_OK) {
        rc = sr_hub_check_limits(msg, limits, err);
    }

    if (rc != SR_OK) {
        sr_message_clear(msg);
    }

    return rc;
}


int
sr_message_decode(sr_protocol_t protocol, const unsigned char *buf,
    size_t len, const sr_limits_t *limits, sr_message_t *msg,
    size_t *consumed, sr_error_t *err)
{
    int                   rc;
    size_t                payload_len, used, max;
    const unsigned char  *payload;

    sr_message_init(msg, 0);

    max = limits ? limits->max_message_size : 0;

    rc = sr_frame_next(protocol, buf, len, max, &payload, &payload_len,
                       &used, err);
    if (rc != SR_OK) {
        return rc;
    }

    rc = sr_message_decode_payload(protocol, payload, payload_len, limits,
                                   msg, err);

    /*
     * The frame was complete, so a caller may drop it even when its
     * content was refused, e.g. to ignore an unknown message type.
     */
    *consumed = used;

    return rc;
}


int
sr_message_encode_payload(sr_protocol_t protocol, const sr_message_t *msg,
    sr_buf_t *out, sr_error_t *err)
{
    int  rc;

    rc = sr_hub_check_encodable(msg, err);
    if (rc != SR_OK) {
        return rc;
    }

    switch (protocol) {

    case SR_PROTOCOL_JSON:
        return sr_hub_json_encode(msg, out, err);

    case SR_PROTOCOL_MSGPACK:
        return sr_hub_msgpack_encode(msg, out, err);
    }

    return sr_error_set(err, SR_ERR_INVALID, "unknown protocol %d",
                        (int) protocol);
}


int
sr_message_encode(sr_protocol_t protocol, const sr_message_t *msg,
    sr_buf_t *out, sr_error_t *err)
{
    int            rc;
    size_t         old, len, n;
    unsigned char  prefix[SR_VARINT_MAX_BYTES];

    old = out->len;

    if (protocol == SR_PROTOCOL_JSON) {
        rc = sr_message_encode_payload(protocol, msg, out, err);
        if (rc != SR_OK) {
            return rc;
        }

        if (sr_buf_append_byte(out, SR_RECORD_SEPARATOR) != SR_OK) {
            out->len = old;
            return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
        }

        return SR_OK;
    }

    /*
     * The length is known only once the payload is written: encode it
     * after room for the longest prefix, then slide it back over what
     * the actual prefix does not use, instead of encoding into a
     * scratch buffer and copying it whole.
     */
    if (sr_buf_reserve(out, SR_VARINT_MAX_BYTES) != SR_OK) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    out->len += SR_VARINT_MAX_BYTES;

    rc = sr_message_encode_payload(protocol, msg, out, err);
    if (rc != SR_OK) {
        out->len = old;
        return rc;
    }

    len = out->len - old - SR_VARINT_MAX_BYTES;

    if (len > SR_MSGPACK_MAX_FRAME) {
        out->len = old;
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "message of %zu bytes exceeds 2 GiB", len);
    }

    n = sr_varint_write(prefix, len);

    memmove(out->data + old + n, out->data + old + SR_VARINT_MAX_BYTES, len);
    memcpy(out->data + old, prefix, n);
    out->len = old + n + len;

    return SR_OK;
}


int
sr_hub_check_limits(const sr_message_t *msg, const sr_limits_t *limits,
    sr_error_t *err)
{
    size_t       i, n;
    const char  *name;
    json_t      *id;

    if (limits == NULL) {
        return SR_OK;
    }

    name = sr_message_type_name(msg->type);

    if (limits->max_invocation_id && msg->invocation_id
        && strlen(msg->invocation_id) > limits->max_invocation_id)
    {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "%s message has an invocationId longer than "
                            "%zu bytes", name, limits->max_invocation_id);
    }

    n = msg->arguments ? json_array_size(msg->arguments) : 0;

    if (limits->max_arguments && n > limits->max_arguments) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "%s message has %zu arguments, more than %zu",
                            name, n, limits->max_arguments);
    }

    n = msg->stream_ids ? json_array_size(msg->stream_ids) : 0;

    if (limits->max_arguments && n > limits->max_arguments) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "%s message has %zu streamIds, more than %zu",
                            name, n, limits->max_arguments);
    }

    for (i = 0; limits->max_invocation_id && i < n; i++) {
        id = json_array_get(msg->stream_ids, i);

        if (json_string_length(id) > limits->max_invocation_id) {
            return sr_error_set(err, SR_ERR_TOO_LARGE,
                                "%s message has a stream id longer than "
                                "%zu bytes", name, limits->max_invocation_id);
        }
    }

    return SR_OK;
}


static int
sr_check_string_array(const json_t *array, const char *what, sr_error_t *err)
{
    size_t   i;
    json_t  *value;

    if (!json_is_array(array)) {
        return sr_error_set(err, SR_ERR_INVALID, "%s is not an array", what);
    }

    json_array_foreach(array, i, value) {
        if (!json_is_string(value)) {
            return sr_error_set(err, SR_ERR_INVALID,
                                "%s holds a value that is not a string",
                                what);
        }
    }

    return SR_OK;
}


static int
sr_check_text(const char *s, const char *what, sr_error_t *err)
{
    if (s && !sr_utf8_valid((const unsigned char *) s, strlen(s))) {
        return sr_error_set(err, SR_ERR_INVALID, "%s is not valid UTF-8",
                            what);
    }

    return SR_OK;
}


static int
sr_check_invocation(const sr_message_t *msg, const char *name,
    sr_error_t *err)
{
    if (msg->target == NULL) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "%s message lacks a target", name);
    }

    if (!json_is_array(msg->arguments)) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "%s message lacks an arguments array", name);
    }

    if (msg->stream_ids) {
        return sr_check_string_array(msg->stream_ids, "streamIds", err);
    }

    return SR_OK;
}


static int
sr_check_headers(const json_t *headers, sr_error_t *err)
{
    const char  *key;
    json_t      *value;

    if (!json_is_object(headers)) {
        return sr_error_set(err, SR_ERR_INVALID, "headers are not an object");
    }

    json_object_foreach((json_t *) headers, key, value) {
        if (!json_is_string(value)) {
            return sr_error_set(err, SR_ERR_INVALID,
                                "header values must be strings");
        }
    }

    return SR_OK;
}


int
sr_hub_check_encodable(const sr_message_t *msg, sr_error_t *err)
{
    int          t;
    const char  *name;

    t = msg->type;
    name = sr_message_type_name(t);

    if (t < SR_MSG_INVOCATION || t > SR_MSG_SEQUENCE) {
        return sr_error_set(err, SR_ERR_INVALID, "unknown message type %d",
                            t);
    }

    if (msg->invocation_id == NULL && t != SR_MSG_INVOCATION
        && t <= SR_MSG_CANCEL_INVOCATION)
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "%s message lacks an invocation id", name);
    }

    if ((t == SR_MSG_INVOCATION || t == SR_MSG_STREAM_INVOCATION)
        && sr_check_invocation(msg, name, err) != SR_OK)
    {
        return SR_ERR_INVALID;
    }

    if (t == SR_MSG_STREAM_ITEM && msg->item == NULL) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "StreamItem message lacks an item");
    }

    if (t == SR_MSG_COMPLETION && msg->result && msg->error) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "Completion message has both result and error");
    }

    if ((t == SR_MSG_ACK || t == SR_MSG_SEQUENCE)
        && msg->sequence_id > INT64_MAX)
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "%s message has a sequenceId above 2^63 - 1",
                            name);
    }

    if (msg->headers && sr_check_headers(msg->headers, err) != SR_OK) {
        return SR_ERR_INVALID;
    }

    if (sr_check_text(msg->invocation_id, "invocation id", err)
        || sr_check_text(msg->target, "target", err)
        || sr_check_text(msg->error, "error", err))
    {
        return SR_ERR_INVALID;
    }

    return SR_OK;
}


char *
sr_hub_strndup(const char *s, size_t len)
{
    char  *copy;

    copy = malloc(len + 1);
    if (copy == NULL) {
        return NULL;
    }

    memcpy(copy, s, len);
    copy[len] = '\0';

    return copy;
}


static int
sr_string_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


static int
sr_value_equal(const json_t *a, const json_t *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return json_equal(a, b);
}


static int
sr_headers_equal(const json_t *a, const json_t *b)
{
    /* no headers and an empty map are the same on the wire */
    if (a && json_object_size(a) == 0) {
        a = NULL;
    }

    if (b && json_object_size(b) == 0) {
        b = NULL;
    }

    return sr_value_equal(a, b);
}


int
sr_hub_message_equal(const sr_message_t *a, const sr_message_t *b)
{
    return a->type == b->type
           && sr_headers_equal(a->headers, b->headers)
           && sr_string_equal(a->invocation_id, b->invocation_id)
           && sr_string_equal(a->target, b->target)
           && sr_value_equal(a->arguments, b->arguments)
           && sr_value_equal(a->stream_ids, b->stream_ids)
           && sr_value_equal(a->item, b->item)
           && sr_value_equal(a->result, b->result)
           && sr_string_equal(a->error, b->error)
           && !a->allow_reconnect == !b->allow_reconnect
           && a->sequence_id == b->sequence_id;
}


void
sr_fanout_init(sr_fanout_t *fanout, sr_message_t *msg)
{
    int  i;

    fanout->msg = *msg;
    fanout->decoded = 1;

    for (i = 0; i < SR_PROTOCOL_COUNT; i++) {
        sr_buf_init(&fanout->framed[i]);
    }

    memset(msg, 0, sizeof(*msg));
}


int
sr_fanout_init_encoded(sr_fanout_t *fanout, sr_protocol_t protocol,
    const unsigned char *payload, size_t len, sr_error_t *err)
{
    int                   i, rc;
    size_t                inner_len, used;
    const unsigned char  *inner;

    sr_message_init(&fanout->msg, 0);
    fanout->decoded = 0;

    for (i = 0; i < SR_PROTOCOL_COUNT; i++) {
        sr_buf_init(&fanout->framed[i]);
    }

    rc = sr_frame_next(protocol, payload, len, 0, &inner, &inner_len, &used,
                       err);

    if (rc != SR_OK || used != len) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "fan-out input is not exactly one framed "
                            "message");
    }

    if (sr_buf_append(&fanout->framed[protocol], payload, len) != SR_OK) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


int
sr_fanout_init_payload(sr_fanout_t *fanout, sr_protocol_t protocol,
    const unsigned char *payload, size_t len, sr_error_t *err)
{
    int  i;

    sr_message_init(&fanout->msg, 0);
    fanout->decoded = 0;

    for (i = 0; i < SR_PROTOCOL_COUNT; i++) {
        sr_buf_init(&fanout->framed[i]);
    }

    if ((int) protocol < 0 || protocol >= SR_PROTOCOL_COUNT) {
        return sr_error_set(err, SR_ERR_INVALID, "unknown protocol %d",
                            (int) protocol);
    }

    return sr_frame_write(protocol, payload, len, &fanout->framed[protocol],
                          err);
}


static int
sr_fanout_decode(sr_fanout_t *fanout, sr_error_t *err)
{
    int                   p, rc;
    size_t                len, used;
    const unsigned char  *payload;
    const sr_buf_t       *src;

    for (p = 0; p < SR_PROTOCOL_COUNT; p++) {
        src = &fanout->framed[p];

        if (src->len == 0) {
            continue;
        }

        rc = sr_frame_next(p, src->data, src->len, 0, &payload, &len, &used,
                           err);
        if (rc != SR_OK) {
            return sr_error_set(err, SR_ERR_INVALID,
                                "fan-out input is not a framed message");
        }

        rc = sr_message_decode_payload(p, payload, len, NULL, &fanout->msg,
                                       err);
        if (rc != SR_OK) {
            return rc;
        }

        fanout->decoded = 1;

        return SR_OK;
    }

    return sr_error_set(err, SR_ERR_INVALID, "fan-out holds no message");
}


/*
 * JSON straight from the MessagePack encoding, the common case of a
 * message from the daemon (hub_transcode.c); SR_ERR_UNSUPPORTED when
 * there is none or the message is left to the full codec.
 */
static int
sr_fanout_transcode(sr_fanout_t *fanout, sr_buf_t *out, sr_error_t *err)
{
    int                   rc;
    size_t                len, used;
    const unsigned char  *payload;
    const sr_buf_t       *src;

    src = &fanout->framed[SR_PROTOCOL_MSGPACK];

    if (src->len == 0
        || sr_frame_next(SR_PROTOCOL_MSGPACK, src->data, src->len, 0,
                         &payload, &len, &used, NULL)
           != SR_OK)
    {
        return SR_ERR_UNSUPPORTED;
    }

    rc = sr_hub_transcode_msgpack_json(payload, len, out, err);

    if (rc != SR_OK) {
        return rc;
    }

    if (sr_buf_append_byte(out, SR_RECORD_SEPARATOR) != SR_OK) {
        sr_buf_reset(out);
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


const sr_buf_t *
sr_fanout_framed(sr_fanout_t *fanout, sr_protocol_t protocol,
    sr_error_t *err)
{
    int        rc;
    sr_buf_t  *out;

    if ((int) protocol < 0 || protocol >= SR_PROTOCOL_COUNT) {
        sr_error_set(err, SR_ERR_INVALID, "unknown protocol %d",
                     (int) protocol);
        return NULL;
    }

    out = &fanout->framed[protocol];

    if (out->len) {
        return out;
    }

    if (protocol == SR_PROTOCOL_JSON && !fanout->decoded) {
        rc = sr_fanout_transcode(fanout, out, err);

        if (rc == SR_OK) {
            return out;
        }

        if (rc != SR_ERR_UNSUPPORTED) {
            return NULL;
        }
    }

    if (!fanout->decoded && sr_fanout_decode(fanout, err) != SR_OK) {
        return NULL;
    }

    if (sr_message_encode(protocol, &fanout->msg, out, err) != SR_OK) {
        return NULL;
    }

    return out;
}


void
sr_fanout_clear(sr_fanout_t *fanout)
{
    int  i;

    sr_message_clear(&fanout->msg);
    fanout->decoded = 0;

    for (i = 0; i < SR_PROTOCOL_COUNT; i++) {
        sr_buf_free(&fanout->framed[i]);
    }
}
