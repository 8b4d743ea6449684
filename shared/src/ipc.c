/*
 * The worker-daemon frame format (docs/ipc.md) and its MessagePack
 * bodies. Parsing never copies: frames point into the caller's buffer.
 *
 * Design note: every map body is described by a static field table
 * rather than by its own decode loop and encoder. A row names the key,
 * the kind of value (what the wire may carry and which C type holds
 * it), the offset of that member in the body's struct, for arrays and
 * "or nil" integers the offset of the count or of the has-flag, and
 * whether the key is required. One decoder walks the map: a key that
 * is not a string is refused, an unknown key is skipped (newer peers
 * may add keys), a known key whose value has the wrong kind is refused
 * with the body and the key named, and a repeated key replaces the
 * earlier value, freeing it. Afterwards the first required key not
 * seen is named. One encoder packs the rows in table order, so the
 * table order is the wire order. What a table cannot say stays beside
 * the body's functions: the checks an encoder makes on its input and
 * PARK's buffer_size sum.
 *
 * msgpack-c has no schema layer for C, so the table is ours; its
 * object tree (after sr_msgpack_scan() has bounded it) does the parsing.
 */

#include <stddef.h>
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


/* The kinds of value a body key may hold, and the C member for each. */

typedef enum {
    SR_IPC_U32,             /* uint32_t */
    SR_IPC_U64,             /* uint64_t */
    SR_IPC_INT,             /* int64_t */
    SR_IPC_INT_OR_NIL,      /* int64_t, aux: int set to 1 unless nil */
    SR_IPC_BOOL,            /* int */
    SR_IPC_STR,             /* char *, owned */
    SR_IPC_STR_OR_NIL,      /* char *, owned, NULL for nil */
    SR_IPC_PROTOCOL,        /* sr_protocol_t, by its handshake name */
    SR_IPC_JSON_MAP,        /* json_t *, owned object, NULL for nil */
    SR_IPC_BIN,             /* sr_ipc_bytes_t into the body */
    SR_IPC_BIN_OR_NIL,      /* sr_ipc_bytes_t, data NULL for nil */
    SR_IPC_BIN_ARRAY,       /* sr_ipc_bytes_t *, owned, aux: size_t */
    SR_IPC_STR_ARRAY        /* char **, owned, aux: size_t */
} sr_ipc_kind_t;


typedef struct {
    const char     *key;
    sr_ipc_kind_t   kind;
    size_t          offset;
    size_t          aux;
    unsigned        required;
} sr_ipc_field_t;


typedef struct {
    const char            *name;     /* in error messages */
    const sr_ipc_field_t  *fields;
    size_t                 nfields;  /* at most 32: a bit each */
    size_t                 size;
} sr_ipc_body_t;


#define SR_IPC_KEY(type, key, kind, member, required)                      \
    { key, kind, offsetof(type, member), 0, required }

#define SR_IPC_KEY_AUX(type, key, kind, member, aux, required)             \
    { key, kind, offsetof(type, member), offsetof(type, aux), required }

#define SR_IPC_BODY(name, type, fields)                                    \
    { name, fields, sizeof(fields) / sizeof(fields[0]), sizeof(type) }

/* OPEN's keys, in a struct of their own or in PARK's "who" member */

#define SR_IPC_WHO_KEYS(type, in)                                          \
    SR_IPC_KEY(type, "hub", SR_IPC_STR, in hub, 1),                        \
    SR_IPC_KEY(type, "user", SR_IPC_STR_OR_NIL, in user, 0),               \
    SR_IPC_KEY(type, "protocol", SR_IPC_PROTOCOL, in protocol, 1),         \
    SR_IPC_KEY(type, "transport", SR_IPC_STR_OR_NIL, in transport, 0),     \
    SR_IPC_KEY(type, "claims", SR_IPC_JSON_MAP, in claims, 0)

/* what each kind expects, for "<body> \"<key>\" is not ..." */

static const char  *sr_ipc_kind_text[] = {
    [SR_IPC_U32] = "a u32",
    [SR_IPC_U64] = "an unsigned integer",
    [SR_IPC_INT] = "an integer",
    [SR_IPC_INT_OR_NIL] = "an integer or nil",
    [SR_IPC_BOOL] = "a boolean",
    [SR_IPC_STR] = "a utf-8 string",
    [SR_IPC_STR_OR_NIL] = "a utf-8 string or nil",
    [SR_IPC_PROTOCOL] = "\"json\" or \"messagepack\"",
    [SR_IPC_JSON_MAP] = "a map convertible to json, or nil",
    [SR_IPC_BIN] = "bin",
    [SR_IPC_BIN_OR_NIL] = "bin or nil",
    [SR_IPC_BIN_ARRAY] = "an array of bin",
    [SR_IPC_STR_ARRAY] = "an array of utf-8 strings"
};


static const sr_ipc_field_t  sr_ipc_hello_fields[] = {
    SR_IPC_KEY(sr_ipc_hello_t, "version", SR_IPC_U32, version, 1),
    SR_IPC_KEY(sr_ipc_hello_t, "pid", SR_IPC_INT, pid, 0),
    SR_IPC_KEY(sr_ipc_hello_t, "node", SR_IPC_STR_OR_NIL, node, 0)
};

static const sr_ipc_field_t  sr_ipc_open_fields[] = {
    SR_IPC_WHO_KEYS(sr_ipc_open_t, )
};

static const sr_ipc_field_t  sr_ipc_close_fields[] = {
    SR_IPC_KEY(sr_ipc_close_t, "error", SR_IPC_STR_OR_NIL, error, 0),
    SR_IPC_KEY(sr_ipc_close_t, "allowReconnect", SR_IPC_BOOL,
               allow_reconnect, 0)
};

static const sr_ipc_field_t  sr_ipc_detach_fields[] = {
    SR_IPC_KEY(sr_ipc_detach_t, "window_ms", SR_IPC_U64, window_ms, 1),
    SR_IPC_KEY(sr_ipc_detach_t, "buffer_bytes", SR_IPC_U64, buffer_bytes,
               1)
};

/* token and the OPEN keys first: OPEN with a token is their prefix */

static const sr_ipc_field_t  sr_ipc_state_fields[] = {
    SR_IPC_KEY(sr_ipc_state_t, "token", SR_IPC_STR, token, 1),
    SR_IPC_WHO_KEYS(sr_ipc_state_t, who.),
    SR_IPC_KEY(sr_ipc_state_t, "received", SR_IPC_U64, received, 0),
    SR_IPC_KEY(sr_ipc_state_t, "first", SR_IPC_U64, first, 1),
    SR_IPC_KEY_AUX(sr_ipc_state_t, "buffer", SR_IPC_BIN_ARRAY, buffer,
                   buffer_count, 0),
    SR_IPC_KEY(sr_ipc_state_t, "buffer_size", SR_IPC_U64, buffer_size, 1),
    SR_IPC_KEY(sr_ipc_state_t, "window_ms", SR_IPC_U64, window_ms, 0),
    SR_IPC_KEY(sr_ipc_state_t, "buffer_bytes", SR_IPC_U64, buffer_bytes,
               0),
    SR_IPC_KEY_AUX(sr_ipc_state_t, "pending", SR_IPC_STR_ARRAY, pending,
                   pending_count, 0),
    SR_IPC_KEY_AUX(sr_ipc_state_t, "exp", SR_IPC_INT_OR_NIL, exp, has_exp,
                   0),
    SR_IPC_KEY(sr_ipc_state_t, "ext", SR_IPC_BIN_OR_NIL, ext, 0)
};

static const sr_ipc_field_t  sr_ipc_resume_fields[] = {
    SR_IPC_KEY(sr_ipc_resume_t, "token", SR_IPC_STR, token, 1),
    SR_IPC_KEY(sr_ipc_resume_t, "ref", SR_IPC_U64, ref, 1)
};

static const sr_ipc_field_t  sr_ipc_adopt_fields[] = {
    SR_IPC_KEY(sr_ipc_adopt_t, "ref", SR_IPC_U64, ref, 1),
    SR_IPC_KEY(sr_ipc_adopt_t, "state", SR_IPC_BIN, state, 1),
    SR_IPC_KEY_AUX(sr_ipc_adopt_t, "appended", SR_IPC_BIN_ARRAY, appended,
                   appended_count, 0)
};

static const sr_ipc_field_t  sr_ipc_resume_failed_fields[] = {
    SR_IPC_KEY(sr_ipc_resume_failed_t, "ref", SR_IPC_U64, ref, 1),
    SR_IPC_KEY(sr_ipc_resume_failed_t, "reason", SR_IPC_STR_OR_NIL,
               reason, 0)
};


static const sr_ipc_body_t  sr_ipc_hello_body =
    SR_IPC_BODY("hello", sr_ipc_hello_t, sr_ipc_hello_fields);
static const sr_ipc_body_t  sr_ipc_open_body =
    SR_IPC_BODY("open", sr_ipc_open_t, sr_ipc_open_fields);
static const sr_ipc_body_t  sr_ipc_close_body =
    SR_IPC_BODY("close", sr_ipc_close_t, sr_ipc_close_fields);
static const sr_ipc_body_t  sr_ipc_detach_body =
    SR_IPC_BODY("detach", sr_ipc_detach_t, sr_ipc_detach_fields);
static const sr_ipc_body_t  sr_ipc_state_body =
    SR_IPC_BODY("park", sr_ipc_state_t, sr_ipc_state_fields);
static const sr_ipc_body_t  sr_ipc_resume_body =
    SR_IPC_BODY("resume", sr_ipc_resume_t, sr_ipc_resume_fields);
static const sr_ipc_body_t  sr_ipc_adopt_body =
    SR_IPC_BODY("adopt", sr_ipc_adopt_t, sr_ipc_adopt_fields);
static const sr_ipc_body_t  sr_ipc_resume_failed_body =
    SR_IPC_BODY("resume_failed", sr_ipc_resume_failed_t,
                sr_ipc_resume_failed_fields);

/* encoding only: the first six rows of PARK, read from a state */
static const sr_ipc_body_t  sr_ipc_open_token_body =
    { "open", sr_ipc_state_fields, 6, sizeof(sr_ipc_state_t) };


static uint32_t sr_ipc_get32(const unsigned char *p);
static void sr_ipc_put32(unsigned char *p, uint32_t v);
static int sr_ipc_id_valid(const char *id, size_t len);
static int sr_ipc_sink_write(void *data, const char *buf, size_t len);
static void sr_ipc_packer_init(msgpack_packer *pk, sr_ipc_sink_t *sink,
    sr_buf_t *out);
static int sr_ipc_packer_done(sr_ipc_sink_t *sink, size_t start,
    sr_error_t *err);
static void sr_ipc_pack_str(msgpack_packer *pk, const char *s);
static void sr_ipc_pack_bin(msgpack_packer *pk, const unsigned char *data,
    size_t len);
static int sr_ipc_unpack_map(const unsigned char *body, size_t len,
    msgpack_unpacked *result, const char *what, sr_error_t *err);
static int sr_ipc_key_is(const msgpack_object *key, const char *name);
static int sr_ipc_copy_str(const msgpack_object *o, char **out);
static int sr_ipc_copy_str_array(const msgpack_object *o, char ***out,
    size_t *count);
static int sr_ipc_copy_bin_array(const msgpack_object *o,
    sr_ipc_bytes_t **out, size_t *count);
static void sr_ipc_free_strs(char **strs, size_t count);
static int sr_ipc_get_protocol(const msgpack_object *o,
    sr_protocol_t *protocol);
static int sr_ipc_get_json_map(const msgpack_object *o, json_t **out);
static int sr_ipc_get_number(const sr_ipc_field_t *f,
    const msgpack_object *o, char *base);
static int sr_ipc_get_field(const sr_ipc_field_t *f,
    const msgpack_object *o, char *base);
static const sr_ipc_field_t *sr_ipc_find_field(const sr_ipc_body_t *body,
    const msgpack_object *key, unsigned *index);
static int sr_ipc_body_fill(const sr_ipc_body_t *body,
    const msgpack_object *map, void *data, sr_error_t *err);
static int sr_ipc_body_decode(const sr_ipc_body_t *body,
    const unsigned char *buf, size_t len, void *data, sr_error_t *err);
static void sr_ipc_body_clear(const sr_ipc_body_t *body, void *data);
static void sr_ipc_pack_number(msgpack_packer *pk,
    const sr_ipc_field_t *f, const char *base);
static int sr_ipc_pack_field(msgpack_packer *pk, const sr_ipc_field_t *f,
    const char *base, sr_error_t *err);
static int sr_ipc_body_encode(const sr_ipc_body_t *body, const void *data,
    sr_buf_t *out, sr_error_t *err);
static int sr_ipc_state_sum_ok(const sr_ipc_state_t *state);


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




static void
sr_ipc_pack_bin(msgpack_packer *pk, const unsigned char *data, size_t len)
{
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, data, len);
}


/*
 * Copies a string value into a new C string, replacing *out. Strings
 * with a NUL or invalid UTF-8 are refused: they would be cut short or
 * leak into JSON. SR_ERR_PROTOCOL for the wrong kind of value.
 */

static int
sr_ipc_copy_str(const msgpack_object *o, char **out)
{
    char  *s;

    if (o->type != MSGPACK_OBJECT_STR
        || memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL
        || !sr_utf8_valid((const unsigned char *) o->via.str.ptr,
                          o->via.str.size))
    {
        return SR_ERR_PROTOCOL;
    }

    s = malloc(o->via.str.size + 1);
    if (s == NULL) {
        return SR_ERR_NOMEM;
    }

    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = '\0';

    free(*out);
    *out = s;

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
sr_ipc_copy_str_array(const msgpack_object *o, char ***out, size_t *count)
{
    char      **strs;
    uint32_t    i;
    int         rc;

    if (o->type != MSGPACK_OBJECT_ARRAY) {
        return SR_ERR_PROTOCOL;
    }

    strs = NULL;

    if (o->via.array.size > 0) {
        strs = calloc(o->via.array.size, sizeof(char *));
        if (strs == NULL) {
            return SR_ERR_NOMEM;
        }
    }

    for (i = 0; i < o->via.array.size; i++) {
        rc = sr_ipc_copy_str(&o->via.array.ptr[i], &strs[i]);
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


/* An array of bin as an owned array of pointers into the body. */

static int
sr_ipc_copy_bin_array(const msgpack_object *o, sr_ipc_bytes_t **out,
    size_t *count)
{
    const msgpack_object  *item;
    sr_ipc_bytes_t        *items;
    uint32_t               i;

    if (o->type != MSGPACK_OBJECT_ARRAY) {
        return SR_ERR_PROTOCOL;
    }

    for (i = 0; i < o->via.array.size; i++) {
        if (o->via.array.ptr[i].type != MSGPACK_OBJECT_BIN) {
            return SR_ERR_PROTOCOL;
        }
    }

    items = NULL;

    if (o->via.array.size > 0) {
        items = calloc(o->via.array.size, sizeof(sr_ipc_bytes_t));
        if (items == NULL) {
            return SR_ERR_NOMEM;
        }
    }

    for (i = 0; i < o->via.array.size; i++) {
        item = &o->via.array.ptr[i];
        items[i].data = (const unsigned char *) item->via.bin.ptr;
        items[i].len = item->via.bin.size;
    }

    free(*out);
    *out = items;
    *count = o->via.array.size;

    return SR_OK;
}


/* The integer and boolean kinds; SR_ERR_PROTOCOL for a wrong value. */

static int
sr_ipc_get_number(const sr_ipc_field_t *f, const msgpack_object *o,
    char *base)
{
    char     *p;
    int64_t   v;

    p = base + f->offset;

    if (f->kind == SR_IPC_INT_OR_NIL && o->type == MSGPACK_OBJECT_NIL) {
        *(int *) (base + f->aux) = 0;
        return SR_OK;
    }

    if (f->kind == SR_IPC_BOOL) {
        if (o->type != MSGPACK_OBJECT_BOOLEAN) {
            return SR_ERR_PROTOCOL;
        }

        *(int *) p = o->via.boolean;
        return SR_OK;
    }

    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (f->kind == SR_IPC_U64) {
            *(uint64_t *) p = o->via.u64;
            return SR_OK;
        }

        if (f->kind == SR_IPC_U32 && o->via.u64 <= UINT32_MAX) {
            *(uint32_t *) p = (uint32_t) o->via.u64;
            return SR_OK;
        }

        if (f->kind == SR_IPC_U32 || o->via.u64 > INT64_MAX) {
            return SR_ERR_PROTOCOL;
        }

        v = (int64_t) o->via.u64;

    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER
               && (f->kind == SR_IPC_INT || f->kind == SR_IPC_INT_OR_NIL))
    {
        v = o->via.i64;

    } else {
        return SR_ERR_PROTOCOL;
    }

    *(int64_t *) p = v;

    if (f->kind == SR_IPC_INT_OR_NIL) {
        *(int *) (base + f->aux) = 1;
    }

    return SR_OK;
}


/* The protocol travels by the name the SignalR handshake uses. */

static int
sr_ipc_get_protocol(const msgpack_object *o, sr_protocol_t *protocol)
{
    if (o->type == MSGPACK_OBJECT_STR && sr_ipc_key_is(o, "json")) {
        *protocol = SR_PROTOCOL_JSON;
        return SR_OK;
    }

    if (o->type == MSGPACK_OBJECT_STR && sr_ipc_key_is(o, "messagepack")) {
        *protocol = SR_PROTOCOL_MSGPACK;
        return SR_OK;
    }

    return SR_ERR_PROTOCOL;
}


static int
sr_ipc_get_json_map(const msgpack_object *o, json_t **out)
{
    json_t      *claims;
    sr_error_t   ignored;
    int          rc;

    claims = NULL;

    if (o->type == MSGPACK_OBJECT_MAP) {
        rc = sr_msgpack_to_json(o, &claims, &ignored);
        if (rc != SR_OK) {
            return rc == SR_ERR_NOMEM ? rc : SR_ERR_PROTOCOL;
        }

    } else if (o->type != MSGPACK_OBJECT_NIL) {
        return SR_ERR_PROTOCOL;
    }

    json_decref(*out);
    *out = claims;

    return SR_OK;
}


/*
 * Stores one value in the member its row names. SR_ERR_PROTOCOL for a
 * value of the wrong kind, SR_ERR_NOMEM; the member keeps its value on
 * either, so that the body can still be cleared.
 */

static int
sr_ipc_get_field(const sr_ipc_field_t *f, const msgpack_object *o,
    char *base)
{
    sr_ipc_bytes_t  *bytes;
    char            *p;

    p = base + f->offset;

    switch (f->kind) {

    case SR_IPC_STR_OR_NIL:
        if (o->type == MSGPACK_OBJECT_NIL) {
            free(*(char **) p);
            *(char **) p = NULL;
            return SR_OK;
        }

        return sr_ipc_copy_str(o, (char **) p);

    case SR_IPC_STR:
        return sr_ipc_copy_str(o, (char **) p);

    case SR_IPC_PROTOCOL:
        return sr_ipc_get_protocol(o, (sr_protocol_t *) p);

    case SR_IPC_JSON_MAP:
        return sr_ipc_get_json_map(o, (json_t **) p);

    case SR_IPC_BIN_OR_NIL:
    case SR_IPC_BIN:
        bytes = (sr_ipc_bytes_t *) p;

        if (o->type == MSGPACK_OBJECT_NIL && f->kind == SR_IPC_BIN_OR_NIL) {
            bytes->data = NULL;
            bytes->len = 0;
            return SR_OK;
        }

        if (o->type != MSGPACK_OBJECT_BIN) {
            return SR_ERR_PROTOCOL;
        }

        bytes->data = (const unsigned char *) o->via.bin.ptr;
        bytes->len = o->via.bin.size;
        return SR_OK;

    case SR_IPC_BIN_ARRAY:
        return sr_ipc_copy_bin_array(o, (sr_ipc_bytes_t **) p,
                                     (size_t *) (base + f->aux));

    case SR_IPC_STR_ARRAY:
        return sr_ipc_copy_str_array(o, (char ***) p,
                                     (size_t *) (base + f->aux));

    default:
        return sr_ipc_get_number(f, o, base);
    }
}


static const sr_ipc_field_t *
sr_ipc_find_field(const sr_ipc_body_t *body, const msgpack_object *key,
    unsigned *index)
{
    unsigned  i;

    for (i = 0; i < body->nfields; i++) {
        if (sr_ipc_key_is(key, body->fields[i].key)) {
            *index = i;
            return &body->fields[i];
        }
    }

    return NULL;
}


/* Walks the map into data, which holds zeros or earlier values. */

static int
sr_ipc_body_fill(const sr_ipc_body_t *body, const msgpack_object *map,
    void *data, sr_error_t *err)
{
    const msgpack_object_kv  *kv;
    const sr_ipc_field_t     *f;
    uint32_t                  i, seen;
    unsigned                  index;
    int                       rc;

    seen = 0;

    for (i = 0; i < map->via.map.size; i++) {
        kv = &map->via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s body has a map key that is not a string",
                                body->name);
        }

        f = sr_ipc_find_field(body, &kv->key, &index);
        if (f == NULL) {
            continue;
        }

        rc = sr_ipc_get_field(f, &kv->val, data);

        if (rc == SR_ERR_NOMEM) {
            return sr_error_set(err, rc, "out of memory for a body");
        }

        if (rc != SR_OK) {
            return sr_error_set(err, SR_ERR_PROTOCOL, "%s \"%s\" is not %s",
                                body->name, f->key,
                                sr_ipc_kind_text[f->kind]);
        }

        seen |= (uint32_t) 1 << index;
    }

    for (i = 0; i < body->nfields; i++) {
        if (body->fields[i].required && !(seen & (uint32_t) 1 << i)) {
            return sr_error_set(err, SR_ERR_PROTOCOL, "%s without \"%s\"",
                                body->name, body->fields[i].key);
        }
    }

    return SR_OK;
}


/* On an error data is cleared: nothing is left to free. */

static int
sr_ipc_body_decode(const sr_ipc_body_t *body, const unsigned char *buf,
    size_t len, void *data, sr_error_t *err)
{
    msgpack_unpacked  result;
    int               rc;

    memset(data, 0, body->size);

    rc = sr_ipc_unpack_map(buf, len, &result, body->name, err);

    if (rc == SR_OK) {
        rc = sr_ipc_body_fill(body, &result.data, data, err);
    }

    msgpack_unpacked_destroy(&result);

    if (rc != SR_OK) {
        sr_ipc_body_clear(body, data);
    }

    return rc;
}


static void
sr_ipc_body_clear(const sr_ipc_body_t *body, void *data)
{
    const sr_ipc_field_t  *f;
    char                  *p;
    size_t                 i;

    for (i = 0; i < body->nfields; i++) {
        f = &body->fields[i];
        p = (char *) data + f->offset;

        switch (f->kind) {

        case SR_IPC_STR:
        case SR_IPC_STR_OR_NIL:
            free(*(char **) p);
            break;

        case SR_IPC_BIN_ARRAY:
            free(*(sr_ipc_bytes_t **) p);
            break;

        case SR_IPC_JSON_MAP:
            json_decref(*(json_t **) p);
            break;

        case SR_IPC_STR_ARRAY:
            sr_ipc_free_strs(*(char ***) p,
                             *(size_t *) ((char *) data + f->aux));
            break;

        default:
            break;
        }
    }

    memset(data, 0, body->size);
}


static void
sr_ipc_pack_number(msgpack_packer *pk, const sr_ipc_field_t *f,
    const char *base)
{
    const char  *p;

    p = base + f->offset;

    switch (f->kind) {

    case SR_IPC_U32:
        msgpack_pack_uint32(pk, *(const uint32_t *) p);
        break;

    case SR_IPC_U64:
        msgpack_pack_uint64(pk, *(const uint64_t *) p);
        break;

    case SR_IPC_INT_OR_NIL:
        if (*(const int *) (base + f->aux)) {
            msgpack_pack_int64(pk, *(const int64_t *) p);

        } else {
            msgpack_pack_nil(pk);
        }

        break;

    case SR_IPC_INT:
        msgpack_pack_int64(pk, *(const int64_t *) p);
        break;

    case SR_IPC_BOOL:
        if (*(const int *) p) {
            msgpack_pack_true(pk);

        } else {
            msgpack_pack_false(pk);
        }

        break;

    default:
        break;
    }
}


static int
sr_ipc_pack_field(msgpack_packer *pk, const sr_ipc_field_t *f,
    const char *base, sr_error_t *err)
{
    const sr_ipc_bytes_t  *bytes;
    const char            *p;
    size_t                 i, count;

    p = base + f->offset;

    sr_ipc_pack_str(pk, f->key);

    switch (f->kind) {

    case SR_IPC_STR:
    case SR_IPC_STR_OR_NIL:
        sr_ipc_pack_str(pk, *(char *const *) p);
        break;

    case SR_IPC_PROTOCOL:
        sr_ipc_pack_str(pk, *(const sr_protocol_t *) p == SR_PROTOCOL_JSON
                            ? "json" : "messagepack");
        break;

    case SR_IPC_JSON_MAP:
        if (*(json_t *const *) p == NULL) {
            msgpack_pack_nil(pk);
            break;
        }

        return sr_msgpack_pack_json(pk, *(json_t *const *) p, err);

    case SR_IPC_BIN:
    case SR_IPC_BIN_OR_NIL:
        bytes = (const sr_ipc_bytes_t *) p;

        if (bytes->data == NULL && f->kind == SR_IPC_BIN_OR_NIL) {
            msgpack_pack_nil(pk);

        } else {
            sr_ipc_pack_bin(pk, bytes->data, bytes->len);
        }

        break;

    case SR_IPC_BIN_ARRAY:
        bytes = *(sr_ipc_bytes_t *const *) p;
        count = *(const size_t *) (base + f->aux);
        msgpack_pack_array(pk, count);

        for (i = 0; i < count; i++) {
            sr_ipc_pack_bin(pk, bytes[i].data, bytes[i].len);
        }

        break;

    case SR_IPC_STR_ARRAY:
        count = *(const size_t *) (base + f->aux);
        msgpack_pack_array(pk, count);

        for (i = 0; i < count; i++) {
            sr_ipc_pack_str(pk, (*(char **const *) p)[i]);
        }

        break;

    default:
        sr_ipc_pack_number(pk, f, base);
        break;
    }

    return SR_OK;
}


/* Packs every row in table order; out is as it was on an error. */

static int
sr_ipc_body_encode(const sr_ipc_body_t *body, const void *data,
    sr_buf_t *out, sr_error_t *err)
{
    msgpack_packer  pk;
    sr_ipc_sink_t   sink;
    size_t          start, i;
    int             rc;

    start = out->len;
    sr_ipc_packer_init(&pk, &sink, out);

    msgpack_pack_map(&pk, body->nfields);

    for (i = 0; i < body->nfields; i++) {
        rc = sr_ipc_pack_field(&pk, &body->fields[i], data, err);
        if (rc != SR_OK) {
            out->len = start;
            return rc;
        }
    }

    return sr_ipc_packer_done(&sink, start, err);
}


int
sr_ipc_hello_encode(const sr_ipc_hello_t *hello, sr_buf_t *out,
    sr_error_t *err)
{
    return sr_ipc_body_encode(&sr_ipc_hello_body, hello, out, err);
}


int
sr_ipc_hello_decode(const unsigned char *body, size_t len,
    sr_ipc_hello_t *hello, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_hello_body, body, len, hello, err);
}


void
sr_ipc_hello_clear(sr_ipc_hello_t *hello)
{
    sr_ipc_body_clear(&sr_ipc_hello_body, hello);
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
    sr_ipc_state_t  head;

    if (open->hub == NULL
        || (open->protocol != SR_PROTOCOL_JSON
            && open->protocol != SR_PROTOCOL_MSGPACK)
        || (open->claims != NULL && !json_is_object(open->claims)))
    {
        return sr_error_set(err, SR_ERR_INVALID,
                            "open needs a hub, a protocol and object claims");
    }

    if (token == NULL) {
        return sr_ipc_body_encode(&sr_ipc_open_body, open, out, err);
    }

    /* read only: the copies are neither changed nor freed */
    memset(&head, 0, sizeof(head));
    head.token = (char *) token;
    head.who = *open;

    return sr_ipc_body_encode(&sr_ipc_open_token_body, &head, out, err);
}


int
sr_ipc_open_decode(const unsigned char *body, size_t len,
    sr_ipc_open_t *open, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_open_body, body, len, open, err);
}


void
sr_ipc_open_clear(sr_ipc_open_t *open)
{
    sr_ipc_body_clear(&sr_ipc_open_body, open);
}


int
sr_ipc_close_encode(const sr_ipc_close_t *close, sr_buf_t *out,
    sr_error_t *err)
{
    return sr_ipc_body_encode(&sr_ipc_close_body, close, out, err);
}


int
sr_ipc_close_decode(const unsigned char *body, size_t len,
    sr_ipc_close_t *close, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_close_body, body, len, close, err);
}


void
sr_ipc_close_clear(sr_ipc_close_t *close)
{
    sr_ipc_body_clear(&sr_ipc_close_body, close);
}


int
sr_ipc_detach_encode(const sr_ipc_detach_t *detach, sr_buf_t *out,
    sr_error_t *err)
{
    return sr_ipc_body_encode(&sr_ipc_detach_body, detach, out, err);
}


int
sr_ipc_detach_decode(const unsigned char *body, size_t len,
    sr_ipc_detach_t *detach, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_detach_body, body, len, detach, err);
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


int
sr_ipc_state_encode(const sr_ipc_state_t *state, sr_buf_t *out,
    sr_error_t *err)
{
    size_t  i;

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

    return sr_ipc_body_encode(&sr_ipc_state_body, state, out, err);
}


int
sr_ipc_state_decode(const unsigned char *body, size_t len,
    sr_ipc_state_t *state, sr_error_t *err)
{
    int  rc;

    rc = sr_ipc_body_decode(&sr_ipc_state_body, body, len, state, err);

    if (rc == SR_OK && !sr_ipc_state_sum_ok(state)) {
        sr_ipc_state_clear(state);
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "park buffer_size is not the sum of its buffer");
    }

    return rc;
}


void
sr_ipc_state_clear(sr_ipc_state_t *state)
{
    sr_ipc_body_clear(&sr_ipc_state_body, state);
}


int
sr_ipc_resume_encode(const sr_ipc_resume_t *resume, sr_buf_t *out,
    sr_error_t *err)
{
    if (resume->token == NULL) {
        return sr_error_set(err, SR_ERR_INVALID, "resume needs a token");
    }

    return sr_ipc_body_encode(&sr_ipc_resume_body, resume, out, err);
}


int
sr_ipc_resume_decode(const unsigned char *body, size_t len,
    sr_ipc_resume_t *resume, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_resume_body, body, len, resume, err);
}


void
sr_ipc_resume_clear(sr_ipc_resume_t *resume)
{
    sr_ipc_body_clear(&sr_ipc_resume_body, resume);
}


int
sr_ipc_adopt_encode(const sr_ipc_adopt_t *adopt, sr_buf_t *out,
    sr_error_t *err)
{
    if (adopt->state.data == NULL || adopt->state.len == 0) {
        return sr_error_set(err, SR_ERR_INVALID, "adopt needs a state");
    }

    return sr_ipc_body_encode(&sr_ipc_adopt_body, adopt, out, err);
}


int
sr_ipc_adopt_decode(const unsigned char *body, size_t len,
    sr_ipc_adopt_t *adopt, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_adopt_body, body, len, adopt, err);
}


void
sr_ipc_adopt_clear(sr_ipc_adopt_t *adopt)
{
    sr_ipc_body_clear(&sr_ipc_adopt_body, adopt);
}


int
sr_ipc_resume_failed_encode(const sr_ipc_resume_failed_t *failed,
    sr_buf_t *out, sr_error_t *err)
{
    return sr_ipc_body_encode(&sr_ipc_resume_failed_body, failed, out, err);
}


int
sr_ipc_resume_failed_decode(const unsigned char *body, size_t len,
    sr_ipc_resume_failed_t *failed, sr_error_t *err)
{
    return sr_ipc_body_decode(&sr_ipc_resume_failed_body, body, len, failed,
                              err);
}


void
sr_ipc_resume_failed_clear(sr_ipc_resume_failed_t *failed)
{
    sr_ipc_body_clear(&sr_ipc_resume_failed_body, failed);
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
