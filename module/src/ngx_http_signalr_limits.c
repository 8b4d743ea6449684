/*
 * Limits shared by every worker, in shared memory zones declared by
 * signalr_limit_zone: a token bucket per key (the user, or the client
 * address) for HTTP requests and hub invocations, and counters per key
 * for concurrent connections and streams.
 *
 * A zone holds one node per key, found through an index of hashes
 * shared by every worker, and allocated from the pool of the worker
 * that created it: a zone has one partition a worker, whose nodes are
 * on a queue, most recently used first, so that idle nodes (a full
 * bucket and no connection or stream counted) expire from its tail, as
 * in nginx's limit_req. A user's connections mostly stay on the worker
 * that took the first one, so a worker mostly touches its own pages and
 * the index (ngx_http_signalr_shm.c says why that matters).
 *
 * Design note: nginx's own limit_req and limit_conn cannot count what
 * happens inside a WebSocket (invocations, streams) and limit_req cannot
 * run after the access phase, where the user becomes known; so the
 * bucket is kept here, in the same leaky-bucket arithmetic.
 */

#include "ngx_http_signalr_module.h"


/* longest key a zone accepts; a user id is at most 1024 bytes */
#define NGX_HTTP_SIGNALR_LIMIT_MAX_KEY  2048

/* invocations one connection may hold back before it is closed */
#define NGX_HTTP_SIGNALR_MAX_DELAYED    1024


/* the part of the zone's pages left to the index, in percent */
#define NGX_HTTP_SIGNALR_LIMIT_INDEX    25


typedef struct {
    ngx_slab_pool_t              *pool;
    ngx_queue_t                   queue;    /* its nodes, by last use */
} ngx_http_signalr_limit_part_t;


typedef struct {
    ngx_http_signalr_index_t      index;    /* in the zone's own pool */
    ngx_uint_t                    nparts;
    ngx_http_signalr_limit_part_t  parts[1];
} ngx_http_signalr_limit_sh_t;


typedef struct {
    ngx_http_signalr_limit_sh_t  *sh;
    ngx_slab_pool_t              *shpool;
    ngx_cycle_t                  *cycle;
    ngx_http_complex_value_t      key;
    ngx_uint_t                    rate;     /* milli-calls per second */
} ngx_http_signalr_limit_zone_t;


typedef struct {
    ngx_queue_t                   queue;
    ngx_msec_t                    last;
    int64_t                       tokens;   /* milli-calls; < 0: waiting */
    uint32_t                      connections;
    uint32_t                      streams;
    uint16_t                      len;      /* of the key */
    u_char                        bucket;   /* tokens is set */
    u_char                        part;     /* the pool holding it */
    u_char                        data[1];
} ngx_http_signalr_limit_node_t;


/* a hub message held back until the bucket has a token for it */
typedef struct {
    ngx_queue_t                   queue;
    ngx_msec_t                    due;
    size_t                        len;
    u_char                        data[1];
} ngx_http_signalr_delayed_t;


static ngx_int_t ngx_http_signalr_limit_zone_arg(ngx_str_t *value,
    ngx_str_t *name, ssize_t *size);
static ngx_int_t ngx_http_signalr_limit_rate_arg(ngx_str_t *value,
    ngx_uint_t *rate);
static ngx_int_t ngx_http_signalr_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_signalr_limit_arg(ngx_command_t *cmd,
    ngx_str_t *value, ngx_http_signalr_limit_t *lim);
static ngx_http_signalr_limit_node_t *ngx_http_signalr_limit_node(
    ngx_http_signalr_limit_zone_t *ctx, ngx_str_t *key, ngx_uint_t create);
static ngx_int_t ngx_http_signalr_limit_split(
    ngx_http_signalr_limit_zone_t *ctx, ngx_shm_zone_t *shm_zone);
static ngx_uint_t ngx_http_signalr_limit_match(void *entry, void *key);
static ngx_http_signalr_limit_node_t *ngx_http_signalr_limit_alloc(
    ngx_http_signalr_limit_zone_t *ctx, size_t size);
static void ngx_http_signalr_limit_expire(ngx_http_signalr_limit_zone_t *ctx,
    ngx_uint_t p, ngx_uint_t force);
static ngx_uint_t ngx_http_signalr_limit_idle(
    ngx_http_signalr_limit_zone_t *ctx, ngx_http_signalr_limit_node_t *ln);
static void ngx_http_signalr_limit_refill(ngx_http_signalr_limit_zone_t *ctx,
    ngx_http_signalr_limit_node_t *ln, int64_t cap);
static ngx_int_t ngx_http_signalr_limit_take(ngx_http_signalr_limit_t *lim,
    ngx_str_t *key, ngx_msec_t *delay);
static ngx_int_t ngx_http_signalr_limit_count(ngx_http_signalr_limit_t *lim,
    ngx_str_t *key, ngx_uint_t streams, ngx_int_t n);
static ngx_int_t ngx_http_signalr_limit_key(ngx_http_request_t *r,
    ngx_http_signalr_limit_t *lim, ngx_str_t *key);
static ngx_int_t ngx_http_signalr_limits_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_signalr_limits_wait(ngx_http_request_t *r,
    ngx_msec_t delay);
static void ngx_http_signalr_limits_delay(ngx_http_request_t *r);
static ngx_int_t ngx_http_signalr_limits_reject(ngx_http_request_t *r,
    ngx_uint_t status, ngx_msec_t retry, const char *detail);
static ngx_http_signalr_delay_t *ngx_http_signalr_delay_create(
    ngx_http_signalr_session_t *s);
static void ngx_http_signalr_delay_handler(ngx_event_t *ev);
static void ngx_http_signalr_delay_drain(ngx_http_signalr_session_t *s,
    ngx_uint_t forward);
static char *ngx_http_signalr_limit_check(ngx_conf_t *cf,
    ngx_http_signalr_limit_t *lim, const char *name, ngx_uint_t rate);


/*
 * signalr_limit_zone key zone=name:size [rate=N r/s | N r/m];
 * The key is a complex value, usually $signalr_user or
 * $binary_remote_addr; an empty key is not limited.
 */

char *
ngx_http_signalr_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t                            size;
    ngx_str_t                         *value, name;
    ngx_uint_t                         i;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_signalr_limit_zone_t     *ctx;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_signalr_limit_zone_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    /* worker_processes is known only once the whole file is read */
    ctx->cycle = cf->cycle;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &ctx->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    size = 0;
    ngx_str_null(&name);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0
            && ngx_http_signalr_limit_zone_arg(&value[i], &name, &size)
               == NGX_OK)
        {
            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0
            && ngx_http_signalr_limit_rate_arg(&value[i], &ctx->rate)
               == NGX_OK)
        {
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_signalr_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V \"%V\" is already declared",
                           &cmd->name, &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_signalr_limit_init_zone;
    shm_zone->data = ctx;

    return NGX_CONF_OK;
}


/* "zone=name:size" */

static ngx_int_t
ngx_http_signalr_limit_zone_arg(ngx_str_t *value, ngx_str_t *name,
    ssize_t *size)
{
    u_char     *p, *last;
    ngx_str_t   s;

    name->data = value->data + 5;
    last = value->data + value->len;

    p = ngx_strlchr(name->data, last, ':');

    if (p == NULL || p == name->data) {
        return NGX_ERROR;
    }

    name->len = p - name->data;

    s.data = p + 1;
    s.len = last - s.data;

    *size = ngx_parse_size(&s);

    return *size == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/* "rate=N r/s" or "rate=N r/m", kept as milli-calls per second */

static ngx_int_t
ngx_http_signalr_limit_rate_arg(ngx_str_t *value, ngx_uint_t *rate)
{
    size_t     len;
    u_char    *unit;
    ngx_int_t  n, scale;

    len = value->len;

    if (len < 9) {
        return NGX_ERROR;
    }

    unit = value->data + len - 3;

    if (ngx_strncmp(unit, "r/s", 3) == 0) {
        scale = 1;

    } else if (ngx_strncmp(unit, "r/m", 3) == 0) {
        scale = 60;

    } else {
        return NGX_ERROR;
    }

    n = ngx_atoi(value->data + 5, len - 8);

    if (n <= 0 || n > 1000000) {
        return NGX_ERROR;
    }

    *rate = n * 1000 / scale;

    return *rate ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_signalr_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_signalr_limit_zone_t  *octx = data;

    ngx_http_signalr_limit_zone_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        if (ctx->key.value.len != octx->key.value.len
            || ngx_strncmp(ctx->key.value.data, octx->key.value.data,
                           ctx->key.value.len)
               != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "signalr_limit_zone \"%V\" uses the \"%V\" key "
                          "while previously it used the \"%V\" key",
                          &shm_zone->shm.name, &ctx->key.value,
                          &octx->key.value);
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    return ngx_http_signalr_limit_split(ctx, shm_zone);
}


/* the partitions get what the index does not keep of the zone */

static ngx_int_t
ngx_http_signalr_limit_split(ngx_http_signalr_limit_zone_t *ctx,
    ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t        i, n, keep, pages;
    ngx_slab_pool_t  *pools[NGX_HTTP_SIGNALR_MAX_PARTS];

    pages = ngx_http_signalr_shm_pages(ctx->shpool);
    keep = ngx_max(pages * NGX_HTTP_SIGNALR_LIMIT_INDEX / 100, 4);

    n = ngx_http_signalr_shm_parts(ctx->cycle, pages - keep);

    if (ngx_http_signalr_shm_split(ctx->shpool, keep, n, pools) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_signalr_name_zone(shm_zone, ctx->shpool,
                                   "signalr_limit_zone")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              offsetof(ngx_http_signalr_limit_sh_t, parts)
                              + n * sizeof(ngx_http_signalr_limit_part_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;
    ctx->sh->nparts = n;

    ngx_http_signalr_index_init(&ctx->sh->index, (u_char *) ctx->shpool);

    for (i = 0; i < n; i++) {
        ctx->sh->parts[i].pool = pools[i];
        ngx_queue_init(&ctx->sh->parts[i].queue);
    }

    ngx_http_signalr_shm_done(ctx->shpool, n, pools);

    return NGX_OK;
}


/*
 * signalr_limit_requests|signalr_limit_invocations zone=name [burst=N]
 * [queue=N]; signalr_limit_connections|signalr_limit_streams zone=name N.
 * cmd->post is non-NULL for the two rate limits.
 */

char *
ngx_http_signalr_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_signalr_limit_t  **field, *lim;

    field = (ngx_http_signalr_limit_t **) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        *field = NULL;
        return NGX_CONF_OK;
    }

    lim = ngx_pcalloc(cf->pool, sizeof(ngx_http_signalr_limit_t));
    if (lim == NULL) {
        return NGX_CONF_ERROR;
    }

    lim->burst = 1;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            value[i].data += 5;
            value[i].len -= 5;

            lim->zone = ngx_shared_memory_add(cf, &value[i], 0,
                                              &ngx_http_signalr_module);
            if (lim->zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_http_signalr_limit_arg(cmd, &value[i], lim) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (lim->zone == NULL || (cmd->post == NULL && lim->max == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs a zone%s", &cmd->name,
                           cmd->post ? "" : " and a number");
        return NGX_CONF_ERROR;
    }

    *field = lim;

    return NGX_CONF_OK;
}


/* burst= and queue= of a rate limit, or the number of a counting one */

static ngx_int_t
ngx_http_signalr_limit_arg(ngx_command_t *cmd, ngx_str_t *value,
    ngx_http_signalr_limit_t *lim)
{
    ngx_int_t  n;

    if (cmd->post == NULL) {
        n = ngx_atoi(value->data, value->len);
        if (n <= 0) {
            return NGX_ERROR;
        }

        lim->max = n;
        return NGX_OK;
    }

    if (value->len < 7) {
        return NGX_ERROR;
    }

    n = ngx_atoi(value->data + 6, value->len - 6);

    if (n == NGX_ERROR || n > 1000000) {
        return NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "burst=", 6) == 0 && n > 0) {
        lim->burst = n;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "queue=", 6) == 0) {
        lim->queue = n;
        return NGX_OK;
    }

    return NGX_ERROR;
}


char *
ngx_http_signalr_limits_merge(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *prev, ngx_http_signalr_loc_conf_t *conf)
{
    ngx_conf_merge_ptr_value(conf->limit_requests, prev->limit_requests,
                             NULL);
    ngx_conf_merge_ptr_value(conf->limit_invocations,
                             prev->limit_invocations, NULL);
    ngx_conf_merge_ptr_value(conf->limit_connections,
                             prev->limit_connections, NULL);
    ngx_conf_merge_ptr_value(conf->limit_streams, prev->limit_streams,
                             NULL);

    if (ngx_http_signalr_limit_check(cf, conf->limit_requests,
                                     "signalr_limit_requests", 1)
        != NGX_CONF_OK
        || ngx_http_signalr_limit_check(cf, conf->limit_invocations,
                                        "signalr_limit_invocations", 1)
           != NGX_CONF_OK
        || ngx_http_signalr_limit_check(cf, conf->limit_connections,
                                        "signalr_limit_connections", 0)
           != NGX_CONF_OK
        || ngx_http_signalr_limit_check(cf, conf->limit_streams,
                                        "signalr_limit_streams", 0)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the whole http block is parsed when locations merge: zones are known */

static char *
ngx_http_signalr_limit_check(ngx_conf_t *cf, ngx_http_signalr_limit_t *lim,
    const char *name, ngx_uint_t rate)
{
    ngx_http_signalr_limit_zone_t  *ctx;

    if (lim == NULL) {
        return NGX_CONF_OK;
    }

    ctx = lim->zone->data;

    if (ctx == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: unknown signalr_limit_zone \"%V\"",
                           name, &lim->zone->shm.name);
        return NGX_CONF_ERROR;
    }

    if (rate && ctx->rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: signalr_limit_zone \"%V\" has no rate",
                           name, &lim->zone->shm.name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The node of key, moved to the head of its queue; created when create
 * is set. Called with the zone locked. NULL: not found, or no memory.
 */

static ngx_http_signalr_limit_node_t *
ngx_http_signalr_limit_node(ngx_http_signalr_limit_zone_t *ctx,
    ngx_str_t *key, ngx_uint_t create)
{
    uint32_t                        hash;
    ngx_queue_t                    *head;
    ngx_http_signalr_limit_node_t  *ln;

    hash = ngx_crc32_short(key->data, key->len);

    ln = ngx_http_signalr_index_find(&ctx->sh->index, hash,
                                     ngx_http_signalr_limit_match, key);

    if (ln) {
        head = &ctx->sh->parts[ln->part].queue;

        /* the node in front stays, its neighbours are not touched */
        if (ngx_queue_head(head) != &ln->queue) {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(head, &ln->queue);
        }

        return ln;
    }

    if (!create || key->len > 0xffff) {
        return NULL;
    }

    ln = ngx_http_signalr_limit_alloc(ctx,
                                      offsetof(ngx_http_signalr_limit_node_t,
                                               data)
                                      + key->len);
    if (ln == NULL) {
        return NULL;
    }

    if (ngx_http_signalr_index_insert(&ctx->sh->index, ctx->shpool, hash,
                                      ln)
        != NGX_OK)
    {
        ngx_slab_free_locked(ctx->sh->parts[ln->part].pool, ln);
        return NULL;
    }

    ngx_memcpy(ln->data, key->data, key->len);

    ln->len = (uint16_t) key->len;
    ln->last = ngx_current_msec;
    ln->tokens = 0;
    ln->bucket = 0;
    ln->connections = 0;
    ln->streams = 0;

    ngx_queue_insert_head(&ctx->sh->parts[ln->part].queue, &ln->queue);

    return ln;
}


static ngx_uint_t
ngx_http_signalr_limit_match(void *entry, void *key)
{
    ngx_str_t                      *k = key;
    ngx_http_signalr_limit_node_t  *ln = entry;

    return ln->len == k->len && ngx_memcmp(ln->data, k->data, k->len) == 0;
}


/*
 * Room for a node in the pool of this worker, or of the first other one
 * that has it, idle nodes dropped first. Its part is set.
 */

static ngx_http_signalr_limit_node_t *
ngx_http_signalr_limit_alloc(ngx_http_signalr_limit_zone_t *ctx,
    size_t size)
{
    ngx_uint_t                      k, p, n;
    ngx_http_signalr_limit_node_t  *ln;

    n = ctx->sh->nparts;

    for (k = 0; k < n; k++) {
        p = (ngx_http_signalr_shm_own(n) + k) % n;

        ngx_http_signalr_limit_expire(ctx, p, 0);

        ln = ngx_slab_alloc_locked(ctx->sh->parts[p].pool, size);

        if (ln == NULL) {
            ngx_http_signalr_limit_expire(ctx, p, 1);
            ln = ngx_slab_alloc_locked(ctx->sh->parts[p].pool, size);
        }

        if (ln) {
            ln->part = (u_char) p;
            return ln;
        }
    }

    return NULL;
}


/*
 * Drops idle nodes of partition p from the tail: up to two per call, or
 * with force (the pool is full) up to ten, the oldest bucket state
 * included. A node that counts a connection or a stream is never
 * dropped.
 */

static void
ngx_http_signalr_limit_expire(ngx_http_signalr_limit_zone_t *ctx,
    ngx_uint_t p, ngx_uint_t force)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_signalr_limit_part_t  *part;
    ngx_http_signalr_limit_node_t  *ln;

    part = &ctx->sh->parts[p];

    for (n = 0; n < (force ? 10 : 2); n++) {

        if (ngx_queue_empty(&part->queue)) {
            return;
        }

        q = ngx_queue_last(&part->queue);
        ln = ngx_queue_data(q, ngx_http_signalr_limit_node_t, queue);

        if (ln->connections || ln->streams) {
            return;
        }

        if (!force && !ngx_http_signalr_limit_idle(ctx, ln)) {
            return;
        }

        ngx_queue_remove(q);
        ngx_http_signalr_index_delete(&ctx->sh->index,
                                      ngx_crc32_short(ln->data, ln->len),
                                      ln);
        ngx_slab_free_locked(part->pool, ln);
    }
}


/*
 * Whether forgetting the node's bucket loses nothing: it was refilled
 * by a thousand calls or more since it was last used, or an hour went
 * by (a forgotten bucket starts full).
 */

static ngx_uint_t
ngx_http_signalr_limit_idle(ngx_http_signalr_limit_zone_t *ctx,
    ngx_http_signalr_limit_node_t *ln)
{
    ngx_msec_int_t  ms;

    if (!ln->bucket) {
        return 1;
    }

    ms = (ngx_msec_int_t) (ngx_current_msec - ln->last);

    return ms >= 3600000
           || ln->tokens + (int64_t) ms * ctx->rate / 1000 >= 1000000;
}


static void
ngx_http_signalr_limit_refill(ngx_http_signalr_limit_zone_t *ctx,
    ngx_http_signalr_limit_node_t *ln, int64_t cap)
{
    ngx_msec_int_t  ms;

    ms = (ngx_msec_int_t) (ngx_current_msec - ln->last);

    if (ms < 0) {
        ms = 0;
    }

    /* past an hour any bucket is full: that also bounds the product */
    if (ms > 3600000) {
        ms = 3600000;
    }

    ln->tokens += (int64_t) ms * ctx->rate / 1000;

    if (ln->tokens > cap) {
        ln->tokens = cap;
    }

    ln->last = ngx_current_msec;
}


/*
 * Takes one token for key. NGX_OK with *delay 0, or how long the call
 * is to wait when the bucket is empty and lim->queue allows it to;
 * NGX_BUSY with *delay the time after which a call would pass; NGX_ERROR
 * when the zone has no room for the key.
 */

static ngx_int_t
ngx_http_signalr_limit_take(ngx_http_signalr_limit_t *lim, ngx_str_t *key,
    ngx_msec_t *delay)
{
    int64_t                         cap, floor;
    ngx_http_signalr_limit_zone_t  *ctx;
    ngx_http_signalr_limit_node_t  *ln;

    ctx = lim->zone->data;
    cap = (int64_t) lim->burst * 1000;
    floor = -(int64_t) lim->queue * 1000;

    *delay = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ln = ngx_http_signalr_limit_node(ctx, key, 1);

    if (ln == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_ERROR;
    }

    if (!ln->bucket) {
        ln->bucket = 1;
        ln->tokens = cap;
        ln->last = ngx_current_msec;

    } else {
        ngx_http_signalr_limit_refill(ctx, ln, cap);
    }

    if (ln->tokens - 1000 < floor) {
        *delay = (ngx_msec_t) ((floor + 1000 - ln->tokens) * 1000
                               / ctx->rate) + 1;
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_BUSY;
    }

    ln->tokens -= 1000;

    if (ln->tokens < 0) {
        *delay = (ngx_msec_t) (-ln->tokens * 1000 / ctx->rate) + 1;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/*
 * Adds n (1 or -1) to the connection or stream count of key. NGX_BUSY
 * when one more would pass lim->max, NGX_ERROR without room in the zone.
 */

static ngx_int_t
ngx_http_signalr_limit_count(ngx_http_signalr_limit_t *lim, ngx_str_t *key,
    ngx_uint_t streams, ngx_int_t n)
{
    uint32_t                       *count;
    ngx_http_signalr_limit_zone_t  *ctx;
    ngx_http_signalr_limit_node_t  *ln;

    ctx = lim->zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ln = ngx_http_signalr_limit_node(ctx, key, n > 0);

    if (ln == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return n > 0 ? NGX_ERROR : NGX_OK;
    }

    count = streams ? &ln->streams : &ln->connections;

    if (n > 0 && (*count >= lim->max || *count == 0xffffffff)) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_BUSY;
    }

    if (n > 0) {
        (*count)++;

    } else if (*count) {
        (*count)--;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/* evaluates the zone's key; NGX_DECLINED when it is empty */

static ngx_int_t
ngx_http_signalr_limit_key(ngx_http_request_t *r,
    ngx_http_signalr_limit_t *lim, ngx_str_t *key)
{
    ngx_http_signalr_limit_zone_t  *ctx;

    ctx = lim->zone->data;

    if (ngx_http_complex_value(r, &ctx->key, key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (key->len == 0) {
        return NGX_DECLINED;
    }

    if (key->len > NGX_HTTP_SIGNALR_LIMIT_MAX_KEY) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "the key of signalr_limit_zone \"%V\" is longer "
                      "than %d bytes", &lim->zone->shm.name,
                      NGX_HTTP_SIGNALR_LIMIT_MAX_KEY);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_signalr_limits_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* nginx runs a phase's handlers last registered first: call this
     * before ngx_http_signalr_auth_init(), so the user is known here */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_signalr_limits_handler;

    return NGX_OK;
}


/*
 * signalr_limit_requests in the access phase: a request over the rate
 * waits (queue) or is answered 429 with Retry-After. On a hub location
 * that counts the negotiate and upgrade requests.
 */

static ngx_int_t
ngx_http_signalr_limits_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     key;
    ngx_msec_t                    delay;
    ngx_http_signalr_ctx_t       *ctx;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    if (slcf->limit_requests == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_signalr_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->rate_checked) {
        return NGX_DECLINED;
    }

    rc = ngx_http_signalr_limit_key(r, slcf->limit_requests, &key);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->rate_checked = 1;

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    rc = ngx_http_signalr_limit_take(slcf->limit_requests, &key, &delay);

    if (rc == NGX_ERROR) {
        return ngx_http_signalr_limits_reject(r,
                                              NGX_HTTP_SERVICE_UNAVAILABLE,
                                              1000, "limit zone is full");
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "signalr request limited by zone \"%V\"",
                      &slcf->limit_requests->zone->shm.name);

        return ngx_http_signalr_limits_reject(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                              delay, "rate limit exceeded");
    }

    if (delay == 0) {
        return NGX_DECLINED;
    }

    return ngx_http_signalr_limits_wait(r, delay);
}


/*
 * Parks the request on its write timer, as limit_req does; the access
 * phase runs again after it and finds ctx->rate_checked set.
 */

static ngx_int_t
ngx_http_signalr_limits_wait(ngx_http_request_t *r, ngx_msec_t delay)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "signalr request delayed %M ms", delay);

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_signalr_limits_delay;

    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, delay);

    return NGX_AGAIN;
}


/* the write timer of a delayed request ran out: its phases go on */

static void
ngx_http_signalr_limits_delay(ngx_http_request_t *r)
{
    ngx_event_t  *wev;

    wev = r->connection->write;

    if (wev->delayed) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_signalr_limits_reject(ngx_http_request_t *r, ngx_uint_t status,
    ngx_msec_t retry, const char *detail)
{
    ngx_int_t   rc;
    ngx_str_t   value;
    ngx_uint_t  seconds;

    seconds = (retry + 999) / 1000;

    value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%ui", seconds ? seconds : 1)
                - value.data;

    if (ngx_http_signalr_add_header(r, "Retry-After", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_signalr_send_problem(r, status, detail);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * At the upgrade: finds the keys of the hub's limits and counts the
 * connection. NGX_OK, or the status to refuse the WebSocket with.
 */

ngx_int_t
ngx_http_signalr_limits_attach(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char **detail)
{
    ngx_int_t                     rc;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = s->conf;

    s->limits_ready = 1;

    *detail = "internal error";

    if (slcf->limit_invocations
        && ngx_http_signalr_limit_key(r, slcf->limit_invocations,
                                      &s->invocations_key)
           == NGX_ERROR)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (slcf->limit_streams
        && ngx_http_signalr_limit_key(r, slcf->limit_streams,
                                      &s->streams_key)
           == NGX_ERROR)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (slcf->limit_connections == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_signalr_limit_key(r, slcf->limit_connections,
                                    &s->connections_key);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    rc = ngx_http_signalr_limit_count(slcf->limit_connections,
                                      &s->connections_key, 0, 1);

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "signalr connection refused: %ui connections in "
                      "zone \"%V\"", slcf->limit_connections->max,
                      &slcf->limit_connections->zone->shm.name);
        *detail = "too many connections";
        return NGX_HTTP_TOO_MANY_REQUESTS;
    }

    if (rc != NGX_OK) {
        *detail = "limit zone is full";
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    s->counted = 1;

    return NGX_OK;
}


/*
 * A negotiate of a user already at signalr_limit_connections: NGX_BUSY.
 * Only a hint, counted at the upgrade, so that the client learns early.
 */

ngx_int_t
ngx_http_signalr_limits_negotiate(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf)
{
    ngx_int_t                       rc;
    ngx_str_t                       key;
    ngx_http_signalr_limit_t       *lim;
    ngx_http_signalr_limit_zone_t  *ctx;
    ngx_http_signalr_limit_node_t  *ln;

    lim = slcf->limit_connections;

    if (lim == NULL || ngx_http_signalr_limit_key(r, lim, &key) != NGX_OK) {
        return NGX_OK;
    }

    ctx = lim->zone->data;
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ln = ngx_http_signalr_limit_node(ctx, &key, 0);

    if (ln && ln->connections >= lim->max) {
        rc = NGX_BUSY;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* from the session's cleanup, after its streams were released */

void
ngx_http_signalr_limits_detach(ngx_http_signalr_session_t *s)
{
    if (!s->limits_ready) {
        return;
    }

    ngx_http_signalr_delay_clear(s);

    if (s->counted) {
        (void) ngx_http_signalr_limit_count(s->conf->limit_connections,
                                            &s->connections_key, 0, -1);
        s->counted = 0;
    }
}


/*
 * One Invocation or StreamInvocation against signalr_limit_invocations:
 * NGX_OK with *delay 0 or the time to hold it back, NGX_BUSY over the
 * rate, NGX_ERROR when the zone has no room.
 */

ngx_int_t
ngx_http_signalr_limits_invocation(ngx_http_signalr_session_t *s,
    ngx_msec_t *delay)
{
    *delay = 0;

    if (s->conf->limit_invocations == NULL || s->invocations_key.len == 0) {
        return NGX_OK;
    }

    return ngx_http_signalr_limit_take(s->conf->limit_invocations,
                                       &s->invocations_key, delay);
}


/* one more stream of the connection: NGX_BUSY over a stream limit */

ngx_int_t
ngx_http_signalr_limits_stream_acquire(ngx_http_signalr_session_t *s)
{
    ngx_int_t  rc;

    if (s->conf->max_streams && s->nstreams >= s->conf->max_streams) {
        return NGX_BUSY;
    }

    if (s->conf->limit_streams && s->streams_key.len) {
        rc = ngx_http_signalr_limit_count(s->conf->limit_streams,
                                          &s->streams_key, 1, 1);
        if (rc != NGX_OK) {
            return NGX_BUSY;
        }
    }

    s->nstreams++;

    return NGX_OK;
}


void
ngx_http_signalr_limits_stream_release(ngx_http_signalr_session_t *s)
{
    if (s->nstreams == 0) {
        return;
    }

    s->nstreams--;

    if (s->conf->limit_streams && s->streams_key.len) {
        (void) ngx_http_signalr_limit_count(s->conf->limit_streams,
                                            &s->streams_key, 1, -1);
    }
}


/*
 * Holds a hub message (MessagePack, unframed) back for delay ms; with
 * others already held, after them, so that the daemon sees the client's
 * order. NGX_DECLINED when the connection holds too much already.
 */

ngx_int_t
ngx_http_signalr_delay_push(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len, ngx_msec_t delay)
{
    ngx_http_signalr_delay_t    *dl;
    ngx_http_signalr_delayed_t  *d;

    dl = s->delay;

    if (dl && (dl->n >= NGX_HTTP_SIGNALR_MAX_DELAYED
               || dl->bytes + len > s->conf->send_queue_size))
    {
        return NGX_DECLINED;
    }

    if (dl == NULL) {
        dl = ngx_http_signalr_delay_create(s);
        if (dl == NULL) {
            return NGX_ERROR;
        }
    }

    d = ngx_alloc(offsetof(ngx_http_signalr_delayed_t, data) + len,
                  s->log);
    if (d == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(d->data, data, len);
    d->len = len;
    d->due = ngx_current_msec + delay;

    ngx_queue_insert_tail(&dl->queue, &d->queue);
    dl->n++;
    dl->bytes += len;

    if (!dl->timer.timer_set) {
        ngx_add_timer(&dl->timer, delay ? delay : 1);
    }

    return NGX_OK;
}


/*
 * The held-back queue and its timer exist only while something is held
 * back: most connections never hit the rate, and keep none.
 */

static ngx_http_signalr_delay_t *
ngx_http_signalr_delay_create(ngx_http_signalr_session_t *s)
{
    ngx_http_signalr_delay_t  *dl;

    dl = ngx_calloc(sizeof(ngx_http_signalr_delay_t), s->log);
    if (dl == NULL) {
        return NULL;
    }

    ngx_queue_init(&dl->queue);

    dl->timer.handler = ngx_http_signalr_delay_handler;
    dl->timer.data = s;
    dl->timer.log = s->log;
    dl->timer.cancelable = 1;

    s->delay = dl;

    return dl;
}


/* forwards what is due, in order, and waits for the next one */

static void
ngx_http_signalr_delay_handler(ngx_event_t *ev)
{
    ngx_queue_t                 *q;
    ngx_msec_int_t               wait;
    ngx_http_signalr_session_t  *s = ev->data;
    ngx_http_signalr_delay_t    *dl;
    ngx_http_signalr_delayed_t  *d;

    dl = s->delay;

    while (!ngx_queue_empty(&dl->queue)) {

        q = ngx_queue_head(&dl->queue);
        d = ngx_queue_data(q, ngx_http_signalr_delayed_t, queue);

        wait = (ngx_msec_int_t) (d->due - ngx_current_msec);

        if (wait > 0) {
            ngx_add_timer(&dl->timer, (ngx_msec_t) wait);
            return;
        }

        ngx_queue_remove(q);
        dl->n--;
        dl->bytes -= d->len;

        if (!s->close_sent && ngx_http_signalr_link_is_up()) {
            (void) ngx_http_signalr_link_invoke(s, d->data, d->len);
        }

        ngx_free(d);

        /* a link that failed on the way emptied the queue already */
        if (s->delay != dl) {
            return;
        }
    }

    s->delay = NULL;
    ngx_free(dl);
}


void
ngx_http_signalr_delay_clear(ngx_http_signalr_session_t *s)
{
    ngx_http_signalr_delay_drain(s, 0);
}


/*
 * Forwards every held-back message at once, due or not: the client was
 * acknowledged for them, so a connection that is parked must not lose
 * them (docs/reconnect.md).
 */

void
ngx_http_signalr_delay_flush(ngx_http_signalr_session_t *s)
{
    ngx_http_signalr_delay_drain(s, 1);
}


/* empties the held-back queue, forwarding its messages or not */

static void
ngx_http_signalr_delay_drain(ngx_http_signalr_session_t *s,
    ngx_uint_t forward)
{
    ngx_queue_t                 *q;
    ngx_http_signalr_delay_t    *dl;
    ngx_http_signalr_delayed_t  *d;

    dl = s->delay;

    if (dl == NULL) {
        return;
    }

    /* a forward below may not push again: nothing is held back meanwhile */
    s->delay = NULL;

    if (dl->timer.timer_set) {
        ngx_del_timer(&dl->timer);
    }

    while (!ngx_queue_empty(&dl->queue)) {
        q = ngx_queue_head(&dl->queue);
        d = ngx_queue_data(q, ngx_http_signalr_delayed_t, queue);

        ngx_queue_remove(q);

        if (forward && ngx_http_signalr_link_is_up()) {
            (void) ngx_http_signalr_link_invoke(s, d->data, d->len);
        }

        ngx_free(d);
    }

    ngx_free(dl);
}
