/*
 * A MessagePack hub message written out as JSON in one pass over its
 * bytes: the path of every message the daemon sends (always MessagePack)
 * to a JSON client.
 *
 * Design note: the full codec decodes into msgpack-c objects (a zone
 * allocated per message), converts them into jansson values and dumps
 * those: three allocating passes and a tree for a StreamItem of a few
 * dozen bytes, which showed as the largest share of the module's own
 * cost per chat fragment. Neither library writes JSON text from
 * MessagePack bytes, so this walk does, after sr_msgpack_scan() has
 * checked every length and the nesting depth. It handles what the
 * daemon sends (nil, booleans, integers, finite floats, UTF-8 strings,
 * arrays, maps keyed by strings, the envelopes of every message type)
 * and declines the rest (SR_ERR_UNSUPPORTED), so that the full codec
 * gives the definitive answer for anything unusual. The MessagePack
 * fuzzer (shared/fuzz/fuzz_hub_msgpack.c) checks that both agree on
 * every input this pass accepts.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hub_codec_internal.h"
#include "hub_transcode.h"


typedef enum {
    SR_TC_NIL,
    SR_TC_BOOL,
    SR_TC_UINT,
    SR_TC_INT,
    SR_TC_FLOAT,
    SR_TC_STR,
    SR_TC_ARRAY,
    SR_TC_MAP
} sr_tc_kind_t;

/* one MessagePack item, its header read; a string's bytes are borrowed */
typedef struct {
    sr_tc_kind_t          kind;
    uint64_t              u;        /* UINT, BOOL, ARRAY and MAP counts */
    int64_t               i;        /* INT, always negative */
    double                f;
    const unsigned char  *s;
    size_t                len;
} sr_tc_item_t;

typedef struct {
    const unsigned char  *p;
    const unsigned char  *end;
    sr_buf_t             *out;
} sr_tc_t;


/* the fewest elements each message type's array has (HubProtocol.md) */
static const size_t sr_tc_min_elements[] = {
    0, 5, 4, 4, 5, 3, 1, 2, 2, 2
};

#define SR_TC_DECLINE  SR_ERR_UNSUPPORTED

/* the most entries of a map written here (a fragment's item has six) */
#define SR_TC_MAX_KEYS  32


static int sr_tc_next(sr_tc_t *t, sr_tc_item_t *item);
static uint64_t sr_tc_be(const unsigned char *p, size_t n);
static int sr_tc_value(sr_tc_t *t);
static int sr_tc_scalar(sr_tc_t *t, const sr_tc_item_t *item);
static int sr_tc_string(sr_tc_t *t, const unsigned char *s, size_t len);
static int sr_tc_text(sr_tc_t *t, const sr_tc_item_t *item);
static int sr_tc_put(sr_tc_t *t, const char *s);
static int sr_tc_key(sr_tc_t *t, const char *key);
static int sr_tc_envelope(sr_tc_t *t, int type, size_t count);
static int sr_tc_invocation(sr_tc_t *t, size_t count);
static int sr_tc_string_array(sr_tc_t *t, const char *key);
static int sr_tc_completion(sr_tc_t *t, size_t count);
static int sr_tc_close(sr_tc_t *t, size_t count);
static int sr_tc_headers(sr_tc_t *t);
static int sr_tc_strings(sr_tc_t *t, uint64_t n);


int
sr_hub_transcode_msgpack_json(const unsigned char *payload, size_t len,
    sr_buf_t *out, sr_error_t *err)
{
    int           rc;
    size_t        old, end;
    sr_tc_t       t;
    sr_tc_item_t  array, type;

    old = out->len;

    if (len == 0 || sr_msgpack_scan(payload, len, &end, NULL) != SR_OK
        || end != len)
    {
        return sr_error_set(err, SR_TC_DECLINE, "left to the full codec");
    }

    t.p = payload;
    t.end = payload + len;
    t.out = out;

    rc = sr_tc_next(&t, &array);

    if (rc == SR_OK && (array.kind != SR_TC_ARRAY || array.u == 0)) {
        rc = SR_TC_DECLINE;
    }

    if (rc == SR_OK) {
        rc = sr_tc_next(&t, &type);
    }

    if (rc == SR_OK
        && (type.kind != SR_TC_UINT || type.u < SR_MSG_INVOCATION
            || type.u > SR_MSG_SEQUENCE
            || array.u < sr_tc_min_elements[type.u]))
    {
        rc = SR_TC_DECLINE;
    }

    if (rc == SR_OK) {
        rc = sr_tc_envelope(&t, (int) type.u, (size_t) array.u);
    }

    if (rc == SR_OK) {
        return SR_OK;
    }

    out->len = old;

    if (rc == SR_ERR_NOMEM) {
        return sr_error_set(err, SR_ERR_NOMEM, "out of memory");
    }

    return sr_error_set(err, SR_TC_DECLINE, "left to the full codec");
}


/*
 * The fields of each message type in the order of the MessagePack
 * array, written under their JSON names; the elements a newer peer may
 * add after them are left unread (sr_msgpack_scan() checked them).
 */
static int
sr_tc_envelope(sr_tc_t *t, int type, size_t count)
{
    int           rc;
    char          head[48];
    sr_tc_item_t  id;

    snprintf(head, sizeof(head), "{\"type\":%d", type);

    rc = sr_tc_put(t, head);

    if (rc == SR_OK && type <= SR_MSG_CANCEL_INVOCATION) {
        rc = sr_tc_headers(t);

        if (rc == SR_OK) {
            rc = sr_tc_next(t, &id);
        }

        /* only an Invocation may go without an id: it wants no answer */
        if (rc == SR_OK && id.kind == SR_TC_NIL) {
            rc = (type == SR_MSG_INVOCATION) ? SR_OK : SR_TC_DECLINE;

        } else if (rc == SR_OK && id.kind != SR_TC_STR) {
            rc = SR_TC_DECLINE;

        } else if (rc == SR_OK) {
            rc = sr_tc_key(t, "invocationId");

            if (rc == SR_OK) {
                rc = sr_tc_text(t, &id);
            }
        }
    }

    if (rc != SR_OK) {
        return rc;
    }

    switch (type) {

    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        rc = sr_tc_invocation(t, count);
        break;

    case SR_MSG_STREAM_ITEM:
        rc = sr_tc_key(t, "item");

        if (rc == SR_OK) {
            rc = sr_tc_value(t);
        }

        break;

    case SR_MSG_COMPLETION:
        rc = sr_tc_completion(t, count);
        break;

    case SR_MSG_CLOSE:
        rc = sr_tc_close(t, count);
        break;

    case SR_MSG_ACK:
    case SR_MSG_SEQUENCE:
        rc = sr_tc_next(t, &id);

        /* bounded like JSON's integers, as the full codec bounds it */
        if (rc == SR_OK && (id.kind != SR_TC_UINT || id.u > INT64_MAX)) {
            rc = SR_TC_DECLINE;
        }

        if (rc == SR_OK) {
            snprintf(head, sizeof(head), ",\"sequenceId\":%llu",
                     (unsigned long long) id.u);
            rc = sr_tc_put(t, head);
        }

        break;

    default: /* SR_MSG_CANCEL_INVOCATION, SR_MSG_PING */
        break;
    }

    if (rc != SR_OK) {
        return rc;
    }

    return sr_tc_put(t, "}");
}


/* steps over n items, which must all be strings */
static int
sr_tc_strings(sr_tc_t *t, uint64_t n)
{
    uint64_t      i;
    sr_tc_item_t  item;

    for (i = 0; i < n; i++) {
        if (sr_tc_next(t, &item) != SR_OK || item.kind != SR_TC_STR) {
            return SR_TC_DECLINE;
        }
    }

    return SR_OK;
}


/* headers map strings to strings; an empty map is written as none */
static int
sr_tc_headers(sr_tc_t *t)
{
    int                   rc;
    sr_tc_item_t          map;
    const unsigned char  *start;

    start = t->p;

    rc = sr_tc_next(t, &map);
    if (rc != SR_OK || map.kind != SR_TC_MAP) {
        return SR_TC_DECLINE;
    }

    if (map.u == 0) {
        return SR_OK;
    }

    /* the check walks the map once; the value pass then writes it */
    if (sr_tc_strings(t, 2 * map.u) != SR_OK) {
        return SR_TC_DECLINE;
    }

    t->p = start;

    rc = sr_tc_key(t, "headers");

    return rc == SR_OK ? sr_tc_value(t) : rc;
}


static int
sr_tc_invocation(sr_tc_t *t, size_t count)
{
    int           rc;
    sr_tc_item_t  target;

    rc = sr_tc_next(t, &target);
    if (rc != SR_OK || target.kind != SR_TC_STR) {
        return SR_TC_DECLINE;
    }

    rc = sr_tc_key(t, "target");

    if (rc == SR_OK) {
        rc = sr_tc_text(t, &target);
    }

    if (rc != SR_OK) {
        return rc;
    }

    if (t->p == t->end
        || ((*t->p & 0xf0) != 0x90 && *t->p != 0xdc && *t->p != 0xdd))
    {
        return SR_TC_DECLINE;                   /* arguments: an array */
    }

    rc = sr_tc_key(t, "arguments");

    if (rc == SR_OK) {
        rc = sr_tc_value(t);
    }

    if (rc != SR_OK || count < 6) {
        return rc;
    }

    return sr_tc_string_array(t, "streamIds");
}


/* nil or an array of strings; none and empty are written as none */
static int
sr_tc_string_array(sr_tc_t *t, const char *key)
{
    int                   rc;
    sr_tc_item_t          array;
    const unsigned char  *start;

    start = t->p;

    rc = sr_tc_next(t, &array);
    if (rc != SR_OK) {
        return rc;
    }

    if (array.kind == SR_TC_NIL || (array.kind == SR_TC_ARRAY
                                    && array.u == 0))
    {
        return SR_OK;
    }

    if (array.kind != SR_TC_ARRAY) {
        return SR_TC_DECLINE;
    }

    if (sr_tc_strings(t, array.u) != SR_OK) {
        return SR_TC_DECLINE;
    }

    t->p = start;

    rc = sr_tc_key(t, key);

    return rc == SR_OK ? sr_tc_value(t) : rc;
}


/* result kinds: 1 an error text, 2 no result, 3 a result value */
static int
sr_tc_completion(sr_tc_t *t, size_t count)
{
    int           rc;
    sr_tc_item_t  kind, error;

    rc = sr_tc_next(t, &kind);
    if (rc != SR_OK || kind.kind != SR_TC_UINT || kind.u < 1 || kind.u > 3) {
        return SR_TC_DECLINE;
    }

    if (kind.u == 2) {
        return SR_OK;
    }

    if (count < 5) {
        return SR_TC_DECLINE;                   /* the value is missing */
    }

    if (kind.u == 3) {
        rc = sr_tc_key(t, "result");
        return rc == SR_OK ? sr_tc_value(t) : rc;
    }

    rc = sr_tc_next(t, &error);
    if (rc != SR_OK || error.kind != SR_TC_STR) {
        return SR_TC_DECLINE;
    }

    rc = sr_tc_key(t, "error");

    return rc == SR_OK ? sr_tc_text(t, &error) : rc;
}


static int
sr_tc_close(sr_tc_t *t, size_t count)
{
    int           rc;
    sr_tc_item_t  error, allow;

    rc = sr_tc_next(t, &error);

    if (rc == SR_OK && error.kind == SR_TC_STR) {
        rc = sr_tc_key(t, "error");

        if (rc == SR_OK) {
            rc = sr_tc_text(t, &error);
        }

    } else if (rc == SR_OK && error.kind != SR_TC_NIL) {
        rc = SR_TC_DECLINE;
    }

    if (rc != SR_OK || count < 3) {
        return rc;
    }

    rc = sr_tc_next(t, &allow);

    if (rc != SR_OK || allow.kind == SR_TC_NIL) {
        return rc;
    }

    if (allow.kind != SR_TC_BOOL) {
        return SR_TC_DECLINE;
    }

    return allow.u ? sr_tc_put(t, ",\"allowReconnect\":true") : SR_OK;
}


/*
 * One value of any depth; sr_msgpack_scan() bounded the nesting. A map
 * with a key twice is refused by the full codec: the keys are compared
 * as they are written, and maps too large for that to be cheap are left
 * to the full codec.
 */
static int
sr_tc_value(sr_tc_t *t)
{
    int           rc;
    uint64_t      i, j;
    sr_tc_item_t  item, key;
    sr_tc_item_t  keys[SR_TC_MAX_KEYS];

    rc = sr_tc_next(t, &item);
    if (rc != SR_OK) {
        return rc;
    }

    if (item.kind != SR_TC_ARRAY && item.kind != SR_TC_MAP) {
        return sr_tc_scalar(t, &item);
    }

    if (item.kind == SR_TC_MAP && item.u > SR_TC_MAX_KEYS) {
        return SR_TC_DECLINE;
    }

    rc = sr_tc_put(t, item.kind == SR_TC_ARRAY ? "[" : "{");

    for (i = 0; rc == SR_OK && i < item.u; i++) {

        if (i > 0) {
            rc = sr_tc_put(t, ",");
        }

        if (rc == SR_OK && item.kind == SR_TC_MAP) {
            rc = sr_tc_next(t, &key);

            /* an empty key may have no bytes at all (s NULL) */
            for (j = 0; rc == SR_OK && j < i; j++) {
                if (keys[j].len == key.len
                    && (key.len == 0
                        || memcmp(keys[j].s, key.s, key.len) == 0))
                {
                    rc = SR_TC_DECLINE;
                }
            }

            if (rc == SR_OK) {
                keys[i] = key;
                rc = sr_tc_text(t, &key);
            }

            if (rc == SR_OK) {
                rc = sr_tc_put(t, ":");
            }
        }

        if (rc == SR_OK) {
            rc = sr_tc_value(t);
        }
    }

    if (rc != SR_OK) {
        return rc;
    }

    return sr_tc_put(t, item.kind == SR_TC_ARRAY ? "]" : "}");
}


static int
sr_tc_scalar(sr_tc_t *t, const sr_tc_item_t *item)
{
    int   n;
    char  num[40];

    switch (item->kind) {

    case SR_TC_NIL:
        return sr_tc_put(t, "null");

    case SR_TC_BOOL:
        return sr_tc_put(t, item->u ? "true" : "false");

    case SR_TC_UINT:
        if (item->u > INT64_MAX) {
            return SR_TC_DECLINE;               /* no JSON integer holds it */
        }

        snprintf(num, sizeof(num), "%llu", (unsigned long long) item->u);
        return sr_tc_put(t, num);

    case SR_TC_INT:
        snprintf(num, sizeof(num), "%lld", (long long) item->i);
        return sr_tc_put(t, num);

    case SR_TC_FLOAT:
        if (!isfinite(item->f)) {
            return SR_TC_DECLINE;
        }

        /*
         * 17 significant digits bring every double back exactly; a
         * number that reads as an integer gets ".0" so that it stays a
         * real, as the full codec writes it. The C locale's "." is
         * assumed: neither nginx nor signalrd calls setlocale().
         */
        n = snprintf(num, sizeof(num) - 2, "%.17g", item->f);

        if (n > 0 && (size_t) n < sizeof(num) - 2
            && strpbrk(num, ".e") == NULL)
        {
            memcpy(num + n, ".0", 3);
        }

        return sr_tc_put(t, num);

    case SR_TC_STR:
        return sr_tc_text(t, item);

    default:
        return SR_TC_DECLINE;
    }
}


/* text as the full codec takes it: valid UTF-8 without NUL */
static int
sr_tc_text(sr_tc_t *t, const sr_tc_item_t *item)
{
    if (item->kind != SR_TC_STR) {
        return SR_TC_DECLINE;
    }

    if (item->len
        && (memchr(item->s, '\0', item->len) != NULL
            || !sr_utf8_valid(item->s, item->len)))
    {
        return SR_TC_DECLINE;
    }

    return sr_tc_string(t, item->s, item->len);
}


/* a JSON string literal, escaping in runs of plain bytes */
static int
sr_tc_string(sr_tc_t *t, const unsigned char *s, size_t len)
{
    size_t         i, run;
    unsigned char  c;
    char           esc[8];

    static const char  hex[] = "0123456789abcdef";

    if (sr_buf_reserve(t->out, len + 2) != SR_OK
        || sr_buf_append_byte(t->out, '"') != SR_OK)
    {
        return SR_ERR_NOMEM;
    }

    run = 0;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }

        if (sr_buf_append(t->out, s + run, i - run) != SR_OK) {
            return SR_ERR_NOMEM;
        }

        run = i + 1;

        esc[0] = '\\';
        esc[2] = '\0';

        switch (c) {
        case '"':  esc[1] = '"';  break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b';  break;
        case '\f': esc[1] = 'f';  break;
        case '\n': esc[1] = 'n';  break;
        case '\r': esc[1] = 'r';  break;
        case '\t': esc[1] = 't';  break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0x0f];
            esc[6] = '\0';
            break;
        }

        if (sr_tc_put(t, esc) != SR_OK) {
            return SR_ERR_NOMEM;
        }
    }

    if (sr_buf_append(t->out, s + run, len - run) != SR_OK
        || sr_buf_append_byte(t->out, '"') != SR_OK)
    {
        return SR_ERR_NOMEM;
    }

    return SR_OK;
}


static int
sr_tc_key(sr_tc_t *t, const char *key)
{
    if (sr_tc_put(t, ",\"") != SR_OK || sr_tc_put(t, key) != SR_OK
        || sr_tc_put(t, "\":") != SR_OK)
    {
        return SR_ERR_NOMEM;
    }

    return SR_OK;
}


static int
sr_tc_put(sr_tc_t *t, const char *s)
{
    return sr_buf_append(t->out, s, strlen(s)) == SR_OK ? SR_OK
                                                        : SR_ERR_NOMEM;
}


static uint64_t
sr_tc_be(const unsigned char *p, size_t n)
{
    size_t    i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


/*
 * Reads the item at t->p: scalars and strings whole, containers up to
 * their first child. Signed integers that are not negative read as
 * unsigned, as msgpack-c reads them, so that both passes see the same
 * types. Bin and ext values, and any byte that is no format, decline.
 */
static int
sr_tc_next(sr_tc_t *t, sr_tc_item_t *item)
{
    size_t          left, n, w;
    unsigned char   b;
    uint32_t        f32;
    uint64_t        bits;
    float           fv;

    memset(item, 0, sizeof(*item));

    left = (size_t) (t->end - t->p);
    if (left == 0) {
        return SR_TC_DECLINE;
    }

    b = *t->p;
    n = 1;

    if (b <= 0x7f) {
        item->kind = SR_TC_UINT;
        item->u = b;

    } else if (b >= 0xe0) {
        item->kind = SR_TC_INT;
        item->i = (int8_t) b;

    } else if (b <= 0x8f || (b >= 0x90 && b <= 0x9f)) {
        item->kind = (b <= 0x8f) ? SR_TC_MAP : SR_TC_ARRAY;
        item->u = b & 0x0f;

    } else if (b <= 0xbf) {
        item->kind = SR_TC_STR;
        item->len = b & 0x1f;

    } else if (b == 0xc0) {
        item->kind = SR_TC_NIL;

    } else if (b == 0xc2 || b == 0xc3) {
        item->kind = SR_TC_BOOL;
        item->u = (b == 0xc3);

    } else if (b == 0xca || b == 0xcb) {
        w = (b == 0xca) ? 4 : 8;

        if (left < 1 + w) {
            return SR_TC_DECLINE;
        }

        item->kind = SR_TC_FLOAT;
        bits = sr_tc_be(t->p + 1, w);

        if (w == 4) {
            f32 = (uint32_t) bits;
            memcpy(&fv, &f32, sizeof(fv));
            item->f = fv;

        } else {
            memcpy(&item->f, &bits, sizeof(item->f));
        }

        n += w;

    } else if (b >= 0xcc && b <= 0xd3) {
        w = (size_t) 1 << ((b - 0xcc) & 3);

        if (left < 1 + w) {
            return SR_TC_DECLINE;
        }

        bits = sr_tc_be(t->p + 1, w);
        n += w;
        item->kind = SR_TC_UINT;
        item->u = bits;

        if (b >= 0xd0) {
            /* sign-extend from w bytes */
            if (w < 8 && (bits & ((uint64_t) 1 << (8 * w - 1)))) {
                bits |= ~(uint64_t) 0 << (8 * w);
            }

            if ((int64_t) bits < 0) {
                item->kind = SR_TC_INT;
                item->i = (int64_t) bits;
            }
        }

    } else if (b >= 0xd9 && b <= 0xdb) {
        w = (size_t) 1 << (b - 0xd9);

        if (left < 1 + w) {
            return SR_TC_DECLINE;
        }

        item->kind = SR_TC_STR;
        item->len = (size_t) sr_tc_be(t->p + 1, w);
        n += w;

    } else if (b >= 0xdc) {
        w = (b & 1) ? 4 : 2;

        if (left < 1 + w) {
            return SR_TC_DECLINE;
        }

        item->kind = (b >= 0xde) ? SR_TC_MAP : SR_TC_ARRAY;
        item->u = sr_tc_be(t->p + 1, w);
        n += w;

    } else {
        return SR_TC_DECLINE;                   /* bin, ext, 0xc1 */
    }

    if (item->kind == SR_TC_STR) {
        if (item->len > left - n) {
            return SR_TC_DECLINE;
        }

        item->s = t->p + n;
        n += item->len;
    }

    t->p += n;

    return SR_OK;
}
