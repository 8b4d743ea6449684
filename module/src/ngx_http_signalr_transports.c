/*
 * The requests of the HTTP half-transports on a hub location: GET (a
 * Server-Sent Events stream, or a long poll), POST (HTTP Post, client to
 * server) and DELETE (the end of a long polling connection). Each names
 * its connection with the mandatory "id" argument; the registry says
 * which worker holds the connection, and a request for one held by
 * another worker goes there through the relay (docs/transports.md).
 */

#include "ngx_http_signalr_module.h"


static ngx_int_t ngx_http_signalr_http_find(ngx_http_request_t *r,
    ngx_uint_t kind, ngx_str_t *token);
static ngx_int_t ngx_http_signalr_http_refuse(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_signalr_http_get(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, ngx_uint_t sse);
static ngx_int_t ngx_http_signalr_http_post(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf);
static void ngx_http_signalr_http_post_body(ngx_http_request_t *r);
static void ngx_http_signalr_http_post_cleanup(void *data);
static ngx_int_t ngx_http_signalr_http_delete(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf);
static ngx_int_t ngx_http_signalr_http_body(ngx_http_request_t *r,
    u_char **data, size_t *len);
static ngx_http_signalr_session_t *ngx_http_signalr_http_session(
    ngx_http_signalr_ctx_t *ctx);
static void ngx_http_signalr_wake_handler(ngx_event_t *ev);


static ngx_event_t  ngx_http_signalr_wake_event;


ngx_int_t
ngx_http_signalr_http_handler(ngx_http_request_t *r, ngx_uint_t sse)
{
    ngx_str_t                     allow;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    switch (r->method) {

    case NGX_HTTP_GET:
        return ngx_http_signalr_http_get(r, slcf, sse);

    case NGX_HTTP_POST:
        return ngx_http_signalr_http_post(r, slcf);

    case NGX_HTTP_DELETE:
        return ngx_http_signalr_http_delete(r, slcf);

    default:
        ngx_str_set(&allow, "GET, POST, DELETE, OPTIONS");

        if (ngx_http_signalr_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_ALLOWED,
                                             "a hub takes GET, POST, "
                                             "DELETE and OPTIONS");
    }
}


/*
 * Finds the connection named by the "id" argument and, with a kind,
 * attaches it to this worker when nobody holds it yet. Fills the
 * context's connection id, owner and kind. Returns what
 * ngx_http_signalr_registry_attach() does, or NGX_HTTP_BAD_REQUEST
 * without an id.
 */

static ngx_int_t
ngx_http_signalr_http_find(ngx_http_request_t *r, ngx_uint_t kind,
    ngx_str_t *token)
{
    u_char                        *id;
    ngx_int_t                      rc;
    ngx_str_t                      user;
    ngx_http_signalr_ctx_t        *ctx;
    ngx_http_signalr_main_conf_t  *smcf;

    if (ngx_http_arg(r, (u_char *) "id", 2, token) != NGX_OK
        || token->len == 0)
    {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (token->len > SR_RANDOM_ID_LEN) {
        return NGX_HTTP_SIGNALR_REG_UNKNOWN;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_signalr_module);

    ctx = ngx_http_signalr_get_ctx(r);
    id = ngx_pnalloc(r->pool, SR_RANDOM_ID_LEN + 1);

    if (ctx == NULL || id == NULL) {
        return NGX_ERROR;
    }

    if (ctx->authenticated) {
        user = ctx->user;

    } else {
        ngx_str_null(&user);
    }

    ctx->owner = ngx_pid;
    ctx->kind = kind;

    rc = ngx_http_signalr_registry_attach(smcf->registry_zone, token, &user,
                                          id, SR_RANDOM_ID_LEN + 1, kind,
                                          &ctx->owner, &ctx->kind);

    if (rc == NGX_OK || rc == NGX_HTTP_SIGNALR_REG_ATTACHED
        || rc == NGX_HTTP_SIGNALR_REG_NOT_YET)
    {
        ctx->connection_id.data = id;
        ctx->connection_id.len = ngx_strlen(id);
    }

    return rc;
}


/* the answer to a connection that cannot be used, as the spec names it */

static ngx_int_t
ngx_http_signalr_http_refuse(ngx_http_request_t *r, ngx_int_t rc)
{
    switch (rc) {

    case NGX_HTTP_BAD_REQUEST:
        return ngx_http_signalr_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                             "the id argument is required");

    case NGX_HTTP_SIGNALR_REG_OTHER_USER:
        return ngx_http_signalr_send_problem(r, NGX_HTTP_FORBIDDEN,
                                             "connection of another user");

    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default:
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                             "unknown connection");
    }
}


static ngx_int_t
ngx_http_signalr_http_get(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, ngx_uint_t sse)
{
    ngx_int_t                    rc;
    ngx_str_t                    token;
    ngx_uint_t                   kind;
    ngx_http_signalr_ctx_t      *ctx;
    ngx_http_signalr_session_t  *s;

    kind = sse ? SR_TRANSPORT_SSE : SR_TRANSPORT_LONG_POLLING;

    if (!(slcf->transports & kind)) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                             sse ? "the ServerSentEvents "
                                                   "transport is disabled "
                                                   "here"
                                                 : "the LongPolling "
                                                   "transport is disabled "
                                                   "here");
    }

    if (ngx_exiting) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "server is shutting down");
    }

    /* the stream is written on the socket itself, see ..._sse.c */
    if (sse && (r != r->main || r->http_version > NGX_HTTP_VERSION_11)) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                             "Server-Sent Events need "
                                             "HTTP/1.x");
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_signalr_http_find(r, kind, &token);
    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (rc == NGX_OK) {
        return sse ? ngx_http_signalr_sse_start(r, ctx)
                   : ngx_http_signalr_lp_create(r, ctx, &token);
    }

    if (rc != NGX_HTTP_SIGNALR_REG_ATTACHED) {
        return ngx_http_signalr_http_refuse(r, rc);
    }

    if (sse) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_CONFLICT,
                                             "connection already in use");
    }

    if (ctx->kind != SR_TRANSPORT_LONG_POLLING) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                             "the connection uses another "
                                             "transport");
    }

    if (ctx->owner != ngx_pid) {
        return ngx_http_signalr_relay_forward(r, ctx, SR_IPC_FORWARD_POLL,
                                              NULL, 0);
    }

    s = ngx_http_signalr_http_session(ctx);

    if (s == NULL) {
        return ngx_http_signalr_http_refuse(r, NGX_HTTP_SIGNALR_REG_UNKNOWN);
    }

    return ngx_http_signalr_lp_poll(s, r, 0, 0);
}


static ngx_int_t
ngx_http_signalr_http_post(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf)
{
    ngx_int_t                    rc;
    ngx_str_t                    token;
    ngx_pool_cleanup_t          *cln;
    ngx_http_signalr_ctx_t      *ctx;
    ngx_http_signalr_session_t  *s;

    if (!(slcf->transports & (SR_TRANSPORT_SSE|SR_TRANSPORT_LONG_POLLING))) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                             "the HTTP transports are "
                                             "disabled here");
    }

    rc = ngx_http_signalr_http_find(r, 0, &token);

    if (rc != NGX_HTTP_SIGNALR_REG_ATTACHED) {
        return ngx_http_signalr_http_refuse(r, rc);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (ctx->kind == SR_TRANSPORT_WEBSOCKETS) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_ALLOWED,
                                             "a WebSocket connection takes "
                                             "no POST");
    }

    if (r->headers_in.content_length_n > (off_t) slcf->send_queue_size) {
        return ngx_http_signalr_send_problem(r,
                                             NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                             "over signalr_send_queue_size");
    }

    if (ctx->owner == ngx_pid) {
        s = ngx_http_signalr_http_session(ctx);

        if (s == NULL) {
            return ngx_http_signalr_http_refuse(r,
                                                NGX_HTTP_SIGNALR_REG_UNKNOWN);
        }

        if (s->post) {
            return ngx_http_signalr_send_problem(r, NGX_HTTP_CONFLICT,
                                                 "another POST is in "
                                                 "progress");
        }

        /* the session forgets the POST when it goes away unfinished */
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_signalr_http_post_cleanup;
        cln->data = r;
        s->post = r;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_signalr_http_post_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the whole body is in: to the session here, or to the worker holding it */

static void
ngx_http_signalr_http_post_body(ngx_http_request_t *r)
{
    size_t                       len;
    u_char                      *data;
    ngx_int_t                    rc;
    ngx_http_signalr_ctx_t      *ctx;
    ngx_http_signalr_session_t  *s;

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (ngx_http_signalr_http_body(r, &data, &len) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ctx->owner != ngx_pid) {
        rc = ngx_http_signalr_relay_forward(r, ctx, SR_IPC_FORWARD_SEND,
                                            data, len);
        ngx_http_finalize_request(r, rc);
        return;
    }

    s = ngx_http_signalr_http_session(ctx);

    if (s && s->post == r) {
        s->post = NULL;
    }

    if (s == NULL || ngx_http_signalr_feed(s, data, len) != NGX_OK) {
        rc = ngx_http_signalr_http_refuse(r, NGX_HTTP_SIGNALR_REG_UNKNOWN);

    } else {
        rc = ngx_http_signalr_send_empty(r, NGX_HTTP_OK, NULL, 0, 0);
    }

    ngx_http_finalize_request(r, rc);
}


static void
ngx_http_signalr_http_post_cleanup(void *data)
{
    ngx_http_request_t  *r = data;

    ngx_http_signalr_ctx_t      *ctx;
    ngx_http_signalr_session_t  *s;

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (ctx == NULL) {
        return;
    }

    s = ngx_http_signalr_http_session(ctx);

    if (s && s->post == r) {
        s->post = NULL;
    }
}


static ngx_int_t
ngx_http_signalr_http_delete(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf)
{
    ngx_int_t                    rc;
    ngx_str_t                    token;
    ngx_http_signalr_ctx_t      *ctx;
    ngx_http_signalr_session_t  *s;

    if (!(slcf->transports & SR_TRANSPORT_LONG_POLLING)) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                             "the LongPolling transport is "
                                             "disabled here");
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_signalr_http_find(r, 0, &token);

    if (rc != NGX_HTTP_SIGNALR_REG_ATTACHED) {
        return ngx_http_signalr_http_refuse(r, rc);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    if (ctx->kind != SR_TRANSPORT_LONG_POLLING) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                             "only a long polling "
                                             "connection ends with DELETE");
    }

    if (ctx->owner != ngx_pid) {
        return ngx_http_signalr_relay_forward(r, ctx, SR_IPC_FORWARD_DELETE,
                                              NULL, 0);
    }

    s = ngx_http_signalr_http_session(ctx);

    if (s == NULL) {
        return ngx_http_signalr_http_refuse(r, NGX_HTTP_SIGNALR_REG_UNKNOWN);
    }

    ngx_http_signalr_lp_delete(s);

    return ngx_http_signalr_send_empty(r, NGX_HTTP_ACCEPTED, NULL, 0, 0);
}


/*
 * The request body in one piece of the request's pool. It is bounded by
 * client_max_body_size, and may be in a temporary file when it is over
 * client_body_buffer_size.
 */

static ngx_int_t
ngx_http_signalr_http_body(ngx_http_request_t *r, u_char **data,
    size_t *len)
{
    off_t         size;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *data = NULL;
    *len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    *len = p - *data;

    return NGX_OK;
}


static ngx_http_signalr_session_t *
ngx_http_signalr_http_session(ngx_http_signalr_ctx_t *ctx)
{
    ngx_http_signalr_session_t  *s;

    s = ngx_http_signalr_session_find(&ctx->connection_id);

    if (s == NULL || s->transport->kind != ctx->kind) {
        return NULL;
    }

    return s;
}


/*
 * Hub messages that came in a POST, here or relayed from another
 * worker. NGX_DECLINED when the session has ended.
 */

ngx_int_t
ngx_http_signalr_feed(ngx_http_signalr_session_t *s, const u_char *data,
    size_t len)
{
    if (s->close_sent || s->failed) {
        return NGX_DECLINED;
    }

    s->last_recv = ngx_current_msec;

    if (len) {
        ngx_http_signalr_session_input(s, data, len);
    }

    if (s->failed) {
        s->transport->drop(s);
    }

    return NGX_OK;
}


/*
 * Hands the request's connection to a streaming transport (WebSocket,
 * Server-Sent Events): its own handlers from now on, no HTTP timers, and
 * the request kept alive until the transport finalises it (SSE) or
 * frees it, keeping the connection (WebSocket, ..._ws_detach()). c->idle
 * makes a graceful shutdown call the read handler, which then ends the
 * session with a Close that allows reconnecting. The handlers run from
 * the posted events, never from here: a close decided now would free
 * the request under the phase engine.
 */

void
ngx_http_signalr_take_over(ngx_http_request_t *r, const char *action,
    ngx_event_handler_pt read_handler, ngx_event_handler_pt write_handler)
{
    ngx_connection_t  *c;

    c = r->connection;

    r->main->count++;

    c->log->action = (char *) action;
    c->read->handler = read_handler;
    c->write->handler = write_handler;
    c->idle = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_post_event(c->read, &ngx_posted_events);
}


/*
 * The session of the request whose connection an event belongs to; a
 * detached WebSocket's connection has its session as c->data instead.
 */

ngx_http_signalr_session_t *
ngx_http_signalr_event_session(ngx_event_t *ev)
{
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_signalr_ctx_t  *ctx;

    c = ev->data;
    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_signalr_module);

    return ctx->session;
}


/*
 * A graceful shutdown calls the read handlers of idle connections from
 * ngx_close_idle_connections(), outside event processing. nginx 1.22
 * runs what they post (the write that carries the Close and the close
 * frame) only once epoll_wait() returns, and with nothing else to wake
 * the worker that is when the close timer ends the connection, 5 s on,
 * with nothing sent. An event on ngx_posted_next_events makes the next
 * epoll_wait() return at once.
 */

void
ngx_http_signalr_wake_loop(void)
{
    ngx_event_t  *ev;

    ev = &ngx_http_signalr_wake_event;

    if (ev->posted) {
        return;
    }

    ev->handler = ngx_http_signalr_wake_handler;
    ev->log = ngx_cycle->log;

    ngx_post_event(ev, &ngx_posted_next_events);
}


static void
ngx_http_signalr_wake_handler(ngx_event_t *ev)
{
    /* nothing to do: the loop is awake, the posted writes run next */
}


/* the session keeps its own NUL-terminated user and claims reference */

ngx_int_t
ngx_http_signalr_session_identity(ngx_http_signalr_session_t *s,
    ngx_http_signalr_ctx_t *ctx, ngx_pool_t *pool)
{
    if (!ctx->authenticated || ctx->user.len == 0) {
        return NGX_OK;
    }

    s->user.data = ngx_pnalloc(pool, ctx->user.len + 1);
    if (s->user.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->user.data, ctx->user.data, ctx->user.len);
    s->user.data[ctx->user.len] = '\0';
    s->user.len = ctx->user.len;

    if (ctx->claims) {
        s->claims = json_incref(ctx->claims);
    }

    s->expires = ctx->expires;

    return NGX_OK;
}


/*
 * A whole answer of the HTTP transports: a POST's 200, a poll's hub
 * messages (binary: MessagePack ones), a 204. Returns what
 * ngx_http_finalize_request() takes.
 */

ngx_int_t
ngx_http_signalr_send_empty(ngx_http_request_t *r, ngx_uint_t status,
    const u_char *data, size_t len, ngx_uint_t binary)
{
    ngx_int_t                     rc;
    ngx_buf_t                    *b;
    ngx_str_t                     value;
    ngx_chain_t                   out;
    ngx_http_signalr_loc_conf_t  *slcf;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (binary) {
        ngx_str_set(&r->headers_out.content_type,
                    "application/octet-stream");

    } else {
        ngx_str_set(&r->headers_out.content_type, "text/plain");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    ngx_str_set(&value, "no-cache");

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    if (ngx_http_signalr_add_header(r, "Cache-Control", &value) != NGX_OK
        || ngx_http_signalr_cors_headers(r, slcf) == NGX_ERROR)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len == 0 || status == NGX_HTTP_NO_CONTENT) {
        r->header_only = 1;
        r->headers_out.content_length_n = 0;
        return ngx_http_send_header(r);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, data, len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
