/*
 * The connection registry: negotiated and attached connections in a
 * shared memory zone, so that a negotiate answered by one worker and the
 * WebSocket that follows on another agree on the connection.
 *
 * Entries are keyed by connection token (the connection id for
 * negotiate version 0) in a red-black tree, and kept on one of two
 * queues: "negotiated", newest first, so that entries never attached
 * expire from its tail; and "attached", which is walked round-robin to
 * drop the entries of workers that died without removing their own.
 */

#include "ngx_http_signalr_module.h"


typedef struct {
    ngx_rbtree_t                  rbtree;
    ngx_rbtree_node_t             sentinel;
    ngx_queue_t                   negotiated;
    ngx_queue_t                   attached;
} ngx_http_signalr_registry_sh_t;


typedef struct {
    ngx_http_signalr_registry_sh_t  *sh;
    ngx_slab_pool_t                 *shpool;
} ngx_http_signalr_registry_t;


typedef struct {
    ngx_str_node_t                sn;       /* key: the token */
    ngx_queue_t                   queue;
    ngx_msec_t                    expires;
    ngx_pid_t                     pid;      /* attaching worker */
    ngx_uint_t                    attached; /* its SR_TRANSPORT_*, or 0 */
    ngx_uint_t                    stateful; /* may be resumed elsewhere */
    size_t                        id_len;
    size_t                        user_len;
    u_char                        data[1];  /* token, id, user */
} ngx_http_signalr_registry_node_t;


static ngx_int_t ngx_http_signalr_registry_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static ngx_http_signalr_registry_node_t *ngx_http_signalr_registry_lookup(
    ngx_http_signalr_registry_t *ctx, ngx_str_t *token);
static void ngx_http_signalr_registry_expire(
    ngx_http_signalr_registry_t *ctx, ngx_uint_t all);
static void ngx_http_signalr_registry_delete(
    ngx_http_signalr_registry_t *ctx, ngx_http_signalr_registry_node_t *rn);


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
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool,
                             sizeof(ngx_http_signalr_registry_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ctx->sh->negotiated);
    ngx_queue_init(&ctx->sh->attached);

    /* a full zone is answered with 503, not reported as a failure */
    return ngx_http_signalr_name_zone(shm_zone, ctx->shpool,
                                      "signalr registry zone");
}


/*
 * Records a negotiated connection. NGX_BUSY when the zone is full even
 * after every expired entry was dropped.
 */

ngx_int_t
ngx_http_signalr_registry_add(ngx_shm_zone_t *zone, ngx_str_t *token,
    ngx_str_t *id, ngx_str_t *user, ngx_msec_t ttl)
{
    size_t                             size;
    u_char                            *p;
    ngx_http_signalr_registry_t       *ctx;
    ngx_http_signalr_registry_node_t  *rn;

    ctx = zone->data;

    size = offsetof(ngx_http_signalr_registry_node_t, data)
           + token->len + id->len + user->len;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ngx_http_signalr_registry_expire(ctx, 0);

    rn = ngx_slab_alloc_locked(ctx->shpool, size);

    if (rn == NULL) {
        ngx_http_signalr_registry_expire(ctx, 1);

        rn = ngx_slab_alloc_locked(ctx->shpool, size);

        if (rn == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_BUSY;
        }
    }

    p = rn->data;

    rn->sn.str.data = p;
    rn->sn.str.len = token->len;
    p = ngx_cpymem(p, token->data, token->len);
    p = ngx_cpymem(p, id->data, id->len);
    ngx_memcpy(p, user->data, user->len);

    rn->sn.node.key = ngx_crc32_short(token->data, token->len);
    rn->expires = ngx_current_msec + ttl;
    rn->pid = 0;
    rn->attached = 0;
    rn->stateful = 0;
    rn->id_len = id->len;
    rn->user_len = user->len;

    ngx_rbtree_insert(&ctx->sh->rbtree, &rn->sn.node);
    ngx_queue_insert_head(&ctx->sh->negotiated, &rn->queue);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
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

    p = rn->data + rn->sn.str.len + rn->id_len;

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

    ngx_memcpy(id, rn->data + rn->sn.str.len, rn->id_len);
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

    rn->attached = kind;
    rn->pid = ngx_pid;

    ngx_queue_remove(&rn->queue);
    ngx_queue_insert_head(&ctx->sh->attached, &rn->queue);

    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
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


static ngx_http_signalr_registry_node_t *
ngx_http_signalr_registry_lookup(ngx_http_signalr_registry_t *ctx,
    ngx_str_t *token)
{
    uint32_t  hash;

    hash = ngx_crc32_short(token->data, token->len);

    return (ngx_http_signalr_registry_node_t *)
               ngx_str_rbtree_lookup(&ctx->sh->rbtree, token, hash);
}


/*
 * Drops expired negotiated entries from the old end: two of them, or
 * all when the zone is full. It also checks the oldest attached entry
 * of another worker and drops it when that worker no longer exists, so
 * that a crashed worker's connections do not stay forever.
 */

static void
ngx_http_signalr_registry_expire(ngx_http_signalr_registry_t *ctx,
    ngx_uint_t all)
{
    ngx_uint_t                         n;
    ngx_queue_t                       *q;
    ngx_http_signalr_registry_node_t  *rn;

    for (n = 0; all || n < 2; n++) {

        if (ngx_queue_empty(&ctx->sh->negotiated)) {
            break;
        }

        q = ngx_queue_last(&ctx->sh->negotiated);
        rn = ngx_queue_data(q, ngx_http_signalr_registry_node_t, queue);

        if ((ngx_msec_int_t) (rn->expires - ngx_current_msec) >= 0) {
            break;
        }

        ngx_http_signalr_registry_delete(ctx, rn);
    }

    if (ngx_queue_empty(&ctx->sh->attached)) {
        return;
    }

    q = ngx_queue_last(&ctx->sh->attached);
    rn = ngx_queue_data(q, ngx_http_signalr_registry_node_t, queue);

    if (rn->pid != ngx_pid && kill(rn->pid, 0) == -1
        && ngx_errno == NGX_ESRCH)
    {
        ngx_http_signalr_registry_delete(ctx, rn);
        return;
    }

    ngx_queue_remove(q);
    ngx_queue_insert_head(&ctx->sh->attached, q);
}


static void
ngx_http_signalr_registry_delete(ngx_http_signalr_registry_t *ctx,
    ngx_http_signalr_registry_node_t *rn)
{
    ngx_queue_remove(&rn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, &rn->sn.node);
    ngx_slab_free_locked(ctx->shpool, rn);
}
