/*
 * The sessions of the worker by connection id, for what the daemon sends
 * them: an open-addressing hash table (linear probing) of the id's hash
 * and the session.
 *
 * Design note: nginx's ngx_str_rbtree would do, and did; but a multicast
 * looks up every id it names, and a tree walk is a cache miss per level,
 * each in another session (14 levels at 10,000 connections). A probe
 * here reads one slot, most often in the cache line of the first, and
 * the session only when the hashes match; a slot is 16 bytes, at most
 * 4/3 of them per session, against the tree's 56-byte node in each.
 */

#include "ngx_http_signalr_module.h"


/* the table's first size, a power of two */
#define NGX_HTTP_SIGNALR_IDS_MIN  256


typedef struct {
    uint32_t                     hash;
    ngx_http_signalr_session_t  *session;      /* NULL: free */
} ngx_http_signalr_id_slot_t;


static ngx_int_t ngx_http_signalr_ids_grow(void);
static void ngx_http_signalr_ids_place(ngx_http_signalr_id_slot_t *slots,
    ngx_uint_t mask, uint32_t hash, ngx_http_signalr_session_t *s);


static ngx_http_signalr_id_slot_t  *ngx_http_signalr_ids;
static ngx_uint_t                   ngx_http_signalr_ids_mask;
static ngx_uint_t                   ngx_http_signalr_ids_count;


/* the hash of an id, as insert and find compute it */

uint32_t
ngx_http_signalr_ids_hash(const u_char *id, size_t len)
{
    return ngx_crc32_short((u_char *) id, len);
}


ngx_int_t
ngx_http_signalr_ids_insert(ngx_http_signalr_session_t *s)
{
    /*
     * At most three quarters full, so that probes stay short; without
     * the memory to grow, fuller, but always with a free slot, where a
     * probe for an unknown id ends.
     */
    if ((ngx_http_signalr_ids == NULL
         || (ngx_http_signalr_ids_count + 1) * 4
            > (ngx_http_signalr_ids_mask + 1) * 3)
        && ngx_http_signalr_ids_grow() != NGX_OK
        && (ngx_http_signalr_ids == NULL
            || ngx_http_signalr_ids_count + 1 > ngx_http_signalr_ids_mask))
    {
        return NGX_ERROR;
    }

    ngx_http_signalr_ids_place(ngx_http_signalr_ids,
                               ngx_http_signalr_ids_mask, s->id_hash, s);
    ngx_http_signalr_ids_count++;

    return NGX_OK;
}


ngx_http_signalr_session_t *
ngx_http_signalr_ids_find(ngx_str_t *id)
{
    uint32_t                     hash;
    ngx_uint_t                   i;
    ngx_http_signalr_session_t  *s;

    if (ngx_http_signalr_ids == NULL || id->len > SR_RANDOM_ID_LEN) {
        return NULL;
    }

    hash = ngx_http_signalr_ids_hash(id->data, id->len);

    for (i = hash & ngx_http_signalr_ids_mask;
         ngx_http_signalr_ids[i].session;
         i = (i + 1) & ngx_http_signalr_ids_mask)
    {
        if (ngx_http_signalr_ids[i].hash != hash) {
            continue;
        }

        s = ngx_http_signalr_ids[i].session;

        if (s->id_len == id->len
            && ngx_memcmp(s->id, id->data, id->len) == 0)
        {
            return s;
        }
    }

    return NULL;
}


/*
 * Removes s, then moves back the slots after it that it kept from
 * their home, so that no probe stops early at the hole (no tombstones).
 */

void
ngx_http_signalr_ids_delete(ngx_http_signalr_session_t *s)
{
    ngx_uint_t                   i, j, home, mask;
    ngx_http_signalr_id_slot_t  *slots;

    slots = ngx_http_signalr_ids;
    mask = ngx_http_signalr_ids_mask;

    if (slots == NULL) {
        return;
    }

    for (i = s->id_hash & mask; slots[i].session != s; i = (i + 1) & mask) {
        if (slots[i].session == NULL) {
            return;
        }
    }

    for (j = (i + 1) & mask; slots[j].session; j = (j + 1) & mask) {
        home = slots[j].hash & mask;

        /* j stays when its home lies cyclically in (i, j] */
        if (((j - home) & mask) < ((j - i) & mask)) {
            continue;
        }

        slots[i] = slots[j];
        i = j;
    }

    slots[i].session = NULL;
    ngx_http_signalr_ids_count--;
}


void
ngx_http_signalr_ids_exit(void)
{
    if (ngx_http_signalr_ids) {
        ngx_free(ngx_http_signalr_ids);
        ngx_http_signalr_ids = NULL;
    }

    ngx_http_signalr_ids_mask = 0;
    ngx_http_signalr_ids_count = 0;
}


static ngx_int_t
ngx_http_signalr_ids_grow(void)
{
    size_t                       size;
    ngx_uint_t                   i, n;
    ngx_http_signalr_id_slot_t  *slots;

    n = ngx_http_signalr_ids ? (ngx_http_signalr_ids_mask + 1) * 2
                             : NGX_HTTP_SIGNALR_IDS_MIN;
    size = n * sizeof(ngx_http_signalr_id_slot_t);

    slots = ngx_calloc(size, ngx_cycle->log);
    if (slots == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_signalr_ids) {
        for (i = 0; i <= ngx_http_signalr_ids_mask; i++) {
            if (ngx_http_signalr_ids[i].session) {
                ngx_http_signalr_ids_place(slots, n - 1,
                                           ngx_http_signalr_ids[i].hash,
                                           ngx_http_signalr_ids[i].session);
            }
        }

        ngx_free(ngx_http_signalr_ids);
    }

    ngx_http_signalr_ids = slots;
    ngx_http_signalr_ids_mask = n - 1;

    return NGX_OK;
}


static void
ngx_http_signalr_ids_place(ngx_http_signalr_id_slot_t *slots,
    ngx_uint_t mask, uint32_t hash, ngx_http_signalr_session_t *s)
{
    ngx_uint_t  i;

    for (i = hash & mask; slots[i].session; i = (i + 1) & mask) {
        /* void */
    }

    slots[i].hash = hash;
    slots[i].session = s;
}
