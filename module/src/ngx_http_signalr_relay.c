/*
 * The relay: a request of an HTTP transport (a POST, a poll, a DELETE)
 * that reaches another worker than the one holding its connection is
 * sent there through the daemon link as a FORWARD frame, and waits here
 * for the FORWARDED answer (docs/transports.md, docs/ipc.md).
 *
 * Waiting requests are bounded in number and in time, and all are
 * answered 503 when the link goes down, since their answers would never
 * come. The owner side serves a FORWARD as it would the request itself.
 */

#include "ngx_http_signalr_module.h"


/* requests of this worker waiting for their answer at once */
#define NGX_HTTP_SIGNALR_RELAY_MAX      4096

/* how long a relayed answer may take, beyond a poll's own timeout */
#define NGX_HTTP_SIGNALR_RELAY_TIMEOUT  10000


/* a relayed request, in its request's pool */
typedef struct {
    ngx_rbtree_node_t            node;      /* key: seq */
    ngx_queue_t                  queue;
    ngx_http_request_t          *request;
    ngx_event_t                  timer;
    ngx_uint_t                   kind;      /* SR_IPC_FORWARD_* */
    unsigned                     waiting:1;
} ngx_http_signalr_forward_t;


static void ngx_http_signalr_relay_cleanup(void *data);
static void ngx_http_signalr_relay_unlink(ngx_http_signalr_forward_t *f);
static void ngx_http_signalr_relay_finish(ngx_http_signalr_forward_t *f,
    ngx_uint_t status, const u_char *data, size_t len, ngx_uint_t binary);
static void ngx_http_signalr_relay_timeout(ngx_event_t *ev);
static void ngx_http_signalr_relay_down_handler(ngx_event_t *ev);
static void ngx_http_signalr_relay_serve(ngx_str_t *id,
    sr_ipc_relay_t *relay);
static ngx_http_signalr_forward_t *ngx_http_signalr_relay_lookup(
    uint32_t seq);


static ngx_rbtree_t       ngx_http_signalr_forwards;
static ngx_rbtree_node_t  ngx_http_signalr_forwards_sentinel;
static ngx_queue_t        ngx_http_signalr_forwards_queue;
static ngx_uint_t         ngx_http_signalr_nforwards;
static uint32_t           ngx_http_signalr_forward_seq;
static ngx_event_t        ngx_http_signalr_relay_down;


void
ngx_http_signalr_relay_init(void)
{
    ngx_rbtree_init(&ngx_http_signalr_forwards,
                    &ngx_http_signalr_forwards_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&ngx_http_signalr_forwards_queue);

    ngx_http_signalr_nforwards = 0;
    ngx_http_signalr_forward_seq = 0;

    ngx_memzero(&ngx_http_signalr_relay_down, sizeof(ngx_event_t));
    ngx_http_signalr_relay_down.handler = ngx_http_signalr_relay_down_handler;
    ngx_http_signalr_relay_down.log = ngx_cycle->log;
}


/*
 * Sends r to the worker holding its connection (ctx->owner) and makes
 * it wait for the answer. Returns what a content handler does.
 */

ngx_int_t
ngx_http_signalr_relay_forward(ngx_http_request_t *r,
    ngx_http_signalr_ctx_t *ctx, ngx_uint_t kind, const u_char *data,
    size_t len)
{
    ngx_msec_t                    timeout;
    sr_ipc_relay_t                relay;
    ngx_pool_cleanup_t           *cln;
    ngx_http_signalr_forward_t   *f;
    ngx_http_signalr_loc_conf_t  *slcf;

    if (ngx_http_signalr_nforwards >= NGX_HTTP_SIGNALR_RELAY_MAX
        || !ngx_http_signalr_link_is_up())
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "signalr connection \"%V\" is held by worker %P, "
                      "which cannot be reached now", &ctx->connection_id,
                      ctx->owner);
        return ngx_http_signalr_send_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "the connection cannot be "
                                             "reached now");
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_signalr_forward_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f = cln->data;
    ngx_memzero(f, sizeof(ngx_http_signalr_forward_t));
    cln->handler = ngx_http_signalr_relay_cleanup;

    if (++ngx_http_signalr_forward_seq == 0) {
        ngx_http_signalr_forward_seq = 1;
    }

    relay.pid = (uint32_t) ctx->owner;
    relay.seq = ngx_http_signalr_forward_seq;
    relay.code = (uint16_t) kind;
    relay.flags = 0;
    relay.data = data;
    relay.data_len = len;

    if (ngx_http_signalr_link_relay(SR_IPC_FORWARD, &ctx->connection_id,
                                    &relay)
        != NGX_OK)
    {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "the connection cannot be "
                                             "reached now");
    }

    f->request = r;
    f->kind = kind;
    f->node.key = relay.seq;
    f->waiting = 1;

    ngx_rbtree_insert(&ngx_http_signalr_forwards, &f->node);
    ngx_queue_insert_tail(&ngx_http_signalr_forwards_queue, &f->queue);
    ngx_http_signalr_nforwards++;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);
    timeout = NGX_HTTP_SIGNALR_RELAY_TIMEOUT;

    if (kind == SR_IPC_FORWARD_POLL) {
        timeout += slcf->poll_timeout;

        r->read_event_handler = ngx_http_test_reading;
        r->write_event_handler = ngx_http_request_empty_handler;
        r->connection->idle = 1;
    }

    f->timer.handler = ngx_http_signalr_relay_timeout;
    f->timer.data = f;
    f->timer.log = r->connection->log;
    ngx_add_timer(&f->timer, timeout);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_signalr_relay_cleanup(void *data)
{
    ngx_http_signalr_forward_t  *f = data;

    ngx_http_signalr_relay_unlink(f);
}


static void
ngx_http_signalr_relay_unlink(ngx_http_signalr_forward_t *f)
{
    if (!f->waiting) {
        return;
    }

    f->waiting = 0;

    ngx_rbtree_delete(&ngx_http_signalr_forwards, &f->node);
    ngx_queue_remove(&f->queue);
    ngx_http_signalr_nforwards--;

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }
}


static void
ngx_http_signalr_relay_finish(ngx_http_signalr_forward_t *f,
    ngx_uint_t status, const u_char *data, size_t len, ngx_uint_t binary)
{
    ngx_int_t            rc;
    const char          *detail;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = f->request;
    c = r->connection;

    ngx_http_signalr_relay_unlink(f);

    c->idle = 0;

    if (status < NGX_HTTP_BAD_REQUEST) {
        rc = ngx_http_signalr_send_empty(r, status, data, len, binary);

    } else {
        switch (status) {
        case NGX_HTTP_NOT_FOUND:
            detail = "unknown connection";
            break;
        case NGX_HTTP_BAD_REQUEST:
            detail = "the connection uses another transport";
            break;
        default:
            detail = "the connection cannot be reached now";
        }

        rc = ngx_http_signalr_send_problem(r, status, detail);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* a lost poll is answered as a timed out one: the client polls again */

static void
ngx_http_signalr_relay_timeout(ngx_event_t *ev)
{
    ngx_http_signalr_forward_t  *f = ev->data;

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "signalr relayed request got no answer in time");

    ngx_http_signalr_relay_finish(f, f->kind == SR_IPC_FORWARD_POLL
                                     ? NGX_HTTP_OK
                                     : NGX_HTTP_SERVICE_UNAVAILABLE,
                                  NULL, 0, 0);
}


/*
 * The link is down: no answer will come. They are answered from a
 * posted event, since the link may go down in the middle of any of them.
 */

void
ngx_http_signalr_relay_link_down(void)
{
    if (ngx_http_signalr_nforwards && !ngx_http_signalr_relay_down.posted) {
        ngx_post_event(&ngx_http_signalr_relay_down, &ngx_posted_events);
    }
}


static void
ngx_http_signalr_relay_down_handler(ngx_event_t *ev)
{
    ngx_queue_t                 *q;
    ngx_http_signalr_forward_t  *f;

    if (ngx_http_signalr_link_is_up()) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_signalr_forwards_queue)) {
        q = ngx_queue_head(&ngx_http_signalr_forwards_queue);
        f = ngx_queue_data(q, ngx_http_signalr_forward_t, queue);

        ngx_http_signalr_relay_finish(f, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      NULL, 0, 0);
    }
}


/* a FORWARD or FORWARDED frame from the link; NGX_ERROR when malformed */

ngx_int_t
ngx_http_signalr_relay_frame(sr_ipc_frame_t *frame)
{
    ngx_str_t                    id;
    sr_error_t                   err;
    sr_ipc_relay_t               relay;
    ngx_http_signalr_forward_t  *f;

    if (frame->conn_id_len == 0
        || sr_ipc_relay_parse(frame->body, frame->body_len, &relay, &err)
           != SR_OK)
    {
        return NGX_ERROR;
    }

    id.data = (u_char *) frame->conn_id;
    id.len = frame->conn_id_len;

    if (frame->type == SR_IPC_FORWARD) {
        ngx_http_signalr_relay_serve(&id, &relay);
        return NGX_OK;
    }

    f = ngx_http_signalr_relay_lookup(relay.seq);

    /* the request went away meanwhile */
    if (f == NULL) {
        return NGX_OK;
    }

    ngx_http_signalr_relay_finish(f, relay.code, relay.data, relay.data_len,
                                  relay.flags & SR_IPC_FORWARDED_BINARY);

    return NGX_OK;
}


/* the owner's side: the request as if it had come here */

static void
ngx_http_signalr_relay_serve(ngx_str_t *id, sr_ipc_relay_t *relay)
{
    ngx_pid_t                    pid;
    ngx_uint_t                   status;
    ngx_http_signalr_session_t  *s;

    pid = (ngx_pid_t) relay->pid;
    s = ngx_http_signalr_session_find(id);

    if (s == NULL || s->transport->kind == SR_TRANSPORT_WEBSOCKETS) {
        status = (s == NULL) ? NGX_HTTP_NOT_FOUND : NGX_HTTP_BAD_REQUEST;
        goto answer;
    }

    switch (relay->code) {

    case SR_IPC_FORWARD_SEND:
        status = (ngx_http_signalr_feed(s, relay->data, relay->data_len)
                  == NGX_OK) ? NGX_HTTP_OK : NGX_HTTP_NOT_FOUND;
        break;

    case SR_IPC_FORWARD_POLL:
        if (s->transport->kind != SR_TRANSPORT_LONG_POLLING) {
            status = NGX_HTTP_BAD_REQUEST;
            break;
        }

        /* answered when data, its timeout or the next poll comes */
        (void) ngx_http_signalr_lp_poll(s, NULL, pid, relay->seq);
        return;

    case SR_IPC_FORWARD_DELETE:
        if (s->transport->kind != SR_TRANSPORT_LONG_POLLING) {
            status = NGX_HTTP_BAD_REQUEST;
            break;
        }

        ngx_http_signalr_lp_delete(s);
        status = NGX_HTTP_ACCEPTED;
        break;

    default:
        status = NGX_HTTP_BAD_REQUEST;
    }

answer:

    ngx_http_signalr_relay_answer(id, pid, relay->seq, status, NULL, 0, 0);
}


/* FORWARDED back to worker pid; a lost answer ends in the asker's timer */

void
ngx_http_signalr_relay_answer(ngx_str_t *id, ngx_pid_t pid, uint32_t seq,
    ngx_uint_t status, const u_char *data, size_t len, ngx_uint_t binary)
{
    sr_ipc_relay_t  relay;

    relay.pid = (uint32_t) pid;
    relay.seq = seq;
    relay.code = (uint16_t) status;
    relay.flags = binary ? SR_IPC_FORWARDED_BINARY : 0;
    relay.data = data;
    relay.data_len = len;

    (void) ngx_http_signalr_link_relay(SR_IPC_FORWARDED, id, &relay);
}


static ngx_http_signalr_forward_t *
ngx_http_signalr_relay_lookup(uint32_t seq)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ngx_http_signalr_forwards.root;
    sentinel = ngx_http_signalr_forwards.sentinel;

    while (node != sentinel) {

        if (seq == node->key) {
            return (ngx_http_signalr_forward_t *) node;
        }

        node = (seq < node->key) ? node->left : node->right;
    }

    return NULL;
}
