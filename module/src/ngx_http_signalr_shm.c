/*
 * What the registry and limit zones share: partitions of a zone, one
 * slab pool per worker, and a compact index of entries by hash.
 *
 * Design note: a zone is mapped into every worker, and a page of it
 * counts in the memory of each worker that ever touched it. With one
 * slab pool, the entries of all workers share pages, and a lookup in a
 * red-black tree walks nodes of other workers' entries; so every worker
 * ends up touching most of the zone. Here each worker allocates from a
 * pool of its own, carved out of the zone at its creation, and a lookup
 * probes a dense table of (hash, offset) pairs, eight bytes an entry,
 * touching one entry only when its hash matches. The table grows with
 * the entries, not with the zone: one sized from the zone would be
 * touched by every worker all over. It is written here since nginx's
 * ngx_hash_t is built once and never changes; the offsets, in 8-byte
 * units of 32 bits, reach 32 GB into a zone.
 *
 * The zone's own mutex still guards every partition: nginx's master
 * frees only that one when a worker dies holding it, and the critical
 * sections stay as short as they were, so one lock costs no more
 * contention than before.
 */

#include "ngx_http_signalr_module.h"


/* the table's first size; it doubles past three quarters full */
#define NGX_HTTP_SIGNALR_INDEX_MIN  16

/* the smallest partition worth its own pool, in pages */
#define NGX_HTTP_SIGNALR_PART_MIN   16


#define ngx_http_signalr_index_ref(idx, p)                                   \
    ((uint32_t) (((u_char *) (p) - (idx)->base) >> 3))
#define ngx_http_signalr_index_ptr(idx, ref)                                 \
    ((void *) ((idx)->base + ((size_t) (ref) << 3)))


static void ngx_http_signalr_shm_drop(u_char *from, u_char *to);
static void ngx_http_signalr_shm_forget(u_char *p, size_t size);
static ngx_int_t ngx_http_signalr_index_grow(ngx_http_signalr_index_t *idx,
    ngx_slab_pool_t *pool);
static ngx_http_signalr_slot_t *ngx_http_signalr_index_slot(
    ngx_http_signalr_index_t *idx, uint32_t hash, void *entry);


/* the pages of a zone, its first one (the pool's header) included */

ngx_uint_t
ngx_http_signalr_shm_pages(ngx_slab_pool_t *shpool)
{
    return (shpool->end - (u_char *) shpool) >> ngx_pagesize_shift;
}


/*
 * The number of partitions for pages of a zone: one per worker process,
 * at most 64 (a token names its partition with one base64url
 * character), and as many as leave each NGX_HTTP_SIGNALR_PART_MIN pages.
 */

ngx_uint_t
ngx_http_signalr_shm_parts(ngx_cycle_t *cycle, ngx_uint_t pages)
{
    ngx_uint_t        n;
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    n = (ccf && ccf->worker_processes > 0) ? ccf->worker_processes : 1;

    if (n > NGX_HTTP_SIGNALR_MAX_PARTS) {
        n = NGX_HTTP_SIGNALR_MAX_PARTS;
    }

    while (n > 1 && pages / n < NGX_HTTP_SIGNALR_PART_MIN) {
        n--;
    }

    return n;
}


/*
 * Leaves shpool, which nginx made of the whole zone, with its first
 * keep pages, and makes n pools of equal size of the rest. Called at
 * the zone's creation, before anything is allocated from shpool.
 *
 * Design note: the pools are not allocated from shpool, whose table of
 * pages would then describe the whole zone: a worker reading the pool's
 * header maps the pages around it too (the kernel's fault-around maps
 * the neighbours of a page already in memory), and that table is.
 */

ngx_int_t
ngx_http_signalr_shm_split(ngx_slab_pool_t *shpool, ngx_uint_t keep,
    ngx_uint_t n, ngx_slab_pool_t **parts)
{
    size_t            size;
    u_char           *p, *last, *start;
    ngx_uint_t        i, pages;
    ngx_slab_pool_t  *sp;

    last = shpool->end;
    start = shpool->start;
    p = (u_char *) shpool + (keep << ngx_pagesize_shift);

    pages = (ngx_uint_t) (last - p) >> ngx_pagesize_shift;
    pages /= n;

    if (keep < 2 || pages < 2) {
        return NGX_ERROR;
    }

    /* the index's offsets reach no further */
    if ((uint64_t) (last - (u_char *) shpool) > (uint64_t) 1 << 35) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "a signalr zone may not be larger than 32g");
        return NGX_ERROR;
    }

    shpool->end = p;
    ngx_slab_init(shpool);

    /* the rest of the old table is of no use: zero it, out of memory */
    if (start > p) {
        ngx_http_signalr_shm_drop(p, start);
    }

    size = pages << ngx_pagesize_shift;

    for (i = 0; i < n; i++, p += size) {
        sp = (ngx_slab_pool_t *) p;
        ngx_memzero(sp, sizeof(ngx_slab_pool_t));

        sp->end = p + size;
        sp->min_shift = 3;
        sp->addr = p;

        ngx_slab_init(sp);

        parts[i] = sp;
    }

    return NGX_OK;
}


/*
 * Once the zone is set up: the pools' messages are those of the zone,
 * and quiet about a full pool (the callers fall back to another one, or
 * answer 503 themselves); and the pages of their tables that are still
 * zero leave memory, so that no worker maps them before it needs them.
 */

void
ngx_http_signalr_shm_done(ngx_slab_pool_t *shpool, ngx_uint_t n,
    ngx_slab_pool_t **parts)
{
    ngx_uint_t  i;

    ngx_http_signalr_shm_drop((u_char *) shpool + ngx_pagesize,
                              shpool->start);

    for (i = 0; i < n; i++) {
        parts[i]->log_ctx = shpool->log_ctx;
        parts[i]->log_nomem = 0;

        ngx_http_signalr_shm_drop((u_char *) parts[i] + ngx_pagesize,
                                  parts[i]->start);
    }
}


/*
 * Gives the whole pages of an allocation about to be freed back to the
 * kernel, out of the memory of every process: the slab allocator keeps
 * what it knows of a free page in its table, not in the page.
 */

static void
ngx_http_signalr_shm_forget(u_char *p, size_t size)
{
#if (NGX_LINUX && defined MADV_REMOVE)
    u_char  *from, *to;

    from = ngx_align_ptr(p, ngx_pagesize);
    to = (u_char *) ((uintptr_t) (p + size) & ~(ngx_pagesize - 1));

    if (to > from) {
        (void) madvise(from, to - from, MADV_REMOVE);
    }
#endif
}


/*
 * Gives the pages of a shared mapping between from and to that hold
 * only zeros back to the kernel; read again, they are zero. Only an
 * economy: where it fails, the pages stay.
 */

static void
ngx_http_signalr_shm_drop(u_char *from, u_char *to)
{
#if (NGX_LINUX && defined MADV_REMOVE)
    u_char     *p;
    uint64_t   *w, *end;

    for (p = ngx_align_ptr(from, ngx_pagesize);
         p + ngx_pagesize <= to;
         p += ngx_pagesize)
    {
        end = (uint64_t *) (p + ngx_pagesize);

        for (w = (uint64_t *) p; w < end && *w == 0; w++) {
            /* void */
        }

        if (w == end) {
            (void) madvise(p, ngx_pagesize, MADV_REMOVE);
        }
    }
#endif
}


/* the partition of this worker */

ngx_uint_t
ngx_http_signalr_shm_own(ngx_uint_t nparts)
{
    return nparts > 1 ? ngx_worker % nparts : 0;
}


/*
 * A size the slab allocator rounds into another size class than size,
 * for entries that live shortly: they then never share a page with the
 * lasting ones, which other workers need not touch. Only while it
 * stays in the slot sizes.
 */

size_t
ngx_http_signalr_shm_apart(size_t size)
{
    size_t  n;

    for (n = 8; n < size; n <<= 1) {
        /* void */
    }

    n <<= 1;

    return n <= ngx_pagesize / 2 ? n : size;
}


void
ngx_http_signalr_index_init(ngx_http_signalr_index_t *idx, u_char *base)
{
    idx->slots = NULL;
    idx->mask = 0;
    idx->n = 0;
    idx->base = base;
}


/*
 * The entry of hash for which match(entry, key) says yes, or NULL. Only
 * the entries of an equal hash are touched.
 */

void *
ngx_http_signalr_index_find(ngx_http_signalr_index_t *idx, uint32_t hash,
    ngx_http_signalr_match_pt match, void *key)
{
    void                     *entry;
    uint32_t                  i;
    ngx_http_signalr_slot_t  *slot;

    if (idx->slots == NULL) {
        return NULL;
    }

    for (i = hash & idx->mask; /* void */; i = (i + 1) & idx->mask) {
        slot = &idx->slots[i];

        if (slot->ref == 0) {
            return NULL;
        }

        if (slot->hash != hash) {
            continue;
        }

        entry = ngx_http_signalr_index_ptr(idx, slot->ref);

        if (match(entry, key)) {
            return entry;
        }
    }
}


/* NGX_ERROR when the table is full and pool has no room to grow it */

ngx_int_t
ngx_http_signalr_index_insert(ngx_http_signalr_index_t *idx,
    ngx_slab_pool_t *pool, uint32_t hash, void *entry)
{
    uint32_t  i, size;

    size = idx->slots ? idx->mask + 1 : 0;

    /* short of room to grow, up to seven eighths full: probes stay short */
    if ((idx->n + 1) * 4 > size * 3
        && ngx_http_signalr_index_grow(idx, pool) != NGX_OK
        && (idx->n + 1) * 8 > size * 7)
    {
        return NGX_ERROR;
    }

    for (i = hash & idx->mask;
         idx->slots[i].ref;
         i = (i + 1) & idx->mask)
    {
        /* void */
    }

    idx->slots[i].hash = hash;
    idx->slots[i].ref = ngx_http_signalr_index_ref(idx, entry);
    idx->n++;

    return NGX_OK;
}


/* the same entry moved to another address */

void
ngx_http_signalr_index_move(ngx_http_signalr_index_t *idx, uint32_t hash,
    void *entry, void *to)
{
    ngx_http_signalr_slot_t  *slot;

    slot = ngx_http_signalr_index_slot(idx, hash, entry);

    if (slot) {
        slot->ref = ngx_http_signalr_index_ref(idx, to);
    }
}


/*
 * Linear probing without tombstones: the entries after the freed slot
 * that would not be found past it any more move back into it.
 */

void
ngx_http_signalr_index_delete(ngx_http_signalr_index_t *idx, uint32_t hash,
    void *entry)
{
    uint32_t                  i, j, home;
    ngx_http_signalr_slot_t  *slot;

    slot = ngx_http_signalr_index_slot(idx, hash, entry);

    if (slot == NULL) {
        return;
    }

    i = slot - idx->slots;

    for (j = (i + 1) & idx->mask;
         idx->slots[j].ref;
         j = (j + 1) & idx->mask)
    {
        home = idx->slots[j].hash & idx->mask;

        /* j stays when its home lies cyclically in (i, j] */
        if (((j - home) & idx->mask) < ((j - i) & idx->mask)) {
            continue;
        }

        idx->slots[i] = idx->slots[j];
        i = j;
    }

    idx->slots[i].ref = 0;
    idx->n--;
}


static ngx_http_signalr_slot_t *
ngx_http_signalr_index_slot(ngx_http_signalr_index_t *idx, uint32_t hash,
    void *entry)
{
    uint32_t  i, ref;

    if (idx->slots == NULL) {
        return NULL;
    }

    ref = ngx_http_signalr_index_ref(idx, entry);

    for (i = hash & idx->mask;
         idx->slots[i].ref;
         i = (i + 1) & idx->mask)
    {
        if (idx->slots[i].ref == ref) {
            return &idx->slots[i];
        }
    }

    return NULL;
}


/* doubles the table; the old one stays when pool has no room */

static ngx_int_t
ngx_http_signalr_index_grow(ngx_http_signalr_index_t *idx,
    ngx_slab_pool_t *pool)
{
    uint32_t                  i, j, size, mask;
    ngx_http_signalr_slot_t  *slots;

    size = idx->slots ? (idx->mask + 1) * 2 : NGX_HTTP_SIGNALR_INDEX_MIN;

    if (size == 0 || size > 0x40000000) {
        return NGX_ERROR;
    }

    slots = ngx_slab_calloc_locked(pool,
                                   size * sizeof(ngx_http_signalr_slot_t));
    if (slots == NULL) {
        return NGX_ERROR;
    }

    mask = size - 1;

    for (i = 0; idx->slots && i <= idx->mask; i++) {

        if (idx->slots[i].ref == 0) {
            continue;
        }

        for (j = idx->slots[i].hash & mask; slots[j].ref; j = (j + 1) & mask)
        {
            /* void */
        }

        slots[j] = idx->slots[i];
    }

    if (idx->slots) {
        /* every worker that looked something up mapped the old table */
        ngx_http_signalr_shm_forget((u_char *) idx->slots,
                                    (idx->mask + 1)
                                    * sizeof(ngx_http_signalr_slot_t));
        ngx_slab_free_locked(pool, idx->slots);
    }

    idx->slots = slots;
    idx->mask = mask;

    return NGX_OK;
}
