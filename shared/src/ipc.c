/*
 * The worker-daemon frame format (docs/ipc.md) and its MessagePack
 * bodies. Parsing never copies: frames point into the caller's buffer.
 */

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <signalr/ipc.h>
#include <signalr/websocket.h>

#include "hub_codec_internal.h"
#include "msgpack_json.h"


#define SR_IPC_LENGTH_SIZE  4       /* the u32 before everything else */
#define SR_IPC_MAX_IDS      0xffff


typedef struct {
    sr_buf_t  *out;
    int        failed;
} sr_ipc_sink_t;


static uint32_t sr_ipc_get32(const unsigned char *p);
static void sr_ipc_put32(unsigned char *p, uint32_t v);
static int sr_ipc_id_valid(const char *id, size_t len);
static int sr_ipc_sink_write(void *data, const char *buf, size_t len);
static void sr_ipc_packer_init(msgpack_packer *pk, sr_ipc_sink_t *sink,
    sr_buf_t *out);
static int sr_ipc_packer_done(sr_ipc_sink_t *sink, size_t start,
    sr_error_t *err);
static void sr_ipc_pack_str(msgpack_packer *pk, const char *s);
static int sr_ipc_unpack_map(const unsigned char *body, size_t len,
    msgpack_unpacked *result, const char *what, sr_error_t *err);
static int sr_ipc_key_is(const msgpack_object *key, const char *name);
static int sr_ipc_get_str(const msgpack_object *o, int nullable,
    char **out, const char *what, sr_error_t *err);
static int sr_ipc_get_protocol(const msgpack_object *o,
    sr_protocol_t *protocol, sr_error_t *err);
static int sr_ipc_open_field(const msgpack_object_kv *kv,
    sr_ipc_open_t *open, sr_error_t *err);
static int sr_ipc_get_uint(const msgpack_object *o, uint64_t *out,
    const char *what, sr_error_t *err);
static int sr_ipc_get_bin(const msgpack_object *o, sr_ipc_bytes_t *out,
    const char *what, sr_error_t *err);
static int sr_ipc_get_bin_array(const msgpack_object *o,
    sr_ipc_bytes_t **out, size_t *count, const char *what, sr_error_t *err);
static void sr_ipc_free_strs(char **strs, size_t count);
static int sr_ipc_get_str_array(const msgpack_object *o, char ***out,
    size_t *count, const char *what, sr_error_t *err);
static void sr_ipc_pack_bin(msgpack_packer *pk, const unsigned char *data,
    size_t len);
static int sr_ipc_state_sum_ok(const sr_ipc_state_t *state);
static void sr_ipc_state_pack_who(msgpack_packer *pk,
    const sr_ipc_state_t *state);
static void sr_ipc_state_pack_rest(msgpack_packer *pk,
    const sr_ipc_state_t *state);
static int sr_ipc_state_exp(const msgpack_object *o, sr_ipc_state_t *state,
    sr_error_t *err);
static int sr_ipc_state_field(const msgpack_object_kv *kv,
    sr_ipc_state_t *state, unsigned *seen, sr_error_t *err);


static uint32_t
sr_ipc_get32(const unsigned char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
           | (uint32_t) p[2] << 8 | p[3];
}


static void
sr_ipc_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}


/* Connection ids are printable ASCII: they end up in logs and keys. */

static int
sr_ipc_id_valid(const char *id, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if ((unsigned char) id[i] < 0x21 || (unsigned char) id[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


int
sr_ipc_parse(const unsigned char *buf, size_t len, size_t max_frame,
    sr_ipc_frame_t *frame, size_t *consumed, sr_error_t *err)
{
    uint32_t  length;
    size_t    conn_len;

    if (max_frame == 0) {
        max_frame = SR_IPC_MAX_FRAME;
    }

    if (len < SR_IPC_LENGTH_SIZE) {
        return SR_AGAIN;
    }

    length = sr_ipc_get32(buf);

    if (length > max_frame) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "ipc frame of %u bytes over the limit of %zu",
                            length, max_frame);
    }

    if (length < SR_IPC_HEADER_SIZE - SR_IPC_LENGTH_SIZE) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "ipc frame length %u shorter than its header",
                            length);
    }

    if (len < SR_IPC_HEADER_SIZE) {
        return SR_AGAIN;
    }

    /* checked before the rest arrives: a lying header fails at once */
    conn_len = (size_t) buf[6] << 8 | buf[7];

    if (conn_len > SR_IPC_MAX_CONN_ID
        || conn_len > length - (SR_IPC_HEADER_SIZE - SR_IPC_LENGTH_SIZE))
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "ipc connection id length %zu does not fit",
                            conn_len);
    }

    if (len - SR_IPC_LENGTH_SIZE < length) {
        return SR_AGAIN;
    }

    if (!sr_ipc_id_valid((const char *) buf + SR_IPC_HEADER_SIZE, conn_len)) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "ipc connection id is not printable ascii");
    }

    frame->type = buf[4];
    frame->flags = buf[5];
    frame->conn_id = (const char *) buf + SR_IPC_HEADER_SIZE;
    frame->conn_id_len = conn_len;
    frame->body = buf + SR_IPC_HEADER_SIZE + conn_len;
    frame->body_len = length - (SR_IPC_HEADER_SIZE - SR_IPC_LENGTH_SIZE)
                      - conn_len;

    *consumed = SR_IPC_LENGTH_SIZE + (size_t) length;

    return SR_OK;
}


int
sr_ipc_begin(sr_buf_t *out, sr_ipc_type_t type, const char *conn_id,
    size_t conn_id_len, size_t *offset, sr_error_t *err)
{
    unsigned char  *h;

    if (conn_id_len > SR_IPC_MAX_CONN_ID
        || (conn_id_len > 0 && !sr_ipc_id_valid(conn_id, conn_id_len)))
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "ipc connection id over %d bytes or not "
                            "printable ascii", SR_IPC_MAX_CONN_ID);
    }

    if (sr_buf_reserve(out, SR_IPC_HEADER_SIZE + conn_id_len) != SR_OK) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a frame");
    }

    *offset = out->len;

    h = out->data + out->len;
    sr_ipc_put32(h, 0);
    h[4] = (unsigned char) type;
    h[5] = 0;
    h[6] = (unsigned char) (conn_id_len >> 8);
    h[7] = (unsigned char) conn_id_len;

    if (conn_id_len > 0) {
        memcpy(h + SR_IPC_HEADER_SIZE, conn_id, conn_id_len);
    }

    out->len += SR_IPC_HEADER_SIZE + conn_id_len;

    return SR_OK;
}


/*
 * A frame over SR_IPC_MAX_FRAME is refused here rather than on the
 * peer, where it would end the link and every connection on it; the
 * unfinished frame is then taken back off out.
 */

int
sr_ipc_end(sr_buf_t *out, size_t offset, sr_error_t *err)
{
    size_t  length;

    if (offset > out->len || out->len - offset < SR_IPC_HEADER_SIZE) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "ipc frame offset outside the buffer");
    }

    length = out->len - offset - SR_IPC_LENGTH_SIZE;

    if (length > SR_IPC_MAX_FRAME) {
        out->len = offset;
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "ipc frame of %zu bytes over the limit of %u",
                            length, SR_IPC_MAX_FRAME);
    }

    sr_ipc_put32(out->data + offset, (uint32_t) length);

    return SR_OK;
}


int
sr_ipc_write(sr_buf_t *out, sr_ipc_type_t type, const char *conn_id,
    size_t conn_id_len, const void *body, size_t body_len,
    sr_error_t *err)
{
    size_t  offset;
    int     rc;

    if (body_len > SR_IPC_MAX_FRAME) {
        return sr_error_set(err, SR_ERR_TOO_LARGE,
                            "ipc body of %zu bytes over the limit of %u",
                            body_len, SR_IPC_MAX_FRAME);
    }

    rc = sr_ipc_begin(out, type, conn_id, conn_id_len, &offset, err);
    if (rc != SR_OK) {
        return rc;
    }

    if (sr_buf_append(out, body, body_len) != SR_OK) {
        out->len = offset;
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a frame");
    }

    return sr_ipc_end(out, offset, err);
}


/* Packing straight into an sr_buf_t; a failed append is remembered. */

static int
sr_ipc_sink_write(void *data, const char *buf, size_t len)
{
    sr_ipc_sink_t  *sink;

    sink = data;

    if (sink->failed || sr_buf_append(sink->out, buf, len) != SR_OK) {
        sink->failed = 1;
        return -1;
    }

    return 0;
}


static void
sr_ipc_packer_init(msgpack_packer *pk, sr_ipc_sink_t *sink, sr_buf_t *out)
{
    sink->out = out;
    sink->failed = 0;

    msgpack_packer_init(pk, sink, sr_ipc_sink_write);
}


static int
sr_ipc_packer_done(sr_ipc_sink_t *sink, size_t start, sr_error_t *err)
{
    if (sink->failed) {
        sink->out->len = start;
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a body");
    }

    return SR_OK;
}


static void
sr_ipc_pack_str(msgpack_packer *pk, const char *s)
{
    if (s == NULL) {
        msgpack_pack_nil(pk);
        return;
    }

    msgpack_pack_str_with_body(pk, s, strlen(s));
}


static int
sr_ipc_unpack_map(const unsigned char *body, size_t len,
    msgpack_unpacked *result, const char *what, sr_error_t *err)
{
    size_t  off;
    int     rc;

    msgpack_unpacked_init(result);

    /* bounds msgpack-c's allocations by the body size (see the scan) */
    rc = sr_msgpack_scan(body, len, &off, err);
    if (rc != SR_OK) {
        return rc;
    }

    if (off != len) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s body has bytes after its map", what);
    }

    off = 0;
    rc = msgpack_unpack_next(result, (const char *) body, len, &off);

    if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a body");
    }

    if (rc != MSGPACK_UNPACK_SUCCESS || off != len) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s body is not one messagepack value", what);
    }

    if (result->data.type != MSGPACK_OBJECT_MAP) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "%s body is not a map",
                            what);
    }

    return SR_OK;
}


static int
sr_ipc_key_is(const msgpack_object *key, const char *name)
{
    size_t  n;

    n = strlen(name);

    return key->via.str.size == n && memcmp(key->via.str.ptr, name, n) == 0;
}


/*
 * Copies a string value into a new C string, replacing *out. Strings
 * with a NUL or invalid UTF-8 are refused: they would be cut short or
 * leak into JSON. A nil leaves NULL when nullable.
 */

static int
sr_ipc_get_str(const msgpack_object *o, int nullable, char **out,
    const char *what, sr_error_t *err)
{
    char  *s;

    if (o->type == MSGPACK_OBJECT_NIL && nullable) {
        free(*out);
        *out = NULL;
        return SR_OK;
    }

    if (o->type != MSGPACK_OBJECT_STR
        || memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL
        || !sr_utf8_valid((const unsigned char *) o->via.str.ptr,
                          o->via.str.size))
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "\"%s\" is not a utf-8 string", what);
    }

    s = malloc(o->via.str.size + 1);
    if (s == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a body");
    }

    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = '\0';

    free(*out);
    *out = s;

    return SR_OK;
}


int
sr_ipc_hello_encode(const sr_ipc_hello_t *hello, sr_buf_t *out,
    sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start;

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 3);
    sr_ipc_pack_str(&pk, "version");
    msgpack_pack_uint32(&pk, hello->version);
    sr_ipc_pack_str(&pk, "pid");
    msgpack_pack_int64(&pk, hello->pid);
    sr_ipc_pack_str(&pk, "node");
    sr_ipc_pack_str(&pk, hello->node);

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_hello_decode(const unsigned char *body, size_t len,
    sr_ipc_hello_t *hello, sr_error_t *err)
{
    msgpack_unpacked    result;
    msgpack_object_kv  *kv;
    uint32_t            i;
    int                 rc, have_version;

    memset(hello, 0, sizeof(*hello));
    have_version = 0;

    rc = sr_ipc_unpack_map(body, len, &result, "hello", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        kv = &result.data.via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");

        } else if (sr_ipc_key_is(&kv->key, "version")) {
            if (kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER
                || kv->val.via.u64 > UINT32_MAX)
            {
                rc = sr_error_set(err, SR_ERR_PROTOCOL,
                                  "\"version\" is not a u32");
            } else {
                hello->version = (uint32_t) kv->val.via.u64;
                have_version = 1;
            }

        } else if (sr_ipc_key_is(&kv->key, "pid")) {
            if (kv->val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
                hello->pid = kv->val.via.i64;

            } else if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER
                       && kv->val.via.u64 <= INT64_MAX)
            {
                hello->pid = (int64_t) kv->val.via.u64;

            } else {
                rc = sr_error_set(err, SR_ERR_PROTOCOL,
                                  "\"pid\" is not an integer");
            }

        } else if (sr_ipc_key_is(&kv->key, "node")) {
            rc = sr_ipc_get_str(&kv->val, 1, &hello->node, "node", err);
        }
    }

    if (rc == SR_OK && !have_version) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL, "hello without a version");
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_hello_clear(hello);
    }

    return rc;
}


void
sr_ipc_hello_clear(sr_ipc_hello_t *hello)
{
    free(hello->node);
    memset(hello, 0, sizeof(*hello));
}


int
sr_ipc_open_encode(const sr_ipc_open_t *open, sr_buf_t *out,
    sr_error_t *err)
{
    return sr_ipc_open_encode_token(open, NULL, out, err);
}


int
sr_ipc_open_encode_token(const sr_ipc_open_t *open, const char *token,
    sr_buf_t *out, sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start;
    int             rc;

    if (open->hub == NULL
        || (open->protocol != SR_PROTOCOL_JSON
            && open->protocol != SR_PROTOCOL_MSGPACK)
        || (open->claims != NULL && !json_is_object(open->claims)))
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "open needs a hub, a protocol and object claims");
    }

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, token ? 6 : 5);

    if (token) {
        sr_ipc_pack_str(&pk, "token");
        sr_ipc_pack_str(&pk, token);
    }

    sr_ipc_pack_str(&pk, "hub");
    sr_ipc_pack_str(&pk, open->hub);
    sr_ipc_pack_str(&pk, "user");
    sr_ipc_pack_str(&pk, open->user);
    sr_ipc_pack_str(&pk, "protocol");
    sr_ipc_pack_str(&pk, open->protocol == SR_PROTOCOL_JSON
                         ? "json" : "messagepack");
    sr_ipc_pack_str(&pk, "transport");
    sr_ipc_pack_str(&pk, open->transport);
    sr_ipc_pack_str(&pk, "claims");

    if (open->claims == NULL) {
        msgpack_pack_nil(&pk);
        rc = SR_OK;

    } else {
        rc = sr_msgpack_pack_json(&pk, open->claims, err);
    }

    if (rc != SR_OK) {
        out->len = start;
        return rc;
    }

    return sr_ipc_packer_done(&sink, start, err);
}


/* The protocol travels by the name the SignalR handshake uses. */

static int
sr_ipc_get_protocol(const msgpack_object *o, sr_protocol_t *protocol,
    sr_error_t *err)
{
    if (o->type == MSGPACK_OBJECT_STR && sr_ipc_key_is(o, "json")) {
        *protocol = SR_PROTOCOL_JSON;
        return SR_OK;
    }

    if (o->type == MSGPACK_OBJECT_STR && sr_ipc_key_is(o, "messagepack")) {
        *protocol = SR_PROTOCOL_MSGPACK;
        return SR_OK;
    }

    return sr_error_set(err, SR_ERR_PROTOCOL,
                        "\"protocol\" is not \"json\" or \"messagepack\"");
}


static int
sr_ipc_open_field(const msgpack_object_kv *kv, sr_ipc_open_t *open,
    sr_error_t *err)
{
    json_t  *claims;
    int      rc;

    if (kv->key.type != MSGPACK_OBJECT_STR) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");
    }

    if (sr_ipc_key_is(&kv->key, "hub")) {
        return sr_ipc_get_str(&kv->val, 0, &open->hub, "hub", err);
    }

    if (sr_ipc_key_is(&kv->key, "user")) {
        return sr_ipc_get_str(&kv->val, 1, &open->user, "user", err);
    }

    if (sr_ipc_key_is(&kv->key, "transport")) {
        return sr_ipc_get_str(&kv->val, 1, &open->transport, "transport",
                              err);
    }

    if (sr_ipc_key_is(&kv->key, "protocol")) {
        return sr_ipc_get_protocol(&kv->val, &open->protocol, err);
    }

    if (sr_ipc_key_is(&kv->key, "claims")) {
        claims = NULL;

        if (kv->val.type == MSGPACK_OBJECT_MAP) {
            rc = sr_msgpack_to_json(&kv->val, &claims, err);
            if (rc == SR_ERR_NOMEM) {
                return rc;
            }

            if (rc != SR_OK) {
                return sr_error_set(err, SR_ERR_PROTOCOL,
                                    "\"claims\" not convertible to json");
            }

        } else if (kv->val.type != MSGPACK_OBJECT_NIL) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "\"claims\" is not a map");
        }

        json_decref(open->claims);
        open->claims = claims;
    }

    return SR_OK;
}


int
sr_ipc_open_decode(const unsigned char *body, size_t len,
    sr_ipc_open_t *open, sr_error_t *err)
{
    msgpack_unpacked  result;
    uint32_t          i;
    int               rc;

    memset(open, 0, sizeof(*open));

    /* out of range until seen: a protocol is required, like the hub */
    open->protocol = (sr_protocol_t) SR_PROTOCOL_COUNT;

    rc = sr_ipc_unpack_map(body, len, &result, "open", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        rc = sr_ipc_open_field(&result.data.via.map.ptr[i], open, err);
    }

    if (rc == SR_OK
        && (open->hub == NULL
            || open->protocol == (sr_protocol_t) SR_PROTOCOL_COUNT))
    {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "open without a hub or a protocol");
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_open_clear(open);
    }

    return rc;
}


void
sr_ipc_open_clear(sr_ipc_open_t *open)
{
    free(open->hub);
    free(open->user);
    free(open->transport);
    json_decref(open->claims);

    memset(open, 0, sizeof(*open));
}


int
sr_ipc_close_encode(const sr_ipc_close_t *close, sr_buf_t *out,
    sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start;

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 2);
    sr_ipc_pack_str(&pk, "error");
    sr_ipc_pack_str(&pk, close->error);
    sr_ipc_pack_str(&pk, "allowReconnect");

    if (close->allow_reconnect) {
        msgpack_pack_true(&pk);

    } else {
        msgpack_pack_false(&pk);
    }

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_close_decode(const unsigned char *body, size_t len,
    sr_ipc_close_t *close, sr_error_t *err)
{
    msgpack_unpacked    result;
    msgpack_object_kv  *kv;
    uint32_t            i;
    int                 rc;

    memset(close, 0, sizeof(*close));

    rc = sr_ipc_unpack_map(body, len, &result, "close", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        kv = &result.data.via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");

        } else if (sr_ipc_key_is(&kv->key, "error")) {
            rc = sr_ipc_get_str(&kv->val, 1, &close->error, "error", err);

        } else if (sr_ipc_key_is(&kv->key, "allowReconnect")) {
            if (kv->val.type != MSGPACK_OBJECT_BOOLEAN) {
                rc = sr_error_set(err, SR_ERR_PROTOCOL,
                                  "\"allowReconnect\" is not a boolean");
            } else {
                close->allow_reconnect = kv->val.via.boolean;
            }
        }
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_close_clear(close);
    }

    return rc;
}


void
sr_ipc_close_clear(sr_ipc_close_t *close)
{
    free(close->error);
    memset(close, 0, sizeof(*close));
}


int
sr_ipc_multicast_begin(sr_buf_t *out, const char *const *ids,
    const size_t *id_lens, size_t count, size_t *offset, sr_error_t *err)
{
    size_t  i;
    int     rc;

    if (count > SR_IPC_MAX_IDS) {
        return sr_error_set(err, SR_ERR_INVALID,
                            "multicast to more than %d connections",
                            SR_IPC_MAX_IDS);
    }

    for (i = 0; i < count; i++) {
        if (id_lens[i] == 0 || id_lens[i] > SR_IPC_MAX_CONN_ID
            || !sr_ipc_id_valid(ids[i], id_lens[i]))
        {
            return sr_error_set(err, SR_ERR_INVALID,
                                "multicast connection id %zu is empty, "
                                "too long or not printable ascii", i);
        }
    }

    rc = sr_ipc_begin(out, SR_IPC_MULTICAST, NULL, 0, offset, err);
    if (rc != SR_OK) {
        return rc;
    }

    rc = sr_buf_append_byte(out, (unsigned char) (count >> 8));

    if (rc == SR_OK) {
        rc = sr_buf_append_byte(out, (unsigned char) count);
    }

    for (i = 0; rc == SR_OK && i < count; i++) {
        rc = sr_buf_append_byte(out, (unsigned char) id_lens[i]);

        if (rc == SR_OK) {
            rc = sr_buf_append(out, ids[i], id_lens[i]);
        }
    }

    if (rc != SR_OK) {
        out->len = *offset;
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a frame");
    }

    return SR_OK;
}


int
sr_ipc_multicast_parse(const unsigned char *body, size_t len,
    sr_ipc_id_iter_t *ids, const unsigned char **message,
    size_t *message_len, sr_error_t *err)
{
    size_t  count, pos, i, id_len;

    if (len < 2) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "multicast body without a count");
    }

    count = (size_t) body[0] << 8 | body[1];
    pos = 2;

    for (i = 0; i < count; i++) {
        if (pos == len) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "multicast id list truncated");
        }

        id_len = body[pos];

        if (id_len == 0 || id_len > len - pos - 1
            || !sr_ipc_id_valid((const char *) body + pos + 1, id_len))
        {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "multicast connection id %zu is empty, "
                                "truncated or not printable ascii", i);
        }

        pos += 1 + id_len;
    }

    if (pos == len) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "multicast without a hub message");
    }

    ids->next = body + 2;
    ids->left = count;
    *message = body + pos;
    *message_len = len - pos;

    return SR_OK;
}


int
sr_ipc_multicast_next(sr_ipc_id_iter_t *ids, const char **id,
    size_t *id_len)
{
    if (ids->left == 0) {
        return 0;
    }

    *id_len = ids->next[0];
    *id = (const char *) ids->next + 1;

    ids->next += 1 + *id_len;
    ids->left--;

    return 1;
}


int
sr_ipc_relay_write(sr_buf_t *out, sr_ipc_type_t type, const char *conn_id,
    size_t conn_id_len, const sr_ipc_relay_t *relay, sr_error_t *err)
{
    int             rc;
    size_t          offset;
    unsigned char   head[SR_IPC_RELAY_HEADER];

    if ((type != SR_IPC_FORWARD && type != SR_IPC_FORWARDED)
        || conn_id_len == 0)
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "relay frame of type %d or without an id",
                            (int) type);
    }

    rc = sr_ipc_begin(out, type, conn_id, conn_id_len, &offset, err);
    if (rc != SR_OK) {
        return rc;
    }

    sr_ipc_put32(head, relay->pid);
    sr_ipc_put32(head + 4, relay->seq);
    head[8] = (unsigned char) (relay->code >> 8);
    head[9] = (unsigned char) relay->code;
    head[10] = relay->flags;

    if (sr_buf_append(out, head, sizeof(head)) != SR_OK
        || (relay->data_len
            && sr_buf_append(out, relay->data, relay->data_len) != SR_OK))
    {
        out->len = offset;
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory for a frame");
    }

    return sr_ipc_end(out, offset, err);
}


int
sr_ipc_relay_parse(const unsigned char *body, size_t len,
    sr_ipc_relay_t *relay, sr_error_t *err)
{
    if (len < SR_IPC_RELAY_HEADER) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "relay body of %zu bytes is shorter than its "
                            "header", len);
    }

    relay->pid = sr_ipc_get32(body);
    relay->seq = sr_ipc_get32(body + 4);
    relay->code = (uint16_t) (body[8] << 8 | body[9]);
    relay->flags = body[10];
    relay->data = body + SR_IPC_RELAY_HEADER;
    relay->data_len = len - SR_IPC_RELAY_HEADER;

    return SR_OK;
}


/* Stateful reconnect bodies (docs/ipc.md, "Parking"). */

static int
sr_ipc_get_uint(const msgpack_object *o, uint64_t *out, const char *what,
    sr_error_t *err)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "\"%s\" is not an unsigned integer", what);
    }

    *out = o->via.u64;

    return SR_OK;
}


static int
sr_ipc_get_bin(const msgpack_object *o, sr_ipc_bytes_t *out,
    const char *what, sr_error_t *err)
{
    if (o->type != MSGPACK_OBJECT_BIN) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "\"%s\" is not bin", what);
    }

    out->data = (const unsigned char *) o->via.bin.ptr;
    out->len = o->via.bin.size;

    return SR_OK;
}


/* An array of bin as an owned array of pointers into the body. */

static int
sr_ipc_get_bin_array(const msgpack_object *o, sr_ipc_bytes_t **out,
    size_t *count, const char *what, sr_error_t *err)
{
    sr_ipc_bytes_t  *items;
    uint32_t         i;
    int              rc;

    if (o->type != MSGPACK_OBJECT_ARRAY) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "\"%s\" is not an array",
                            what);
    }

    items = NULL;

    if (o->via.array.size > 0) {
        items = calloc(o->via.array.size, sizeof(sr_ipc_bytes_t));
        if (items == NULL) {
            return sr_error_set(err, SR_ERR_NOMEM,
                                "out of memory for a body");
        }
    }

    for (i = 0; i < o->via.array.size; i++) {
        rc = sr_ipc_get_bin(&o->via.array.ptr[i], &items[i], what, err);
        if (rc != SR_OK) {
            free(items);
            return rc;
        }
    }

    free(*out);
    *out = items;
    *count = o->via.array.size;

    return SR_OK;
}


static void
sr_ipc_free_strs(char **strs, size_t count)
{
    size_t  i;

    for (i = 0; strs != NULL && i < count; i++) {
        free(strs[i]);
    }

    free(strs);
}


static int
sr_ipc_get_str_array(const msgpack_object *o, char ***out, size_t *count,
    const char *what, sr_error_t *err)
{
    char      **strs;
    uint32_t    i;
    int         rc;

    if (o->type != MSGPACK_OBJECT_ARRAY) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "\"%s\" is not an array",
                            what);
    }

    strs = NULL;

    if (o->via.array.size > 0) {
        strs = calloc(o->via.array.size, sizeof(char *));
        if (strs == NULL) {
            return sr_error_set(err, SR_ERR_NOMEM,
                                "out of memory for a body");
        }
    }

    for (i = 0; i < o->via.array.size; i++) {
        rc = sr_ipc_get_str(&o->via.array.ptr[i], 0, &strs[i], what, err);
        if (rc != SR_OK) {
            sr_ipc_free_strs(strs, o->via.array.size);
            return rc;
        }
    }

    sr_ipc_free_strs(*out, *count);
    *out = strs;
    *count = o->via.array.size;

    return SR_OK;
}


static void
sr_ipc_pack_bin(msgpack_packer *pk, const unsigned char *data, size_t len)
{
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, data, len);
}


int
sr_ipc_detach_encode(const sr_ipc_detach_t *detach, sr_buf_t *out,
    sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start;

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 2);
    sr_ipc_pack_str(&pk, "window_ms");
    msgpack_pack_uint64(&pk, detach->window_ms);
    sr_ipc_pack_str(&pk, "buffer_bytes");
    msgpack_pack_uint64(&pk, detach->buffer_bytes);

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_detach_decode(const unsigned char *body, size_t len,
    sr_ipc_detach_t *detach, sr_error_t *err)
{
    msgpack_unpacked    result;
    msgpack_object_kv  *kv;
    uint32_t            i;
    int                 rc, seen;

    memset(detach, 0, sizeof(*detach));
    seen = 0;

    rc = sr_ipc_unpack_map(body, len, &result, "detach", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        kv = &result.data.via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");

        } else if (sr_ipc_key_is(&kv->key, "window_ms")) {
            rc = sr_ipc_get_uint(&kv->val, &detach->window_ms, "window_ms",
                                 err);
            seen |= 1;

        } else if (sr_ipc_key_is(&kv->key, "buffer_bytes")) {
            rc = sr_ipc_get_uint(&kv->val, &detach->buffer_bytes,
                                 "buffer_bytes", err);
            seen |= 2;
        }
    }

    if (rc == SR_OK && seen != 3) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "detach without window_ms or buffer_bytes");
    }

    msgpack_unpacked_destroy(&result);

    return rc;
}


/* 1 when the buffer's lengths add up to buffer_size. */

static int
sr_ipc_state_sum_ok(const sr_ipc_state_t *state)
{
    uint64_t  sum;
    size_t    i;

    sum = 0;

    for (i = 0; i < state->buffer_count; i++) {
        sum += state->buffer[i].len;
    }

    return sum == state->buffer_size;
}


static void
sr_ipc_state_pack_who(msgpack_packer *pk, const sr_ipc_state_t *state)
{
    sr_ipc_pack_str(pk, "token");
    sr_ipc_pack_str(pk, state->token);
    sr_ipc_pack_str(pk, "hub");
    sr_ipc_pack_str(pk, state->who.hub);
    sr_ipc_pack_str(pk, "user");
    sr_ipc_pack_str(pk, state->who.user);
    sr_ipc_pack_str(pk, "protocol");
    sr_ipc_pack_str(pk, state->who.protocol == SR_PROTOCOL_JSON
                        ? "json" : "messagepack");
    sr_ipc_pack_str(pk, "transport");
    sr_ipc_pack_str(pk, state->who.transport);
}


static void
sr_ipc_state_pack_rest(msgpack_packer *pk, const sr_ipc_state_t *state)
{
    size_t  i;

    sr_ipc_pack_str(pk, "received");
    msgpack_pack_uint64(pk, state->received);
    sr_ipc_pack_str(pk, "first");
    msgpack_pack_uint64(pk, state->first);
    sr_ipc_pack_str(pk, "buffer");
    msgpack_pack_array(pk, state->buffer_count);

    for (i = 0; i < state->buffer_count; i++) {
        sr_ipc_pack_bin(pk, state->buffer[i].data, state->buffer[i].len);
    }

    sr_ipc_pack_str(pk, "buffer_size");
    msgpack_pack_uint64(pk, state->buffer_size);
    sr_ipc_pack_str(pk, "window_ms");
    msgpack_pack_uint64(pk, state->window_ms);
    sr_ipc_pack_str(pk, "buffer_bytes");
    msgpack_pack_uint64(pk, state->buffer_bytes);
    sr_ipc_pack_str(pk, "pending");
    msgpack_pack_array(pk, state->pending_count);

    for (i = 0; i < state->pending_count; i++) {
        sr_ipc_pack_str(pk, state->pending[i]);
    }

    sr_ipc_pack_str(pk, "exp");

    if (state->has_exp) {
        msgpack_pack_int64(pk, state->exp);

    } else {
        msgpack_pack_nil(pk);
    }

    sr_ipc_pack_str(pk, "ext");

    if (state->ext.data != NULL) {
        sr_ipc_pack_bin(pk, state->ext.data, state->ext.len);

    } else {
        msgpack_pack_nil(pk);
    }
}


int
sr_ipc_state_encode(const sr_ipc_state_t *state, sr_buf_t *out,
    sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start, i;
    int             rc;

    for (i = 0; i < state->pending_count; i++) {
        if (state->pending[i] == NULL) {
            return sr_error_set(err, SR_ERR_INVALID,
                                "state with a null pending id");
        }
    }

    if (state->token == NULL || state->who.hub == NULL
        || (state->who.protocol != SR_PROTOCOL_JSON
            && state->who.protocol != SR_PROTOCOL_MSGPACK)
        || (state->who.claims != NULL && !json_is_object(state->who.claims))
        || !sr_ipc_state_sum_ok(state))
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "state needs a token, a hub, a protocol, "
                            "object claims and a buffer_size that is the "
                            "sum of its buffer");
    }

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 15);
    sr_ipc_state_pack_who(&pk, state);
    sr_ipc_pack_str(&pk, "claims");

    if (state->who.claims == NULL) {
        msgpack_pack_nil(&pk);
        rc = SR_OK;

    } else {
        rc = sr_msgpack_pack_json(&pk, state->who.claims, err);
    }

    if (rc != SR_OK) {
        out->len = start;
        return rc;
    }

    sr_ipc_state_pack_rest(&pk, state);

    return sr_ipc_packer_done(&sink, start, err);
}


static int
sr_ipc_state_exp(const msgpack_object *o, sr_ipc_state_t *state,
    sr_error_t *err)
{
    if (o->type == MSGPACK_OBJECT_NIL) {
        state->has_exp = 0;
        return SR_OK;
    }

    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        state->exp = o->via.i64;

    } else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER
               && o->via.u64 <= INT64_MAX)
    {
        state->exp = (int64_t) o->via.u64;

    } else {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "\"exp\" is not an integer or nil");
    }

    state->has_exp = 1;

    return SR_OK;
}


/* Sets a bit of *seen for each required key. */

static int
sr_ipc_state_field(const msgpack_object_kv *kv, sr_ipc_state_t *state,
    unsigned *seen, sr_error_t *err)
{
    const msgpack_object  *v;

    v = &kv->val;

    if (kv->key.type != MSGPACK_OBJECT_STR) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");
    }

    if (sr_ipc_key_is(&kv->key, "token")) {
        *seen |= 1;
        return sr_ipc_get_str(v, 0, &state->token, "token", err);
    }

    if (sr_ipc_key_is(&kv->key, "received")) {
        return sr_ipc_get_uint(v, &state->received, "received", err);
    }

    if (sr_ipc_key_is(&kv->key, "first")) {
        *seen |= 2;
        return sr_ipc_get_uint(v, &state->first, "first", err);
    }

    if (sr_ipc_key_is(&kv->key, "buffer")) {
        return sr_ipc_get_bin_array(v, &state->buffer, &state->buffer_count,
                                    "buffer", err);
    }

    if (sr_ipc_key_is(&kv->key, "buffer_size")) {
        *seen |= 4;
        return sr_ipc_get_uint(v, &state->buffer_size, "buffer_size", err);
    }

    if (sr_ipc_key_is(&kv->key, "window_ms")) {
        return sr_ipc_get_uint(v, &state->window_ms, "window_ms", err);
    }

    if (sr_ipc_key_is(&kv->key, "buffer_bytes")) {
        return sr_ipc_get_uint(v, &state->buffer_bytes, "buffer_bytes", err);
    }

    if (sr_ipc_key_is(&kv->key, "pending")) {
        return sr_ipc_get_str_array(v, &state->pending,
                                    &state->pending_count, "pending", err);
    }

    if (sr_ipc_key_is(&kv->key, "exp")) {
        return sr_ipc_state_exp(v, state, err);
    }

    if (sr_ipc_key_is(&kv->key, "ext")) {
        if (v->type == MSGPACK_OBJECT_NIL) {
            state->ext.data = NULL;
            state->ext.len = 0;
            return SR_OK;
        }

        return sr_ipc_get_bin(v, &state->ext, "ext", err);
    }

    /* hub, user, protocol, transport, claims; unknown keys pass */
    return sr_ipc_open_field(kv, &state->who, err);
}


int
sr_ipc_state_decode(const unsigned char *body, size_t len,
    sr_ipc_state_t *state, sr_error_t *err)
{
    msgpack_unpacked  result;
    uint32_t          i;
    unsigned          seen;
    int               rc;

    memset(state, 0, sizeof(*state));
    state->who.protocol = (sr_protocol_t) SR_PROTOCOL_COUNT;
    seen = 0;

    rc = sr_ipc_unpack_map(body, len, &result, "park", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        rc = sr_ipc_state_field(&result.data.via.map.ptr[i], state, &seen,
                                err);
    }

    if (rc == SR_OK
        && (seen != 7 || state->who.hub == NULL
            || state->who.protocol == (sr_protocol_t) SR_PROTOCOL_COUNT))
    {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "park without token, hub, protocol, first or "
                          "buffer_size");
    }

    if (rc == SR_OK && !sr_ipc_state_sum_ok(state)) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "park buffer_size is not the sum of its buffer");
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_state_clear(state);
    }

    return rc;
}


void
sr_ipc_state_clear(sr_ipc_state_t *state)
{
    free(state->token);
    sr_ipc_open_clear(&state->who);
    free(state->buffer);
    sr_ipc_free_strs(state->pending, state->pending_count);

    memset(state, 0, sizeof(*state));
}


int
sr_ipc_resume_encode(const sr_ipc_resume_t *resume, sr_buf_t *out,
    sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start;

    if (resume->token == NULL) {
        return sr_error_set(err, SR_ERR_INVALID, "resume needs a token");
    }

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 2);
    sr_ipc_pack_str(&pk, "token");
    sr_ipc_pack_str(&pk, resume->token);
    sr_ipc_pack_str(&pk, "ref");
    msgpack_pack_uint64(&pk, resume->ref);

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_resume_decode(const unsigned char *body, size_t len,
    sr_ipc_resume_t *resume, sr_error_t *err)
{
    msgpack_unpacked    result;
    msgpack_object_kv  *kv;
    uint32_t            i;
    int                 rc, seen;

    memset(resume, 0, sizeof(*resume));
    seen = 0;

    rc = sr_ipc_unpack_map(body, len, &result, "resume", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        kv = &result.data.via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");

        } else if (sr_ipc_key_is(&kv->key, "token")) {
            rc = sr_ipc_get_str(&kv->val, 0, &resume->token, "token", err);

        } else if (sr_ipc_key_is(&kv->key, "ref")) {
            rc = sr_ipc_get_uint(&kv->val, &resume->ref, "ref", err);
            seen = 1;
        }
    }

    if (rc == SR_OK && (resume->token == NULL || !seen)) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "resume without a token or a ref");
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_resume_clear(resume);
    }

    return rc;
}


void
sr_ipc_resume_clear(sr_ipc_resume_t *resume)
{
    free(resume->token);
    memset(resume, 0, sizeof(*resume));
}


int
sr_ipc_adopt_encode(const sr_ipc_adopt_t *adopt, sr_buf_t *out,
    sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start, i;

    if (adopt->state.data == NULL || adopt->state.len == 0) {
        return sr_error_set(err, SR_ERR_INVALID, "adopt needs a state");
    }

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 3);
    sr_ipc_pack_str(&pk, "ref");
    msgpack_pack_uint64(&pk, adopt->ref);
    sr_ipc_pack_str(&pk, "state");
    sr_ipc_pack_bin(&pk, adopt->state.data, adopt->state.len);
    sr_ipc_pack_str(&pk, "appended");
    msgpack_pack_array(&pk, adopt->appended_count);

    for (i = 0; i < adopt->appended_count; i++) {
        sr_ipc_pack_bin(&pk, adopt->appended[i].data,
                        adopt->appended[i].len);
    }

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_adopt_decode(const unsigned char *body, size_t len,
    sr_ipc_adopt_t *adopt, sr_error_t *err)
{
    msgpack_unpacked    result;
    msgpack_object_kv  *kv;
    uint32_t            i;
    int                 rc, seen;

    memset(adopt, 0, sizeof(*adopt));
    seen = 0;

    rc = sr_ipc_unpack_map(body, len, &result, "adopt", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        kv = &result.data.via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");

        } else if (sr_ipc_key_is(&kv->key, "ref")) {
            rc = sr_ipc_get_uint(&kv->val, &adopt->ref, "ref", err);
            seen |= 1;

        } else if (sr_ipc_key_is(&kv->key, "state")) {
            rc = sr_ipc_get_bin(&kv->val, &adopt->state, "state", err);
            seen |= 2;

        } else if (sr_ipc_key_is(&kv->key, "appended")) {
            rc = sr_ipc_get_bin_array(&kv->val, &adopt->appended,
                                      &adopt->appended_count, "appended",
                                      err);
        }
    }

    if (rc == SR_OK && seen != 3) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "adopt without a ref or a state");
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_adopt_clear(adopt);
    }

    return rc;
}


void
sr_ipc_adopt_clear(sr_ipc_adopt_t *adopt)
{
    free(adopt->appended);
    memset(adopt, 0, sizeof(*adopt));
}


int
sr_ipc_resume_failed_encode(const sr_ipc_resume_failed_t *failed,
    sr_buf_t *out, sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start;

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, 2);
    sr_ipc_pack_str(&pk, "ref");
    msgpack_pack_uint64(&pk, failed->ref);
    sr_ipc_pack_str(&pk, "reason");
    sr_ipc_pack_str(&pk, failed->reason);

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_resume_failed_decode(const unsigned char *body, size_t len,
    sr_ipc_resume_failed_t *failed, sr_error_t *err)
{
    msgpack_unpacked    result;
    msgpack_object_kv  *kv;
    uint32_t            i;
    int                 rc, seen;

    memset(failed, 0, sizeof(*failed));
    seen = 0;

    rc = sr_ipc_unpack_map(body, len, &result, "resume_failed", err);

    for (i = 0; rc == SR_OK && i < result.data.via.map.size; i++) {
        kv = &result.data.via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = sr_error_set(err, SR_ERR_PROTOCOL, "map key not a string");

        } else if (sr_ipc_key_is(&kv->key, "ref")) {
            rc = sr_ipc_get_uint(&kv->val, &failed->ref, "ref", err);
            seen = 1;

        } else if (sr_ipc_key_is(&kv->key, "reason")) {
            rc = sr_ipc_get_str(&kv->val, 1, &failed->reason, "reason",
                                err);
        }
    }

    if (rc == SR_OK && !seen) {
        rc = sr_error_set(err, SR_ERR_PROTOCOL, "resume_failed without a ref");
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_resume_failed_clear(failed);
    }

    return rc;
}


void
sr_ipc_resume_failed_clear(sr_ipc_resume_failed_t *failed)
{
    free(failed->reason);
    memset(failed, 0, sizeof(*failed));
}
