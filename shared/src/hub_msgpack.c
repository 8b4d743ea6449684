/*
 * The MessagePack hub protocol: one array per message (HubProtocol.md,
 * "MessagePack (MsgPack) encoding"). Arrays may be longer than the spec
 * defines, for fields a newer peer adds at the end; shorter ones are
 * refused.
 */

#include <string.h>

#include <msgpack.h>

#include "hub_codec_internal.h"
#include "msgpack_json.h"


/* The layout of one MessagePack item, from its first byte. */
typedef struct {
    size_t  head;        /* format byte, plus the ext type byte */
    size_t  lensize;     /* width of the length field, 0 if none */
    size_t  size;        /* body bytes, or children of a container */
    int     container;
    int     pairs;       /* a map: two children per entry */
} sr_msgpack_layout_t;


static int sr_msgpack_format(unsigned char b, sr_msgpack_layout_t *l);
static int sr_msgpack_item(const unsigned char *p, size_t left,
    size_t *used, size_t *children, int *container, sr_error_t *err);
static size_t sr_msgpack_be(const unsigned char *p, size_t n);
static int sr_msgpack_message(const msgpack_object *root, sr_message_t *msg,
    sr_error_t *err);
static int sr_msgpack_type(const msgpack_object *obj, int *type,
    sr_error_t *err);
static int sr_msgpack_cstring(const msgpack_object *obj, const char *name,
    const char *key, int required, char **out, sr_error_t *err);
static int sr_msgpack_headers(const msgpack_object *obj, sr_message_t *msg,
    const char *name, sr_error_t *err);
static int sr_msgpack_invocation(const msgpack_object_array *a,
    sr_message_t *msg, const char *name, sr_error_t *err);
static int sr_msgpack_stream_ids(const msgpack_object *obj,
    sr_message_t *msg, const char *name, sr_error_t *err);
static int sr_msgpack_completion(const msgpack_object_array *a,
    sr_message_t *msg, sr_error_t *err);
static int sr_msgpack_close(const msgpack_object_array *a,
    sr_message_t *msg, sr_error_t *err);
static int sr_msgpack_sequence_id(const msgpack_object *obj,
    sr_message_t *msg, const char *name, sr_error_t *err);
static int sr_msgpack_write(void *data, const char *buf, size_t len);
static int sr_msgpack_pack_message(msgpack_packer *pk,
    const sr_message_t *msg, sr_error_t *err);
static int sr_msgpack_pack_envelope(msgpack_packer *pk,
    const sr_message_t *msg, size_t count, sr_error_t *err);
static int sr_msgpack_pack_cstring(msgpack_packer *pk, const char *s);


/* The fewest elements each message type's array may have. */
static const size_t sr_msgpack_min_elements[] = {
    0, 5, 4, 4, 5, 3, 1, 2, 2, 2
};


/*
 * Design note: msgpack_unpack_next() allocates room for every element an
 * array or map header declares before reading them, so 5 bytes saying
 * "4 billion elements" would cost gigabytes. This walk runs first and
 * refuses any declared count that the remaining bytes cannot hold (each
 * element takes at least one byte), which bounds msgpack-c's memory by
 * the input size.
 */
int
sr_msgpack_scan(const unsigned char *buf, size_t len, size_t *end,
    sr_error_t *err)
{
    int     top, rc, container;
    size_t  pos, used, children;
    size_t  left[SR_HUB_MAX_DEPTH + 1];

    top = 0;
    left[0] = 1;
    pos = 0;

    while (top >= 0) {
        if (left[top] == 0) {
            top--;
            continue;
        }

        left[top]--;

        if (pos == len) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "MessagePack value is truncated");
        }

        rc = sr_msgpack_item(buf + pos, len - pos, &used, &children,
                             &container, err);
        if (rc != SR_OK) {
            return rc;
        }

        pos += used;

        if (!container) {
            continue;
        }

        if (top == SR_HUB_MAX_DEPTH) {
            return sr_error_set(err, SR_ERR_TOO_LARGE,
                                "MessagePack value nests deeper than %d "
                                "levels", SR_HUB_MAX_DEPTH);
        }

        if (children > len - pos) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "MessagePack container declares %zu "
                                "elements but only %zu bytes follow",
                                children, len - pos);
        }

        left[++top] = children;
    }

    *end = pos;

    return SR_OK;
}


static size_t
sr_msgpack_be(const unsigned char *p, size_t n)
{
    size_t  i, v;

    v = 0;

    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


/*
 * What the first byte of an item says of its layout: the header bytes
 * before any length field, the width of that field (0 when the size is
 * fixed), and the body size or child count when the byte alone tells.
 * Returns 0, or -1 for 0xc1, the one byte that is no format.
 */
static int
sr_msgpack_format(unsigned char b, sr_msgpack_layout_t *l)
{
    memset(l, 0, sizeof(*l));
    l->head = 1;

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        return 0;                                   /* fixint, nil, bool */
    }

    if (b <= 0x9f) {                                /* fixmap, fixarray */
        l->container = 1;
        l->size = b <= 0x8f ? 2 * (size_t) (b & 0x0f) : (size_t) (b & 0x0f);

    } else if (b <= 0xbf) {                         /* fixstr */
        l->size = b & 0x1f;

    } else if (b >= 0xc4 && b <= 0xc6) {            /* bin 8/16/32 */
        l->lensize = (size_t) 1 << (b - 0xc4);

    } else if (b >= 0xc7 && b <= 0xc9) {            /* ext 8/16/32 */
        l->lensize = (size_t) 1 << (b - 0xc7);
        l->head = 2;

    } else if (b == 0xca || b == 0xcb) {            /* float 32/64 */
        l->size = b == 0xca ? 4 : 8;

    } else if (b >= 0xcc && b <= 0xd3) {            /* (u)int 8..64 */
        l->size = (size_t) 1 << ((b - 0xcc) & 3);

    } else if (b >= 0xd4 && b <= 0xd8) {            /* fixext 1..16 */
        l->head = 2;
        l->size = (size_t) 1 << (b - 0xd4);

    } else if (b >= 0xd9 && b <= 0xdb) {            /* str 8/16/32 */
        l->lensize = (size_t) 1 << (b - 0xd9);

    } else if (b >= 0xdc) {                         /* array/map 16/32 */
        l->container = 1;
        l->lensize = (b & 1) ? 4 : 2;
        l->pairs = b >= 0xde;

    } else {
        return -1;
    }

    return 0;
}


/*
 * Sizes the one item at p: *used is its header and body, *children the
 * values a container holds (twice the pairs for a map).
 */
static int
sr_msgpack_item(const unsigned char *p, size_t left, size_t *used,
    size_t *children, int *container, sr_error_t *err)
{
    size_t               head, n;
    sr_msgpack_layout_t  l;

    if (sr_msgpack_format(p[0], &l) != 0) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "MessagePack byte 0x%02x is not a format", p[0]);
    }

    if (left < l.head + l.lensize) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "MessagePack value is truncated");
    }

    if (l.lensize) {
        n = sr_msgpack_be(p + 1, l.lensize);
        l.size = l.pairs ? 2 * n : n;
    }

    head = l.head + l.lensize;
    *container = l.container;
    *children = l.container ? l.size : 0;

    if (l.container) {
        *used = head;
        return SR_OK;
    }

    if (l.size > left - head) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "MessagePack value declares %zu bytes but only "
                            "%zu follow", l.size, left - head);
    }

    *used = head + l.size;

    return SR_OK;
}


int
sr_hub_msgpack_decode(const unsigned char *payload, size_t len,
    sr_message_t *msg, sr_error_t *err)
{
    int                    rc;
    size_t                 end, off;
    msgpack_unpacked       up;
    msgpack_unpack_return  ret;

    if (len == 0) {
        return sr_error_set(err, SR_ERR_PROTOCOL, "message is empty");
    }

    rc = sr_msgpack_scan(payload, len, &end, err);
    if (rc != SR_OK) {
        return rc;
    }

    if (end != len) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message has %zu bytes after its array",
                            len - end);
    }

    msgpack_unpacked_init(&up);
    off = 0;

    ret = msgpack_unpack_next(&up, (const char *) payload, len, &off);

    if (ret == MSGPACK_UNPACK_SUCCESS) {
        rc = sr_msgpack_message(&up.data, msg, err);

    } else if (ret == MSGPACK_UNPACK_NOMEM_ERROR) {
        rc = sr_error_set(err, SR_ERR_NOMEM, "out of memory");

    } else {
        rc = sr_error_set(err, SR_ERR_PROTOCOL,
                          "message is not valid MessagePack");
    }

    msgpack_unpacked_destroy(&up);

    return rc;
}


static int
sr_msgpack_message(const msgpack_object *root, sr_message_t *msg,
    sr_error_t *err)
{
    int                          rc, type;
    const char                  *name;
    const msgpack_object_array  *a;

    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size == 0) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message is not a non-empty MessagePack array");
    }

    a = &root->via.array;

    rc = sr_msgpack_type(&a->ptr[0], &type, err);
    if (rc != SR_OK) {
        return rc;
    }

    msg->type = type;
    name = sr_message_type_name(type);

    if (a->size < sr_msgpack_min_elements[type]) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has %u elements, fewer than %zu",
                            name, (unsigned) a->size,
                            sr_msgpack_min_elements[type]);
    }

    if (type <= SR_MSG_CANCEL_INVOCATION) {
        rc = sr_msgpack_headers(&a->ptr[1], msg, name, err);
        if (rc != SR_OK) {
            return rc;
        }

        rc = sr_msgpack_cstring(&a->ptr[2], name, "invocationId",
                                type != SR_MSG_INVOCATION,
                                &msg->invocation_id, err);
        if (rc != SR_OK) {
            return rc;
        }
    }

    switch (type) {

    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        return sr_msgpack_invocation(a, msg, name, err);

    case SR_MSG_STREAM_ITEM:
        return sr_msgpack_to_json(&a->ptr[3], &msg->item, err);

    case SR_MSG_COMPLETION:
        return sr_msgpack_completion(a, msg, err);

    case SR_MSG_CLOSE:
        return sr_msgpack_close(a, msg, err);

    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        return sr_msgpack_sequence_id(&a->ptr[1], msg, name, err);

    default:
        return SR_OK;
    }
}


static int
sr_msgpack_type(const msgpack_object *obj, int *type, sr_error_t *err)
{
    *type = 0;

    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        return sr_error_set(err, SR_ERR_UNSUPPORTED,
                            "unknown message type %lld",
                            (long long) obj->via.i64);
    }

    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "message type is not an integer");
    }

    if (obj->via.u64 < SR_MSG_INVOCATION || obj->via.u64 > SR_MSG_SEQUENCE) {
        return sr_error_set(err, SR_ERR_UNSUPPORTED,
                            "unknown message type %llu",
                            (unsigned long long) obj->via.u64);
    }

    *type = (int) obj->via.u64;

    return SR_OK;
}


/* A string of the envelope; nil reads as absent. */
static int
sr_msgpack_cstring(const msgpack_object *obj, const char *name,
    const char *key, int required, char **out, sr_error_t *err)
{
    const msgpack_object_str  *s;

    if (obj->type == MSGPACK_OBJECT_NIL) {
        if (required) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s message is missing '%s'", name, key);
        }

        return SR_OK;
    }

    if (obj->type != MSGPACK_OBJECT_STR) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has a '%s' that is not a string",
                            name, key);
    }

    s = &obj->via.str;

    /* msgpack-c leaves ptr NULL for an empty string */
    if (s->size == 0) {
        *out = sr_hub_strndup("", 0);

    } else if (memchr(s->ptr, '\0', s->size) != NULL
               || !sr_utf8_valid((const unsigned char *) s->ptr, s->size))
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has a '%s' that is not valid "
                            "UTF-8 text", name, key);

    } else {
        *out = sr_hub_strndup(s->ptr, s->size);
    }

    if (*out == NULL) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


static int
sr_msgpack_headers(const msgpack_object *obj, sr_message_t *msg,
    const char *name, sr_error_t *err)
{
    uint32_t                  i;
    const msgpack_object_kv  *kv;

    if (obj->type != MSGPACK_OBJECT_MAP) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has headers that are not a map",
                            name);
    }

    for (i = 0; i < obj->via.map.size; i++) {
        kv = &obj->via.map.ptr[i];

        if (kv->key.type != MSGPACK_OBJECT_STR
            || kv->val.type != MSGPACK_OBJECT_STR)
        {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s message has headers that do not map "
                                "strings to strings", name);
        }
    }

    if (obj->via.map.size == 0) {
        return SR_OK;
    }

    return sr_msgpack_to_json(obj, &msg->headers, err);
}


static int
sr_msgpack_invocation(const msgpack_object_array *a, sr_message_t *msg,
    const char *name, sr_error_t *err)
{
    int  rc;

    rc = sr_msgpack_cstring(&a->ptr[3], name, "target", 1, &msg->target,
                            err);
    if (rc != SR_OK) {
        return rc;
    }

    if (a->ptr[4].type != MSGPACK_OBJECT_ARRAY) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has arguments that are not an "
                            "array", name);
    }

    rc = sr_msgpack_to_json(&a->ptr[4], &msg->arguments, err);
    if (rc != SR_OK) {
        return rc;
    }

    if (a->size < 6) {
        return SR_OK;
    }

    return sr_msgpack_stream_ids(&a->ptr[5], msg, name, err);
}


static int
sr_msgpack_stream_ids(const msgpack_object *obj, sr_message_t *msg,
    const char *name, sr_error_t *err)
{
    uint32_t  i;

    if (obj->type == MSGPACK_OBJECT_NIL) {
        return SR_OK;
    }

    if (obj->type != MSGPACK_OBJECT_ARRAY) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has streamIds that are not an "
                            "array", name);
    }

    for (i = 0; i < obj->via.array.size; i++) {
        if (obj->via.array.ptr[i].type != MSGPACK_OBJECT_STR) {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "%s message has a stream id that is not a "
                                "string", name);
        }
    }

    /* the official clients send [] for none: keep absent canonical */
    if (obj->via.array.size == 0) {
        return SR_OK;
    }

    return sr_msgpack_to_json(obj, &msg->stream_ids, err);
}


static int
sr_msgpack_completion(const msgpack_object_array *a, sr_message_t *msg,
    sr_error_t *err)
{
    const msgpack_object  *kind;

    kind = &a->ptr[3];

    if (kind->type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || kind->via.u64 < 1 || kind->via.u64 > 3)
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "Completion message has a result kind that is "
                            "not 1, 2 or 3");
    }

    if (kind->via.u64 == 2) {
        return SR_OK;
    }

    if (a->size < 5) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "Completion message of result kind %d lacks "
                            "its value", (int) kind->via.u64);
    }

    if (kind->via.u64 == 1) {
        return sr_msgpack_cstring(&a->ptr[4], "Completion", "error", 1,
                                  &msg->error, err);
    }

    return sr_msgpack_to_json(&a->ptr[4], &msg->result, err);
}


static int
sr_msgpack_close(const msgpack_object_array *a, sr_message_t *msg,
    sr_error_t *err)
{
    int                    rc;
    const msgpack_object  *allow;

    rc = sr_msgpack_cstring(&a->ptr[1], "Close", "error", 0, &msg->error,
                            err);
    if (rc != SR_OK || a->size < 3) {
        return rc;
    }

    allow = &a->ptr[2];

    if (allow->type == MSGPACK_OBJECT_NIL) {
        return SR_OK;
    }

    if (allow->type != MSGPACK_OBJECT_BOOLEAN) {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "Close message has an allowReconnect that is "
                            "not a boolean");
    }

    msg->allow_reconnect = allow->via.boolean;

    return SR_OK;
}


static int
sr_msgpack_sequence_id(const msgpack_object *obj, sr_message_t *msg,
    const char *name, sr_error_t *err)
{
    /* bounded like JSON's integers, so that both encodings agree */
    if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || obj->via.u64 > INT64_MAX)
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "%s message has a sequenceId that is not an "
                            "integer from 0 to 2^63 - 1", name);
    }

    msg->sequence_id = obj->via.u64;

    return SR_OK;
}


int
sr_hub_msgpack_encode(const sr_message_t *msg, sr_buf_t *out,
    sr_error_t *err)
{
    int             rc;
    size_t          old;
    msgpack_packer  pk;

    old = out->len;

    msgpack_packer_init(&pk, out, sr_msgpack_write);

    rc = sr_msgpack_pack_message(&pk, msg, err);

    if (rc != SR_OK) {
        out->len = old;
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return SR_OK;
}


static int
sr_msgpack_write(void *data, const char *buf, size_t len)
{
    return sr_buf_append(data, buf, len) == SR_OK ? 0 : -1;
}


/* Returns SR_OK, or non-zero when the output could not grow. */
static int
sr_msgpack_pack_message(msgpack_packer *pk, const sr_message_t *msg,
    sr_error_t *err)
{
    int  rc, kind;

    switch (msg->type) {

    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        rc = sr_msgpack_pack_envelope(pk, msg, 6, err);
        rc |= sr_msgpack_pack_cstring(pk, msg->target);
        rc |= sr_msgpack_pack_json(pk, msg->arguments, err);

        if (msg->stream_ids) {
            rc |= sr_msgpack_pack_json(pk, msg->stream_ids, err);

        } else {
            rc |= msgpack_pack_array(pk, 0);
        }

        return rc;

    case SR_MSG_STREAM_ITEM:
        rc = sr_msgpack_pack_envelope(pk, msg, 4, err);
        return rc | sr_msgpack_pack_json(pk, msg->item, err);

    case SR_MSG_COMPLETION:
        kind = msg->error ? 1 : (msg->result ? 3 : 2);

        rc = sr_msgpack_pack_envelope(pk, msg, kind == 2 ? 4 : 5, err);
        rc |= msgpack_pack_int(pk, kind);

        if (kind == 1) {
            rc |= sr_msgpack_pack_cstring(pk, msg->error);

        } else if (kind == 3) {
            rc |= sr_msgpack_pack_json(pk, msg->result, err);
        }

        return rc;

    case SR_MSG_CANCEL_INVOCATION:
        return sr_msgpack_pack_envelope(pk, msg, 3, err);

    case SR_MSG_PING:
        return msgpack_pack_array(pk, 1) | msgpack_pack_int(pk, SR_MSG_PING);

    case SR_MSG_CLOSE:
        rc = msgpack_pack_array(pk, msg->allow_reconnect ? 3 : 2);
        rc |= msgpack_pack_int(pk, SR_MSG_CLOSE);
        rc |= sr_msgpack_pack_cstring(pk, msg->error);

        if (msg->allow_reconnect) {
            rc |= msgpack_pack_true(pk);
        }

        return rc;

    default:
        /* Ack and Sequence; sr_hub_check_encodable() refused the rest */
        rc = msgpack_pack_array(pk, 2);
        rc |= msgpack_pack_int(pk, msg->type);
        return rc | msgpack_pack_uint64(pk, msg->sequence_id);
    }
}


/* [type, headers, invocationId] opening an array of count elements. */
static int
sr_msgpack_pack_envelope(msgpack_packer *pk, const sr_message_t *msg,
    size_t count, sr_error_t *err)
{
    int  rc;

    rc = msgpack_pack_array(pk, count);
    rc |= msgpack_pack_int(pk, msg->type);

    if (msg->headers) {
        rc |= sr_msgpack_pack_json(pk, msg->headers, err);

    } else {
        rc |= msgpack_pack_map(pk, 0);
    }

    return rc | sr_msgpack_pack_cstring(pk, msg->invocation_id);
}


static int
sr_msgpack_pack_cstring(msgpack_packer *pk, const char *s)
{
    size_t  len;

    if (s == NULL) {
        return msgpack_pack_nil(pk);
    }

    len = strlen(s);

    return msgpack_pack_str(pk, len) | msgpack_pack_str_body(pk, s, len);
}
