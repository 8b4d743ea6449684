/*
 * The connection registry: negotiated and attached connections in a
 * shared memory zone, so that a negotiate answered by one worker and the
 * WebSocket that follows on another agree on the connection.
 *
 * The zone is split into partitions, one per worker when the zone is
 * created (ngx_http_signalr_shm.c says why). The first character of a
 * connection token (the connection id for negotiate version 0) names
 * the partition whose index holds it: the one of the worker that
 * negotiated, or another one when that one was full. An entry lives in
 * the pool of the worker that negotiated until a transport attaches it,
 * then moves into the pool of the attaching worker, so that the pages a
 * worker keeps touching are those of its own connections.
 *
 * The entries of a pool are on one of two queues: "negotiated", newest
 * first, so that entries never attached expire from its tail; and
 * "attached", walked round-robin to drop the entries of workers that
 * died without removing their own.
 */

#include "ngx_http_signalr_module.h"


typedef struct {
    ngx_slab_pool_t              *pool;
    ngx_http_signalr_index_t      index;    /* tokens naming this one */
    ngx_queue_t                   negotiated;
    ngx_queue_t                   attached;
    ngx_pid_t                     pid;      /* the worker it is for */
} ngx_http_signalr_registry_part_t;


typedef struct {
    ngx_uint_t                    nparts;
    ngx_uint_t                    next;     /* the next one to check */
    ngx_http_signalr_registry_part_t  parts[1];
} ngx_http_signalr_registry_sh_t;


typedef struct {
    ngx_http_signalr_registry_sh_t  *sh;
    ngx_slab_pool_t                 *shpool;
    ngx_shm_zone_t                  *zone;
    ngx_cycle_t                     *cycle;
} ngx_http_signalr_registry_t;


typedef struct {
    ngx_queue_t                   queue;
    ngx_msec_t                    expires;
    ngx_pid_t                     pid;      /* attaching worker */
    uint16_t                      token_len;
    uint16_t                      id_len;
    uint16_t                      user_len;
    u_char                        attached; /* its SR_TRANSPORT_*, or 0 */
    u_char                        stateful; /* may be resumed elsewhere */
    u_char                        part;     /* the pool holding it */
    u_char                        data[1];  /* token, id, user */
} ngx_http_signalr_registry_node_t;


#define ngx_http_signalr_registry_size(rn)                                   \
    (offsetof(ngx_http_signalr_registry_node_t, data)                        \
     + (rn)->token_len + (rn)->id_len + (rn)->user_len)


static ngx_int_t ngx_http_signalr_registry_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_int_t ngx_http_signalr_registry_split(
    ngx_http_signalr_registry_t *ctx);
static ngx_http_signalr_registry_part_t *ngx_http_signalr_registry_part(
    ngx_http_signalr_registry_t *ctx, ngx_str_t *token);
static ngx_http_signalr_registry_node_t *ngx_http_signalr_registry_store(
    ngx_http_signalr_registry_t *ctx, ngx_uint_t p, ngx_uint_t any,
    ngx_str_t *token, ngx_str_t *id, ngx_str_t *user, ngx_msec_t ttl);
static ngx_http_signalr_registry_node_t *ngx_http_signalr_registry_alloc(
    ngx_http_signalr_registry_t *ctx, ngx_uint_t p, size_t size);
static ngx_uint_t ngx_http_signalr_registry_match(void *entry, void *key);
static ngx_http_signalr_registry_node_t *ngx_http_signalr_registry_lookup(
    ngx_http_signalr_registry_t *ctx, ngx_str_t *token);
static ngx_http_signalr_registry_node_t *ngx_http_signalr_registry_settle(
    ngx_http_signalr_registry_t *ctx, ngx_str_t *token,
    ngx_http_signalr_registry_node_t *rn);
static void ngx_http_signalr_registry_expire(
    ngx_http_signalr_registry_t *ctx, ngx_uint_t p, ngx_uint_t all);
static void ngx_http_signalr_registry_check(ngx_http_signalr_registry_t *ctx,
    ngx_uint_t own);
static void ngx_http_signalr_registry_delete(
    ngx_http_signalr_registry_t *ctx, ngx_http_signalr_registry_node_t *rn);


/* a partition as the first character of a token, base64url as the rest */
static const u_char  ngx_http_signalr_registry_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


ngx_int_t
ngx_http_signalr_registry_conf(ngx_conf_t *cf, ngx_shm_zone_t *zone)
{
    ngx_http_signalr_registry_t  *ctx;

    if (zone->data) {
        return NGX_OK;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_signalr_registry_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    /* worker_processes is known only once the whole file is read */
    ctx->cycle = cf->cycle;

    zone->init = ngx_http_signalr_registry_init_zone;
    zone->data = ctx;

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_registry_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_signalr_registry_t  *octx = data;

    ngx_http_signalr_registry_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* the partitions stay as they were; workers share them round */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->zone = shm_zone;

    return ngx_http_signalr_registry_split(ctx);
}


static ngx_int_t
ngx_http_signalr_registry_split(ngx_http_signalr_registry_t *ctx)
{
    ngx_uint_t                         i, n, keep;
    ngx_slab_pool_t                   *pools[NGX_HTTP_SIGNALR_MAX_PARTS];
    ngx_http_signalr_registry_part_t  *part;

    /* the zone's own pool keeps the partitions and its name */
    keep = 4;

    n = ngx_http_signalr_shm_parts(ctx->cycle,
                                   ngx_http_signalr_shm_pages(ctx->shpool)
                                   - keep);

    if (ngx_http_signalr_shm_split(ctx->shpool, keep, n, pools) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a full zone is answered with 503, not reported as a failure */
    if (ngx_http_signalr_name_zone(ctx->zone, ctx->shpool,
                                   "signalr registry zone")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              offsetof(ngx_http_signalr_registry_sh_t, parts)
                              + n * sizeof(ngx_http_signalr_registry_part_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;
    ctx->sh->nparts = n;

    for (i = 0; i < n; i++) {
        part = &ctx->sh->parts[i];

        part->pool = pools[i];
        ngx_http_signalr_index_init(&part->index, (u_char *) ctx->shpool);
        ngx_queue_init(&part->negotiated);
        ngx_queue_init(&part->attached);
    }

    ngx_http_signalr_shm_done(ctx->shpool, n, pools);

    return NGX_OK;
}


/*
 * Records a negotiated connection in the partition of this worker, or
 * of another one when that one is full, and writes the partition into
 * the first character of token (the token then stays as random as 122
 * bits make it). NGX_BUSY when every partition is full even after its
 * expired entries were dropped.
 */

ngx_int_t
ngx_http_signalr_registry_negotiate(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_str_t *id, ngx_str_t *user, ngx_msec_t ttl)
{
    u_char                             c;
    ngx_uint_t                         k, p, own, n;
    ngx_http_signalr_registry_t       *ctx;
    ngx_http_signalr_registry_node_t  *rn;

    ctx = zone->data;

    if (token->len == 0) {
        return NGX_ERROR;
    }

    c = token->data[0];

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ctx->sh->nparts;
    own = ngx_http_signalr_shm_own(n);

    ngx_http_signalr_registry_check(ctx, own);

    for (k = 0; k < n; k++) {
        p = (own + k) % n;

        token->data[0] = ngx_http_signalr_registry_chars[p];

        rn = ngx_http_signalr_registry_store(ctx, p, 0, token, id, user,
                                             ttl);

        if (rn) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_OK;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    token->data[0] = c;

    return NGX_BUSY;
}


/*
 * Records a negotiated connection under a token handed out before,
 * indexed in the partition it names. NGX_BUSY when no partition has
 * room even after the expired entries were dropped.
 */

ngx_int_t
ngx_http_signalr_registry_add(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_str_t *id, ngx_str_t *user, ngx_msec_t ttl)
{
    ngx_int_t                          rc;
    ngx_http_signalr_registry_t       *ctx;
    ngx_http_signalr_registry_part_t  *part;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    part = ngx_http_signalr_registry_part(ctx, token);

    rc = NGX_BUSY;

    if (part
        && ngx_http_signalr_registry_store(ctx, part - ctx->sh->parts, 1,
                                           token, id, user, ttl))
    {
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * The partition a token names. A token handed out by a zone of more
 * partitions (another instance, for a stateful reconnect) names one
 * modulo their count, as do those of other characters; NULL for none.
 */

static ngx_http_signalr_registry_part_t *
ngx_http_signalr_registry_part(ngx_http_signalr_registry_t *ctx,
    ngx_str_t *token)
{
    u_char      c;
    ngx_uint_t  p;

    if (token->len == 0) {
        return NULL;
    }

    c = token->data[0];

    if (c >= 'A' && c <= 'Z') {
        p = c - 'A';

    } else if (c >= 'a' && c <= 'z') {
        p = c - 'a' + 26;

    } else if (c >= '0' && c <= '9') {
        p = c - '0' + 52;

    } else if (c == '-') {
        p = 62;

    } else if (c == '_') {
        p = 63;

    } else {
        p = c;
    }

    return &ctx->sh->parts[p % ctx->sh->nparts];
}


/*
 * An entry indexed in partition p, in its pool; with any set, in the
 * pool of this worker or the first other one with room. Called locked.
 * NULL when there is no room.
 */

static ngx_http_signalr_registry_node_t *
ngx_http_signalr_registry_store(ngx_http_signalr_registry_t *ctx,
    ngx_uint_t p, ngx_uint_t any, ngx_str_t *token, ngx_str_t *id,
    ngx_str_t *user, ngx_msec_t ttl)
{
    size_t                             size;
    u_char                            *d;
    ngx_uint_t                         k, q, n;
    ngx_http_signalr_registry_part_t  *part;
    ngx_http_signalr_registry_node_t  *rn;

    if (token->len > 0xffff || id->len > 0xffff || user->len > 0xffff) {
        return NULL;
    }

    size = offsetof(ngx_http_signalr_registry_node_t, data)
           + token->len + id->len + user->len;

    n = any ? ctx->sh->nparts : 1;
    rn = NULL;
    q = p;

    for (k = 0; k < n && rn == NULL; k++) {
        q = any ? (ngx_http_signalr_shm_own(n) + k) % n : p;
        rn = ngx_http_signalr_registry_alloc(ctx, q, size);
    }

    if (rn == NULL) {
        return NULL;
    }

    part = &ctx->sh->parts[p];

    if (ngx_http_signalr_index_insert(&part->index, part->pool,
                                      ngx_crc32_short(token->data,
                                                      token->len),
                                      rn)
        != NGX_OK)
    {
        ngx_slab_free_locked(ctx->sh->parts[q].pool, rn);
        return NULL;
    }

    d = ngx_cpymem(rn->data, token->data, token->len);
    d = ngx_cpymem(d, id->data, id->len);
    ngx_memcpy(d, user->data, user->len);

    rn->expires = ngx_current_msec + ttl;
    rn->pid = 0;
    rn->token_len = (uint16_t) token->len;
    rn->id_len = (uint16_t) id->len;
    rn->user_len = (uint16_t) user->len;
    rn->attached = 0;
    rn->stateful = 0;
    rn->part = (u_char) q;

    ngx_queue_insert_head(&ctx->sh->parts[q].negotiated, &rn->queue);

    return rn;
}


/*
 * Room for a negotiated entry in the pool of partition p: in a size
 * class apart from the attached entries while there is room for that,
 * since other workers read it once, to attach it.
 */

static ngx_http_signalr_registry_node_t *
ngx_http_signalr_registry_alloc(ngx_http_signalr_registry_t *ctx,
    ngx_uint_t p, size_t size)
{
    ngx_slab_pool_t                   *pool;
    ngx_http_signalr_registry_node_t  *rn;

    pool = ctx->sh->parts[p].pool;

    ngx_http_signalr_registry_expire(ctx, p, 0);

    rn = ngx_slab_alloc_locked(pool, ngx_http_signalr_shm_apart(size));

    if (rn == NULL) {
        rn = ngx_slab_alloc_locked(pool, size);
    }

    if (rn == NULL) {
        ngx_http_signalr_registry_expire(ctx, p, 1);
        rn = ngx_slab_alloc_locked(pool, size);
    }

    return rn;
}


/*
 * Marks a negotiated connection attached to this worker with transport
 * kind and copies its connection id (NUL-terminated) to id. NGX_OK, or
 * one of the NGX_HTTP_SIGNALR_REG_* reasons not to: REG_ATTACHED sets
 * *owner and *owner_kind (when not NULL) to the worker and transport
 * that hold it. A kind of 0 only looks: REG_NOT_YET when the connection
 * is negotiated but not attached. The id is copied for both.
 */

ngx_int_t
ngx_http_signalr_registry_attach(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_str_t *user, u_char *id, size_t id_size, ngx_uint_t kind,
    ngx_pid_t *owner, ngx_uint_t *owner_kind)
{
    u_char                            *p;
    ngx_int_t                          rc;
    ngx_uint_t                         own;
    ngx_http_signalr_registry_t       *ctx;
    ngx_http_signalr_registry_node_t  *rn;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    rn = ngx_http_signalr_registry_lookup(ctx, token);

    if (rn == NULL) {
        rc = NGX_HTTP_SIGNALR_REG_UNKNOWN;
        goto done;
    }

    if (!rn->attached
        && (ngx_msec_int_t) (rn->expires - ngx_current_msec) < 0)
    {
        ngx_http_signalr_registry_delete(ctx, rn);
        rc = NGX_HTTP_SIGNALR_REG_UNKNOWN;
        goto done;
    }

    p = rn->data + rn->token_len + rn->id_len;

    if (rn->user_len != user->len
        || (user->len && ngx_memcmp(p, user->data, user->len) != 0))
    {
        rc = NGX_HTTP_SIGNALR_REG_OTHER_USER;
        goto done;
    }

    if (rn->id_len >= id_size) {
        rc = NGX_HTTP_SIGNALR_REG_UNKNOWN;
        goto done;
    }

    ngx_memcpy(id, rn->data + rn->token_len, rn->id_len);
    id[rn->id_len] = '\0';

    if (rn->attached) {
        if (owner) {
            *owner = rn->pid;
        }

        if (owner_kind) {
            *owner_kind = rn->attached;
        }

        rc = NGX_HTTP_SIGNALR_REG_ATTACHED;
        goto done;
    }

    if (kind == 0) {
        rc = NGX_HTTP_SIGNALR_REG_NOT_YET;
        goto done;
    }

    rn = ngx_http_signalr_registry_settle(ctx, token, rn);

    rn->attached = (u_char) kind;
    rn->pid = ngx_pid;

    ngx_queue_insert_head(&ctx->sh->parts[rn->part].attached, &rn->queue);

    /* the worker's own queues are walked as it attaches, too */
    own = ngx_http_signalr_shm_own(ctx->sh->nparts);
    ctx->sh->parts[own].pid = ngx_pid;

    ngx_http_signalr_registry_expire(ctx, own, 0);

    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * Moves a negotiated entry out of its queue, and into the pool of this
 * worker, in the size class of the attached ones; where there is no
 * room for that it stays where it is.
 */

static ngx_http_signalr_registry_node_t *
ngx_http_signalr_registry_settle(ngx_http_signalr_registry_t *ctx,
    ngx_str_t *token, ngx_http_signalr_registry_node_t *rn)
{
    size_t                             size;
    ngx_uint_t                         own;
    ngx_http_signalr_registry_part_t  *part;
    ngx_http_signalr_registry_node_t  *to;

    ngx_queue_remove(&rn->queue);

    own = ngx_http_signalr_shm_own(ctx->sh->nparts);
    size = ngx_http_signalr_registry_size(rn);

    to = ngx_slab_alloc_locked(ctx->sh->parts[own].pool, size);

    if (to == NULL) {
        return rn;
    }

    ngx_memcpy(to, rn, size);
    to->part = (u_char) own;

    part = ngx_http_signalr_registry_part(ctx, token);

    ngx_http_signalr_index_move(&part->index,
                                ngx_crc32_short(token->data, token->len),
                                rn, to);

    ngx_slab_free_locked(ctx->sh->parts[rn->part].pool, rn);

    return to;
}


/*
 * Marks an attached connection as one whose client may resume it on
 * another worker (set), or tells whether it is one (returns 1 or 0).
 */

ngx_uint_t
ngx_http_signalr_registry_stateful(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_uint_t set)
{
    ngx_uint_t                         rc;
    ngx_http_signalr_registry_t       *ctx;
    ngx_http_signalr_registry_node_t  *rn;

    ctx = zone->data;
    rc = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    rn = ngx_http_signalr_registry_lookup(ctx, token);

    if (rn && rn->attached) {
        if (set) {
            rn->stateful = 1;
        }

        rc = rn->stateful;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* Forgets a connection this worker attached. */

void
ngx_http_signalr_registry_remove(ngx_shm_zone_t *zone, ngx_str_t *token)
{
    ngx_http_signalr_registry_t       *ctx;
    ngx_http_signalr_registry_node_t  *rn;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    rn = ngx_http_signalr_registry_lookup(ctx, token);

    if (rn && rn->attached && rn->pid == ngx_pid) {
        ngx_http_signalr_registry_delete(ctx, rn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static ngx_uint_t
ngx_http_signalr_registry_match(void *entry, void *key)
{
    ngx_str_t                         *token = key;
    ngx_http_signalr_registry_node_t  *rn = entry;

    return rn->token_len == token->len
           && ngx_memcmp(rn->data, token->data, token->len) == 0;
}


static ngx_http_signalr_registry_node_t *
ngx_http_signalr_registry_lookup(ngx_http_signalr_registry_t *ctx,
    ngx_str_t *token)
{
    ngx_http_signalr_registry_part_t  *part;

    part = ngx_http_signalr_registry_part(ctx, token);

    if (part == NULL) {
        return NULL;
    }

    return ngx_http_signalr_index_find(&part->index,
                                       ngx_crc32_short(token->data,
                                                       token->len),
                                       ngx_http_signalr_registry_match,
                                       token);
}


/*
 * Drops expired negotiated entries of partition p from the old end: two
 * of them, or all when the zone is full. It also checks the oldest
 * attached entry there of another worker and drops it when that worker
 * no longer exists, so that a crashed worker's connections do not stay
 * forever.
 */

static void
ngx_http_signalr_registry_expire(ngx_http_signalr_registry_t *ctx,
    ngx_uint_t p, ngx_uint_t all)
{
    ngx_uint_t                         n;
    ngx_queue_t                       *q;
    ngx_http_signalr_registry_part_t  *part;
    ngx_http_signalr_registry_node_t  *rn;

    part = &ctx->sh->parts[p];

    for (n = 0; all || n < 2; n++) {

        if (ngx_queue_empty(&part->negotiated)) {
            break;
        }

        q = ngx_queue_last(&part->negotiated);
        rn = ngx_queue_data(q, ngx_http_signalr_registry_node_t, queue);

        if ((ngx_msec_int_t) (rn->expires - ngx_current_msec) >= 0) {
            break;
        }

        ngx_http_signalr_registry_delete(ctx, rn);
    }

    if (ngx_queue_empty(&part->attached)) {
        return;
    }

    q = ngx_queue_last(&part->attached);
    rn = ngx_queue_data(q, ngx_http_signalr_registry_node_t, queue);

    if (rn->pid != ngx_pid && kill(rn->pid, 0) == -1
        && ngx_errno == NGX_ESRCH)
    {
        ngx_http_signalr_registry_delete(ctx, rn);
        return;
    }

    /* a lone entry needs no move, and its neighbours are not touched */
    if (ngx_queue_head(&part->attached) != q) {
        ngx_queue_remove(q);
        ngx_queue_insert_head(&part->attached, q);
    }
}


/*
 * Claims the partition of this worker, and every eighth time looks at
 * another partition, round-robin: when the worker it was for is gone
 * and none took it over (fewer workers after a reload), its entries are
 * checked from here. The test is a system call made under the lock,
 * hence not every time.
 */

static void
ngx_http_signalr_registry_check(ngx_http_signalr_registry_t *ctx,
    ngx_uint_t own)
{
    ngx_uint_t                         p, n;
    ngx_http_signalr_registry_part_t  *part;

    ctx->sh->parts[own].pid = ngx_pid;

    n = ctx->sh->next++;

    if (ctx->sh->nparts < 2 || n % 8) {
        return;
    }

    p = n / 8 % ctx->sh->nparts;
    part = &ctx->sh->parts[p];

    if (p == own || part->pid == 0 || part->pid == ngx_pid) {
        return;
    }

    if (kill(part->pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
        ngx_http_signalr_registry_expire(ctx, p, 0);
    }
}


static void
ngx_http_signalr_registry_delete(ngx_http_signalr_registry_t *ctx,
    ngx_http_signalr_registry_node_t *rn)
{
    ngx_str_t                          token;
    ngx_http_signalr_registry_part_t  *part;

    token.data = rn->data;
    token.len = rn->token_len;

    part = ngx_http_signalr_registry_part(ctx, &token);

    if (part) {
        ngx_http_signalr_index_delete(&part->index,
                                      ngx_crc32_short(token.data,
                                                      token.len),
                                      rn);
    }

    ngx_queue_remove(&rn->queue);
    ngx_slab_free_locked(ctx->sh->parts[rn->part].pool, rn);
}
