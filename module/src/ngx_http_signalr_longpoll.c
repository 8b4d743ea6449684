/*
 * The Long Polling transport (server to client; the client sends with
 * HTTP POST). The session outlives every request: it has its own pool
 * and is held by the worker that answered the connection's first poll.
 * What the session sends waits in s->out for the next poll, which is
 * either a request of this worker or one relayed from another worker
 * (s->lp->poll_pid). One poll waits at a time: a new one ends the old one
 * with 204. A poll waits up to signalr_long_polling_timeout and is then
 * answered 200 with no body; with no poll waiting, the session lives
 * signalr_disconnect_timeout, then ends and the daemon is told.
 */

#include "ngx_http_signalr_module.h"


/* a waiting local poll, in its request's pool */
typedef struct {
    ngx_http_signalr_session_t  *session;
} ngx_http_signalr_lp_poll_t;


static ngx_int_t ngx_http_signalr_lp_wait(ngx_http_signalr_session_t *s,
    ngx_http_request_t *r);
static ngx_int_t ngx_http_signalr_lp_reply(ngx_http_signalr_session_t *s,
    ngx_http_request_t *r, ngx_pid_t pid, uint32_t seq, ngx_uint_t status);
static void ngx_http_signalr_lp_poll_cleanup(void *data);
static void ngx_http_signalr_lp_answer(ngx_http_signalr_session_t *s,
    ngx_uint_t status);
static void ngx_http_signalr_lp_idle(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_lp_destroy(ngx_http_signalr_session_t *s,
    ngx_uint_t answer);
static void ngx_http_signalr_lp_timer_handler(ngx_event_t *ev);
static void ngx_http_signalr_lp_flush_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_signalr_lp_send(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len, ngx_uint_t force);
static void ngx_http_signalr_lp_close(ngx_http_signalr_session_t *s,
    int code, const char *reason);
static void ngx_http_signalr_lp_drop(ngx_http_signalr_session_t *s);


const ngx_http_signalr_transport_t  ngx_http_signalr_lp_transport = {
    ngx_string("LongPolling"),
    SR_TRANSPORT_LONG_POLLING,
    1,
    ngx_http_signalr_lp_send,
    ngx_http_signalr_lp_close,
    ngx_http_signalr_lp_drop
};


/* every long polling session of the worker, for its exit */
static ngx_queue_t  ngx_http_signalr_lp_sessions;
static ngx_uint_t   ngx_http_signalr_lp_ready;


#define ngx_http_signalr_lp_waiting(s)                                       \
    ((s)->lp->poll != NULL || (s)->lp->poll_pid != 0)


/*
 * The first poll of a connection attached to this worker: the session
 * starts, and the poll is answered at once with 200 and no body, which
 * tells the client that the transport is up.
 */

ngx_int_t
ngx_http_signalr_lp_create(ngx_http_request_t *r, ngx_http_signalr_ctx_t *ctx,
    ngx_str_t *token)
{
    ngx_pool_t                    *pool;
    ngx_http_signalr_lp_t         *lp;
    ngx_http_signalr_session_t    *s;
    ngx_http_signalr_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_signalr_module);

    pool = ngx_create_pool(1024, ngx_cycle->log);
    s = pool ? ngx_pcalloc(pool, sizeof(ngx_http_signalr_session_t)) : NULL;
    lp = s ? ngx_pcalloc(pool, sizeof(ngx_http_signalr_lp_t)) : NULL;

    if (lp == NULL || ngx_http_signalr_session_identity(s, ctx, pool)
                     != NGX_OK)
    {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        ngx_http_signalr_registry_remove(smcf->registry_zone, token);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->pool = pool;
    s->lp = lp;
    lp->session = s;
    s->registry = smcf->registry_zone;
    ngx_memcpy(s->token, token->data, token->len);
    s->token_len = token->len;
    ngx_memcpy(s->id, ctx->connection_id.data, ctx->connection_id.len);

    s->transport = &ngx_http_signalr_lp_transport;
    s->log = ngx_cycle->log;
    s->conf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    s->lp->poll_timer.handler = ngx_http_signalr_lp_timer_handler;
    s->lp->poll_timer.data = s;
    s->lp->poll_timer.log = s->log;
    s->lp->poll_timer.cancelable = 1;

    s->lp->poll_flush.handler = ngx_http_signalr_lp_flush_handler;
    s->lp->poll_flush.data = s;
    s->lp->poll_flush.log = s->log;

    if (!ngx_http_signalr_lp_ready) {
        ngx_queue_init(&ngx_http_signalr_lp_sessions);
        ngx_http_signalr_lp_ready = 1;
    }

    (void) ngx_http_signalr_session_init(s);
    ngx_queue_insert_tail(&ngx_http_signalr_lp_sessions, &s->lp->queue);
    s->polled = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "signalr connection \"%s\": long polling", s->id);

    ngx_http_signalr_lp_idle(s);

    return ngx_http_signalr_send_empty(r, NGX_HTTP_OK, NULL, 0, 0);
}


/*
 * A poll: r here, or else one relayed from worker pid. Returns what a
 * content handler does for r, NGX_OK for a relayed one.
 */

ngx_int_t
ngx_http_signalr_lp_poll(ngx_http_signalr_session_t *s,
    ngx_http_request_t *r, ngx_pid_t pid, uint32_t seq)
{
    ngx_int_t  rc;

    if (ngx_http_signalr_lp_waiting(s)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "signalr connection \"%s\": poll replaced", s->id);
        ngx_http_signalr_lp_answer(s, NGX_HTTP_NO_CONTENT);
    }

    if (s->lp->poll_timer.timer_set) {
        ngx_del_timer(&s->lp->poll_timer);
    }

    if (s->out.len) {
        rc = ngx_http_signalr_lp_reply(s, r, pid, seq, NGX_HTTP_OK);
        ngx_http_signalr_lp_idle(s);
        return rc;
    }

    /* an ended session goes once what it sent is drained */
    if (s->close_sent || s->failed) {
        rc = ngx_http_signalr_lp_reply(s, r, pid, seq, NGX_HTTP_NO_CONTENT);
        ngx_http_signalr_lp_destroy(s, 0);
        return rc;
    }

    if (r) {
        return ngx_http_signalr_lp_wait(s, r);
    }

    s->lp->poll_pid = pid;
    s->lp->poll_seq = seq;
    ngx_add_timer(&s->lp->poll_timer, s->conf->poll_timeout);

    return NGX_OK;
}


/* r waits in the content phase until data, its timeout or a new poll */

static ngx_int_t
ngx_http_signalr_lp_wait(ngx_http_signalr_session_t *s,
    ngx_http_request_t *r)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_signalr_lp_poll_t  *lp;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_signalr_lp_poll_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lp = cln->data;
    lp->session = s;
    cln->handler = ngx_http_signalr_lp_poll_cleanup;

    s->lp->poll = r;
    s->lp->poll_ctx = lp;

    /* a client that goes away ends the request, and the cleanup runs */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    /* and a graceful shutdown ends it too, instead of waiting for it */
    r->connection->idle = 1;

    r->main->count++;

    ngx_add_timer(&s->lp->poll_timer, s->conf->poll_timeout);

    return NGX_DONE;
}


static void
ngx_http_signalr_lp_poll_cleanup(void *data)
{
    ngx_http_signalr_lp_poll_t  *lp = data;

    ngx_http_signalr_session_t  *s;

    s = lp->session;

    if (s == NULL) {
        return;
    }

    s->lp->poll = NULL;
    s->lp->poll_ctx = NULL;

    ngx_http_signalr_lp_idle(s);
}


/*
 * Answers one poll with status and, for 200, everything s->out holds.
 * Returns the finalization code for a local r.
 */

static ngx_int_t
ngx_http_signalr_lp_reply(ngx_http_signalr_session_t *s,
    ngx_http_request_t *r, ngx_pid_t pid, uint32_t seq, ngx_uint_t status)
{
    size_t         len;
    ngx_int_t      rc;
    ngx_str_t      id;
    ngx_uint_t     binary;
    const u_char  *data;

    data = (status == NGX_HTTP_OK) ? s->out.data : NULL;
    len = (status == NGX_HTTP_OK) ? s->out.len : 0;
    binary = (s->protocol == SR_PROTOCOL_MSGPACK);

    if (r) {
        rc = ngx_http_signalr_send_empty(r, status, data, len, binary);

    } else {
        id.data = s->id;
        id.len = ngx_strlen(s->id);

        ngx_http_signalr_relay_answer(&id, pid, seq, status, data, len,
                                      binary);
        rc = NGX_OK;
    }

    if (status == NGX_HTTP_OK) {
        if (s->out.cap > s->conf->max_message_size) {
            sr_buf_free(&s->out);
            sr_buf_init(&s->out);

        } else {
            sr_buf_reset(&s->out);
        }
    }

    return rc;
}


/* answers the poll that waits, if one does */

static void
ngx_http_signalr_lp_answer(ngx_http_signalr_session_t *s, ngx_uint_t status)
{
    ngx_int_t                    rc;
    ngx_pid_t                    pid;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_signalr_lp_poll_t  *lp;

    if (s->lp->poll) {
        r = s->lp->poll;
        lp = s->lp->poll_ctx;
        lp->session = NULL;
        s->lp->poll = NULL;
        s->lp->poll_ctx = NULL;

        c = r->connection;
        c->idle = 0;

        rc = ngx_http_signalr_lp_reply(s, r, 0, 0, status);

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (s->lp->poll_pid) {
        pid = s->lp->poll_pid;
        s->lp->poll_pid = 0;

        (void) ngx_http_signalr_lp_reply(s, NULL, pid, s->lp->poll_seq, status);
    }
}


/* no poll waits: the session lives signalr_disconnect_timeout from now */

static void
ngx_http_signalr_lp_idle(ngx_http_signalr_session_t *s)
{
    ngx_add_timer(&s->lp->poll_timer, s->conf->disconnect_timeout);
}


/*
 * The end: the waiting poll gets 204 when answer is set, then the
 * session cleanup tells the daemon and the registry.
 */

static void
ngx_http_signalr_lp_destroy(ngx_http_signalr_session_t *s,
    ngx_uint_t answer)
{
    ngx_http_signalr_lp_poll_t  *lp;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\": long polling ends", s->id);

    if (answer) {
        ngx_http_signalr_lp_answer(s, NGX_HTTP_NO_CONTENT);

    } else if (s->lp->poll) {
        lp = s->lp->poll_ctx;
        lp->session = NULL;
        s->lp->poll->connection->idle = 0;
    }

    if (s->lp->poll_timer.timer_set) {
        ngx_del_timer(&s->lp->poll_timer);
    }

    if (s->lp->poll_flush.posted) {
        ngx_delete_posted_event(&s->lp->poll_flush);
    }

    ngx_queue_remove(&s->lp->queue);

    ngx_http_signalr_session_cleanup(s);
    ngx_destroy_pool(s->pool);
}


static void
ngx_http_signalr_lp_timer_handler(ngx_event_t *ev)
{
    ngx_http_signalr_session_t  *s = ev->data;

    if (ngx_http_signalr_lp_waiting(s)) {
        ngx_http_signalr_lp_answer(s, NGX_HTTP_OK);
        ngx_http_signalr_lp_idle(s);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "signalr connection \"%s\": no poll for %M ms, closing",
                  s->id, s->conf->disconnect_timeout);

    ngx_http_signalr_lp_destroy(s, 0);
}


/* after the current event: everything queued by then in one answer */

static void
ngx_http_signalr_lp_flush_handler(ngx_event_t *ev)
{
    ngx_http_signalr_session_t  *s = ev->data;

    if (s->failed) {
        ngx_http_signalr_lp_destroy(s, 1);
        return;
    }

    if (!ngx_http_signalr_lp_waiting(s)) {
        return;
    }

    if (s->out.len) {
        if (s->lp->poll_timer.timer_set) {
            ngx_del_timer(&s->lp->poll_timer);
        }

        ngx_http_signalr_lp_answer(s, NGX_HTTP_OK);
        ngx_http_signalr_lp_idle(s);
        return;
    }

    if (s->close_sent) {
        ngx_http_signalr_lp_destroy(s, 1);
    }
}


static ngx_int_t
ngx_http_signalr_lp_send(ngx_http_signalr_session_t *s, const u_char *data,
    size_t len, ngx_uint_t force)
{
    if (s->close_sent || s->failed) {
        return NGX_DECLINED;
    }

    if (!force && s->out.len + len > s->conf->send_queue_size) {
        ngx_http_signalr_session_overflow(s);
        return NGX_DECLINED;
    }

    if (sr_buf_append(&s->out, data, len) != SR_OK) {
        ngx_log_error(NGX_LOG_ALERT, s->log, 0,
                      "signalr connection \"%s\": no memory for "
                      "the send queue", s->id);
        ngx_http_signalr_lp_drop(s);
        return NGX_DECLINED;
    }

    s->last_sent = ngx_current_msec;

    if (ngx_http_signalr_lp_waiting(s) && !s->lp->poll_flush.posted) {
        ngx_post_event(&s->lp->poll_flush, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * The session ends once the client has polled what is queued (the Close
 * message among it), or after signalr_disconnect_timeout without a poll.
 */

static void
ngx_http_signalr_lp_close(ngx_http_signalr_session_t *s, int code,
    const char *reason)
{
    if (s->close_sent) {
        return;
    }

    s->close_sent = 1;

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (ngx_http_signalr_lp_waiting(s) && !s->lp->poll_flush.posted) {
        ngx_post_event(&s->lp->poll_flush, &ngx_posted_events);
    }
}


static void
ngx_http_signalr_lp_drop(ngx_http_signalr_session_t *s)
{
    s->failed = 1;

    if (!s->lp->poll_flush.posted) {
        ngx_post_event(&s->lp->poll_flush, &ngx_posted_events);
    }
}


/* DELETE: the latest poll is answered 204 and the connection ends */

void
ngx_http_signalr_lp_delete(ngx_http_signalr_session_t *s)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\": deleted by the client",
                   s->id);

    ngx_http_signalr_lp_destroy(s, 1);
}


/*
 * The worker exits: every session ends without answering its poll, as
 * the connections are going away with the worker anyway.
 */

void
ngx_http_signalr_lp_exit(void)
{
    ngx_queue_t            *q;
    ngx_http_signalr_lp_t  *lp;

    if (!ngx_http_signalr_lp_ready) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_signalr_lp_sessions)) {
        q = ngx_queue_head(&ngx_http_signalr_lp_sessions);
        lp = ngx_queue_data(q, ngx_http_signalr_lp_t, queue);

        ngx_http_signalr_lp_destroy(lp->session, 0);
    }
}
