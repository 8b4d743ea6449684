/*
 * The WebSocket transport: the upgrade request, the 101 answer, and
 * RFC 6455 I/O on the connection afterwards (frames in through
 * sr_ws_parser, a bounded queue of frames out, the close handshake),
 * offered to the session as ngx_http_signalr_ws_transport.
 *
 * Design note: a WebSocket outlives its upgrade request. Until the 101
 * answer the session is bound to the request (a cleanup of r->pool ends
 * it: refused upgrades, an upgrade waiting for the daemon to resume,
 * errors). Once the phase engine is done with the request, the first
 * event of the connection detaches the session (ngx_http_signalr_ws_
 * detach): what it still needs is copied out of the request, the
 * request is freed as nginx frees one before a keep-alive wait, and so
 * are the header buffers. An idle WebSocket then costs its session and
 * the connection's pool instead of a request pool of two 4 KiB blocks,
 * the client header buffer and the request's own strings. c->data is
 * the session from then on, and the connection ends with the session's
 * cleanup and ngx_http_close_connection(). Freeing the request writes
 * its access log line: a WebSocket is logged at its start, status 101,
 * not when it ends (docs/operations.md).
 */

#include "ngx_http_signalr_module.h"


/* what one read event may take before others get their turn */
#define NGX_HTTP_SIGNALR_READ_BUDGET   (512 * 1024)

/* connections written between two looks at the other events */
#define NGX_HTTP_SIGNALR_WS_WRITE_SLICE  32

/* the first size of the ring of connections to write, a power of 2 */
#define NGX_HTTP_SIGNALR_WS_RING_MIN     256

static ngx_int_t ngx_http_signalr_ws_check(ngx_http_request_t *r,
    const char **detail, char *accept);
static ngx_int_t ngx_http_signalr_ws_attach(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char **detail);
static ngx_int_t ngx_http_signalr_ws_resume(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char *accept);
static ngx_uint_t ngx_http_signalr_ws_resumable(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, ngx_int_t rc, ngx_uint_t owner_kind,
    ngx_str_t *token);
static ngx_int_t ngx_http_signalr_ws_upgrade(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char *accept);
static void ngx_http_signalr_ws_cleanup(void *data);
static void ngx_http_signalr_ws_first_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_signalr_ws_detach(ngx_http_signalr_session_t *s);
static ngx_int_t ngx_http_signalr_ws_own(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_ws_free_buffers(ngx_connection_t *c,
    ngx_http_connection_t *hc);
static void ngx_http_signalr_ws_read_handler(ngx_event_t *rev);
static void ngx_http_signalr_ws_write_handler(ngx_event_t *wev);
static void ngx_http_signalr_ws_close_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_signalr_ws_read(ngx_http_signalr_session_t *s);
static ngx_int_t ngx_http_signalr_ws_feed(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len);
static ngx_int_t ngx_http_signalr_ws_event(ngx_http_signalr_session_t *s,
    sr_ws_event_t *ev);
static ngx_int_t ngx_http_signalr_ws_flush(ngx_http_signalr_session_t *s);
static ssize_t ngx_http_signalr_ws_send_now(ngx_http_signalr_session_t *s,
    const u_char *head, size_t hlen, const u_char *data, size_t len);
static void ngx_http_signalr_ws_post_write(ngx_http_signalr_session_t *s);
static ngx_int_t ngx_http_signalr_ws_ring_grow(void);
static void ngx_http_signalr_ws_write_slice(ngx_event_t *ev);
static ngx_int_t ngx_http_signalr_ws_send_message(
    ngx_http_signalr_session_t *s, const u_char *data, size_t len,
    ngx_uint_t force);
static void ngx_http_signalr_ws_drop(ngx_http_signalr_session_t *s);


const ngx_http_signalr_transport_t  ngx_http_signalr_ws_transport = {
    ngx_string("WebSockets"),
    SR_TRANSPORT_WEBSOCKETS,
    1,
    ngx_http_signalr_ws_send_message,
    ngx_http_signalr_ws_close,
    ngx_http_signalr_ws_drop
};


static u_char  ngx_http_signalr_ws_buffer[16384];

/*
 * The WebSockets that have frames to write, oldest first: a ring of
 * sessions (NULL where one ended while it waited), and the one posted
 * event that writes them (ngx_http_signalr_ws_post_write()).
 */
static ngx_http_signalr_session_t  **ngx_http_signalr_ws_ring;
static ngx_uint_t                    ngx_http_signalr_ws_ring_size;
static ngx_uint_t                    ngx_http_signalr_ws_ring_head;
static ngx_uint_t                    ngx_http_signalr_ws_ring_tail;
static ngx_event_t                   ngx_http_signalr_ws_writer;

/*
 * Set while a message from the daemon is handed out to an idle worker's
 * connections (ngx_http_signalr_ws_write_through()): a frame that finds
 * its connection with nothing queued is written at once, from here.
 */
static ngx_uint_t                    ngx_http_signalr_ws_through;
static u_char                        ngx_http_signalr_ws_frame[8192];


ngx_int_t
ngx_http_signalr_websocket_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    const char                  *detail;
    ngx_pool_cleanup_t          *cln;
    ngx_http_signalr_session_t  *s;
    char                         accept[SR_WS_ACCEPT_LEN + 1];

    if (ngx_exiting) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "server is shutting down");
    }

    rc = ngx_http_signalr_ws_check(r, &detail, accept);

    if (rc != NGX_OK) {
        return ngx_http_signalr_send_problem(r, rc, detail);
    }

    /* the session's own memory: it outlives the request's pool */
    s = ngx_calloc(sizeof(ngx_http_signalr_session_t), r->connection->log);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(s);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_signalr_ws_cleanup;
    cln->data = s;

    s->transport = &ngx_http_signalr_ws_transport;
    s->request = r;
    s->connection = r->connection;
    s->log = r->connection->log;
    s->conf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    /*
     * The official clients batch what they send in one go into one
     * WebSocket message, so that is bounded by the per-connection budget
     * and each hub message inside it by signalr_max_message_size.
     */

    sr_ws_parser_init(&s->parser, SR_WS_ROLE_SERVER,
                      s->conf->send_queue_size);

    rc = ngx_http_signalr_ws_attach(r, s, &detail);

    if (rc == NGX_HTTP_SIGNALR_RESUME) {
        return ngx_http_signalr_ws_resume(r, s, accept);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_signalr_limits_attach(r, s, &detail);
    }

    if (rc != NGX_OK) {
        return ngx_http_signalr_send_problem(r, rc, detail);
    }

    if (ngx_http_signalr_session_init(s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_signalr_ws_upgrade(r, s, accept);
}


/*
 * Checks the opening handshake of RFC 6455, section 4.2.1, and computes
 * the accept key. Returns NGX_OK or the status to refuse with.
 */

static ngx_int_t
ngx_http_signalr_ws_check(ngx_http_request_t *r, const char **detail,
    char *accept)
{
    sr_error_t        err;
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    *detail = "internal error";

    if (r->method != NGX_HTTP_GET) {
        ngx_str_set(&value, "GET, OPTIONS");

        if (ngx_http_signalr_add_header(r, "Allow", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *detail = "a WebSocket upgrade takes GET";
        return NGX_HTTP_NOT_ALLOWED;
    }

    *detail = "not a WebSocket upgrade request";

    if (r != r->main
        || r->http_version != NGX_HTTP_VERSION_11
        || !ngx_http_signalr_header_has_token(r, "Upgrade", 7, "websocket")
        || !ngx_http_signalr_header_has_token(r, "Connection", 10,
                                              "upgrade"))
    {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        *detail = "an upgrade request has no body";
        return NGX_HTTP_BAD_REQUEST;
    }

    h = ngx_http_signalr_find_header(r, "Sec-WebSocket-Version", 21);

    if (h == NULL) {
        *detail = "missing Sec-WebSocket-Version";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (h->value.len != 2 || ngx_strncmp(h->value.data, "13", 2) != 0) {
        ngx_str_set(&value, "13");

        if (ngx_http_signalr_add_header(r, "Sec-WebSocket-Version", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *detail = "unsupported WebSocket version";
        return 426;
    }

    h = ngx_http_signalr_find_header(r, "Sec-WebSocket-Key", 17);

    if (h == NULL
        || sr_ws_accept_key((const char *) h->value.data, h->value.len,
                            accept, &err)
           != SR_OK)
    {
        *detail = "missing or invalid Sec-WebSocket-Key";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/*
 * Binds the WebSocket to its connection: the one negotiated under the
 * "id" argument, which must exist, be free and belong to the same user;
 * or a new one for clients that skip negotiation. Returns NGX_OK or the
 * status to refuse with.
 */

static ngx_int_t
ngx_http_signalr_ws_attach(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char **detail)
{
    ngx_int_t                      rc;
    ngx_str_t                      token;
    ngx_uint_t                     owner_kind;
    sr_error_t                     err;
    ngx_http_signalr_ctx_t        *ctx;
    ngx_http_signalr_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_signalr_module);
    owner_kind = 0;

    *detail = "internal error";

    ctx = ngx_http_signalr_get_ctx(r);
    if (ctx == NULL
        || ngx_http_signalr_session_identity(s, ctx, r->pool) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "id", 2, &token) != NGX_OK) {

        if (sr_random_id((char *) s->id, &err) != SR_OK) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "sr_random_id() failed: %s", err.str);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        goto found;
    }

    *detail = "unknown connection";

    if (token.len == 0 || token.len > SR_RANDOM_ID_LEN) {
        return NGX_HTTP_NOT_FOUND;
    }

    rc = ngx_http_signalr_registry_attach(smcf->registry_zone, &token,
                                          &s->user, s->id, sizeof(s->id),
                                          SR_TRANSPORT_WEBSOCKETS, NULL,
                                          &owner_kind);

    if (ngx_http_signalr_ws_resumable(r, s, rc, owner_kind, &token)) {
        return NGX_HTTP_SIGNALR_RESUME;
    }

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_HTTP_SIGNALR_REG_ATTACHED:
        *detail = "connection already in use";
        return NGX_HTTP_CONFLICT;

    case NGX_HTTP_SIGNALR_REG_OTHER_USER:
        *detail = "connection of another user";
        return NGX_HTTP_FORBIDDEN;

    default:
        return NGX_HTTP_NOT_FOUND;
    }

    /* from here on the cleanup gives the registry entry back */
    s->registry = smcf->registry_zone;
    ngx_memcpy(s->token, token.data, token.len);
    s->token_len = token.len;

found:

    ctx->session = s;
    ctx->connection_id.data = s->id;
    ctx->connection_id.len = ngx_strlen(s->id);

    return NGX_OK;
}


/*
 * A stateful client coming back: its token is unknown here (parked in
 * the daemon, or on another instance) or held by a stateful WebSocket
 * whose cut this side has not noticed yet. The daemon knows which.
 */

static ngx_uint_t
ngx_http_signalr_ws_resumable(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, ngx_int_t rc, ngx_uint_t owner_kind,
    ngx_str_t *token)
{
    ngx_http_signalr_main_conf_t  *smcf;

    if (!s->conf->stateful_reconnect || !ngx_http_signalr_link_is_up()) {
        return 0;
    }

    if (rc == NGX_HTTP_SIGNALR_REG_UNKNOWN) {
        return 1;
    }

    if (rc != NGX_HTTP_SIGNALR_REG_ATTACHED
        || owner_kind != SR_TRANSPORT_WEBSOCKETS)
    {
        return 0;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_signalr_module);

    return ngx_http_signalr_registry_stateful(smcf->registry_zone, token, 0);
}


static ngx_int_t
ngx_http_signalr_ws_resume(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char *accept)
{
    ngx_str_t  token;

    if (ngx_http_arg(r, (u_char *) "id", 2, &token) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the registry may have copied the live connection's id meanwhile */
    s->id[0] = '\0';

    return ngx_http_signalr_resume_start(r, s, &token, accept);
}


/*
 * The daemon handed a parked connection to this request: the session
 * is filled from its state; it is counted, upgraded, and goes on.
 * Returns NGX_DONE, or the status to refuse with.
 */

ngx_int_t
ngx_http_signalr_ws_adopt(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char *accept)
{
    ngx_int_t    rc;
    const char  *detail;

    rc = ngx_http_signalr_limits_attach(r, s, &detail);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_signalr_session_init(s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_signalr_ws_upgrade(r, s, accept);
}


/*
 * Design note: the 101 answer is written by hand into the connection's
 * own queue rather than through ngx_http_send_header(), so that it and
 * the first frames leave through one path, and nothing is left buffered
 * in nginx's filters that the frame writer would have to wait for.
 */

static ngx_int_t
ngx_http_signalr_ws_upgrade(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char *accept)
{
    u_char                    *p;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;
    u_char                     head[160];

    c = r->connection;

    /*
     * TODO(docs/directives.md): no extension is offered, permessage-deflate
     * included, so every frame travels uncompressed.
     */

    p = ngx_sprintf(head, "HTTP/1.1 101 Switching Protocols" CRLF
                          "Upgrade: websocket" CRLF
                          "Connection: Upgrade" CRLF
                          "Sec-WebSocket-Accept: %s" CRLF CRLF, accept);

    if (sr_buf_append(&s->out, head, p - head) != SR_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->header_sent = 1;
    r->keepalive = 0;
    r->lingering_close = 0;

    /* bytes the client sent right after its request are frames */
    if (r->header_in->pos < r->header_in->last) {
        s->early = r->header_in->pos;
        s->early_len = r->header_in->last - r->header_in->pos;
        r->header_in->pos = r->header_in->last;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_signalr_take_over(r, "serving signalr websocket",
                               ngx_http_signalr_ws_first_handler,
                               ngx_http_signalr_ws_first_handler);
    ngx_http_signalr_ws_post_write(s);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "signalr connection \"%s\" upgraded", s->id);

    return NGX_DONE;
}


/*
 * Ends the connection: through the request while the session is still
 * bound to it (its pool cleanup frees the session), else with the
 * session's cleanup and nginx's own close. The caller must not touch s
 * or its connection after.
 */

void
ngx_http_signalr_ws_finalize(ngx_http_signalr_session_t *s)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = s->request;
    c = s->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "signalr connection \"%s\" finalized", s->id);

    c->idle = 0;

    if (r) {
        ngx_http_finalize_request(r, NGX_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_http_signalr_ws_cleanup(s);
    ngx_http_close_connection(c);
}


/* the request pool's cleanup until the detach, then the session's end */

static void
ngx_http_signalr_ws_cleanup(void *data)
{
    ngx_http_signalr_session_t  *s = data;

    ngx_http_signalr_session_cleanup(s);

    if (s->write_queued) {
        ngx_http_signalr_ws_ring[s->write_slot] = NULL;
    }

    if (s->own) {
        ngx_free(s->own);
    }

    ngx_free(s);
}


/*
 * The first read or write event after the upgrade, out of the phase
 * engine: the session leaves the request, then the steady handlers
 * take the event.
 */

static void
ngx_http_signalr_ws_first_handler(ngx_event_t *ev)
{
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_http_signalr_session_t  *s;

    c = ev->data;
    s = ngx_http_signalr_event_session(ev);

    rc = ngx_http_signalr_ws_detach(s);

    if (rc != NGX_OK) {
        ngx_http_signalr_ws_finalize(s);
        return;
    }

    c->read->handler = ngx_http_signalr_ws_read_handler;
    c->write->handler = ngx_http_signalr_ws_write_handler;

    ev->handler(ev);
}


/*
 * NGX_OK, or else the connection is to be finalized: with the request
 * still there when the error came before it was freed.
 */

static ngx_int_t
ngx_http_signalr_ws_detach(ngx_http_signalr_session_t *s)
{
    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_pool_cleanup_t      *cln;
    ngx_http_request_t      *r;
    ngx_http_connection_t   *hc;

    r = s->request;
    c = s->connection;

    /* the 101 goes first, so that the log line counts its bytes */
    rc = ngx_http_signalr_ws_flush(s);

    if (rc != NGX_OK || ngx_http_signalr_ws_own(s) != NGX_OK) {
        return NGX_ERROR;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_signalr_ws_cleanup && cln->data == s) {
            cln->handler = NULL;
            break;
        }
    }

    hc = r->http_connection;

    s->request = NULL;

    ngx_http_free_request(r, 0);

    /* set by the free, it would stop nginx's callers touching c */
    c->destroyed = 0;
    c->data = s;
    c->log->action = "serving signalr websocket";

    rc = NGX_OK;

    /* bytes the client sent right after its request: frames */
    if (s->early_len) {
        rc = ngx_http_signalr_ws_feed(s, s->early, s->early_len);
        s->early = NULL;
        s->early_len = 0;
    }

    ngx_http_signalr_ws_free_buffers(c, hc);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "signalr connection \"%s\" detached", s->id);

    return rc;
}


/*
 * Copies what the session holds of the request's memory into one block
 * of its own: the user and the keys of the limits, which may point
 * anywhere in the request (its pool, its header buffers). Equal strings
 * share one copy: the keys are most often the user.
 */

static ngx_int_t
ngx_http_signalr_ws_own(ngx_http_signalr_session_t *s)
{
    u_char      *p;
    size_t       size;
    ngx_str_t   *str[4];
    ngx_uint_t   i, j, same[4];

    str[0] = &s->user;
    str[1] = &s->invocations_key;
    str[2] = &s->connections_key;
    str[3] = &s->streams_key;

    size = 0;

    for (i = 0; i < 4; i++) {

        for (j = 0; j < i; j++) {
            if (str[j]->len == str[i]->len
                && ngx_memcmp(str[j]->data, str[i]->data, str[i]->len) == 0)
            {
                break;
            }
        }

        same[i] = j;

        if (j == i && str[i]->len) {
            size += str[i]->len + 1;
        }
    }

    if (size == 0) {
        return NGX_OK;
    }

    p = ngx_alloc(size, s->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->own = p;

    for (i = 0; i < 4; i++) {
        if (str[i]->len == 0) {
            continue;
        }

        if (same[i] != i) {
            str[i]->data = str[same[i]]->data;
            continue;
        }

        ngx_memcpy(p, str[i]->data, str[i]->len);
        str[i]->data = p;
        p += str[i]->len;
        *p++ = '\0';
    }

    return NGX_OK;
}


/*
 * The client header buffer and the large header buffers, as nginx frees
 * them for a keep-alive wait: the connection reads no HTTP any more.
 */

static void
ngx_http_signalr_ws_free_buffers(ngx_connection_t *c,
    ngx_http_connection_t *hc)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, *ln;

    b = c->buffer;

    if (b && b->start && ngx_pfree(c->pool, b->start) == NGX_OK) {
        b->start = NULL;
        b->pos = NULL;
        b->last = NULL;
        b->end = NULL;
    }

    for (cl = hc->busy; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        (void) ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->busy = NULL;
    hc->nbusy = 0;

    for (cl = hc->free; cl; /* void */) {
        ln = cl;
        cl = cl->next;
        (void) ngx_pfree(c->pool, ln->buf->start);
        ngx_free_chain(c->pool, ln);
    }

    hc->free = NULL;
}


static void
ngx_http_signalr_ws_read_handler(ngx_event_t *rev)
{
    ngx_connection_t            *c;
    ngx_http_signalr_session_t  *s;

    c = rev->data;
    s = c->data;

    /*
     * c->close: nginx is shutting down gracefully (c->idle made it call
     * us); with c->error as well, its shutdown timer ran out.
     */

    if (c->close) {
        c->close = 0;

        if (c->error || s->failed) {
            ngx_http_signalr_ws_finalize(s);
            return;
        }

        ngx_http_signalr_session_shutdown(s);
    }

    if (ngx_http_signalr_ws_read(s) != NGX_OK || s->failed) {
        ngx_http_signalr_ws_finalize(s);
    }
}


static void
ngx_http_signalr_ws_write_handler(ngx_event_t *wev)
{
    ngx_connection_t            *c;
    ngx_http_signalr_session_t  *s;

    c = wev->data;
    s = c->data;

    if (s->failed || ngx_http_signalr_ws_flush(s) != NGX_OK) {
        ngx_http_signalr_ws_finalize(s);
    }
}


static void
ngx_http_signalr_ws_close_timeout(ngx_event_t *ev)
{
    ngx_http_signalr_session_t  *s = ev->data;

    ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                  "signalr connection \"%s\": close handshake timed out",
                  s->id);

    ngx_http_signalr_ws_finalize(s);
}


/* NGX_OK, or NGX_DONE when the connection is to be finalized */

static ngx_int_t
ngx_http_signalr_ws_read(ngx_http_signalr_session_t *s)
{
    size_t             total;
    ssize_t            n;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    c = s->connection;
    rev = c->read;

    for (total = 0; total < NGX_HTTP_SIGNALR_READ_BUDGET; total += n) {

        n = c->recv(c, ngx_http_signalr_ws_buffer,
                    sizeof(ngx_http_signalr_ws_buffer));

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                return NGX_DONE;
            }

            return NGX_OK;
        }

        if (n == NGX_ERROR || n == 0) {
            if (!s->close_received) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "signalr connection \"%s\": client closed "
                              "the connection", s->id);
            }

            return NGX_DONE;
        }

        s->last_recv = ngx_current_msec;

        if (ngx_http_signalr_ws_feed(s, ngx_http_signalr_ws_buffer, n)
            != NGX_OK)
        {
            return NGX_DONE;
        }
    }

    /* more is waiting: let other connections run first */
    ngx_post_event(rev, &ngx_posted_events);

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_ws_feed(ngx_http_signalr_session_t *s, const u_char *data,
    size_t len)
{
    int            rc, code;
    size_t         consumed;
    sr_error_t     err;
    sr_ws_event_t  ev;

    while (len && !s->read_closed) {

        consumed = 0;
        code = SR_WS_CLOSE_PROTOCOL_ERROR;

        rc = sr_ws_parser_feed(&s->parser, data, len, &consumed, &ev, &code,
                               &err);

        if (consumed > len) {
            consumed = len;
        }

        data += consumed;
        len -= consumed;

        if (rc == SR_AGAIN) {
            break;
        }

        if (rc != SR_OK) {
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "signalr connection \"%s\": websocket error "
                          "%d: %s", s->id, code, err.str);

            s->read_closed = 1;
            ngx_http_signalr_ws_close(s, code, NULL);
            break;
        }

        if (ngx_http_signalr_ws_event(s, &ev) != NGX_OK) {
            return NGX_DONE;
        }
    }

    /*
     * Between frames, and outside a fragmented message, the parser holds
     * nothing that is owed: its buffers go, so that an idle connection
     * keeps none (the next message allocates again).
     */
    if (!s->parser.in_frame) {
        sr_buf_free(&s->parser.control);
        sr_buf_init(&s->parser.control);

        if (s->parser.message_opcode == 0) {
            sr_buf_free(&s->parser.message);
            sr_buf_init(&s->parser.message);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_ws_event(ngx_http_signalr_session_t *s, sr_ws_event_t *ev)
{
    switch (ev->opcode) {

    case SR_WS_OP_TEXT:
    case SR_WS_OP_BINARY:
        if (!s->close_sent) {
            ngx_http_signalr_session_input(s, ev->data, ev->len);
        }

        break;

    case SR_WS_OP_PING:
        (void) ngx_http_signalr_ws_send(s, SR_WS_OP_PONG, ev->data, ev->len,
                                        0);
        break;

    case SR_WS_OP_CLOSE:
        s->close_received = 1;
        s->read_closed = 1;

        /* the client's own code, not its echo of ours */
        if (!s->close_sent) {
            s->close_code = ev->close_code;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                       "signalr connection \"%s\": close frame %d",
                       s->id, ev->close_code);

        if (!s->close_sent) {
            ngx_http_signalr_ws_close(s, ev->close_code, NULL);

        } else if (s->close_flushed) {
            return NGX_DONE;
        }

        break;

    default: /* SR_WS_OP_PONG */
        break;
    }

    return NGX_OK;
}


/*
 * Queues one frame. Over signalr_send_queue_size the client is too slow
 * to keep: the session is closed instead, unless force is set (the
 * frames that close it). NGX_DECLINED when the frame was not queued.
 *
 * Design note: the frame waits for the queued write (..._ws_post_write())
 * even when the socket could take it at once, so that the messages of
 * one event-loop iteration (a multicast burst) leave in one send().
 * Writing the first of an iteration at once and queueing the rest was
 * measured (1,000 subscribers, bench/run broadcast, runs alternated): it
 * cost more CPU per delivery and delivered less, the readers getting
 * more and smaller writes. The exception is a worker with nothing else
 * to write and nothing more from the daemon, which writes through
 * (ngx_http_signalr_session_idle() says when): there is nothing to
 * coalesce, and the frame leaves without a buffer of its own.
 */

ngx_int_t
ngx_http_signalr_ws_send(ngx_http_signalr_session_t *s, int opcode,
    const u_char *data, size_t len, ngx_uint_t force)
{
    size_t   hlen, sent, head_sent, data_sent;
    ssize_t  n;
    u_char   head[SR_WS_MAX_HEADER];

    if (s->close_sent || s->failed) {
        return NGX_DECLINED;
    }

    if (!force
        && s->out.len - s->out_pos + len + SR_WS_MAX_HEADER
           > s->conf->send_queue_size)
    {
        ngx_http_signalr_session_overflow(s);
        return NGX_DECLINED;
    }

    hlen = sr_ws_write_header(head, 1, opcode, len, NULL);
    sent = 0;

    if (ngx_http_signalr_ws_through
        && s->out.len == 0
        && !s->write_queued
        && s->request == NULL)
    {
        n = ngx_http_signalr_ws_send_now(s, head, hlen, data, len);

        if (n == NGX_ERROR) {
            return NGX_DECLINED;
        }

        if ((size_t) n == hlen + len) {
            s->last_sent = ngx_current_msec;
            return NGX_OK;
        }

        sent = n;
    }

    /* sent bytes are dropped once they are half of the buffer */
    if (s->out_pos && s->out_pos >= s->out.len / 2) {
        sr_buf_consume(&s->out, s->out_pos);
        s->out_pos = 0;
    }

    /* what the socket took at once is not queued again */
    head_sent = ngx_min(sent, hlen);
    data_sent = sent - head_sent;

    if (sr_buf_reserve(&s->out, hlen + len - sent) != SR_OK
        || (hlen > head_sent
            && sr_buf_append(&s->out, head + head_sent, hlen - head_sent)
               != SR_OK)
        || (len > data_sent
            && sr_buf_append(&s->out, data + data_sent, len - data_sent)
               != SR_OK))
    {
        ngx_log_error(NGX_LOG_ALERT, s->connection->log, 0,
                      "signalr connection \"%s\": no memory for "
                      "the send queue", s->id);
        s->failed = 1;
        ngx_http_signalr_ws_post_write(s);
        return NGX_DECLINED;
    }

    s->last_sent = ngx_current_msec;

    ngx_http_signalr_ws_post_write(s);

    return NGX_OK;
}


/*
 * Writes one frame at once, for ngx_http_signalr_ws_send() while the
 * worker writes through: the bytes the socket took, which are 0 when it
 * was not tried (a socket not writable, a frame bigger than the scratch
 * buffer), or NGX_ERROR, the session then being dropped.
 */

static ssize_t
ngx_http_signalr_ws_send_now(ngx_http_signalr_session_t *s,
    const u_char *head, size_t hlen, const u_char *data, size_t len)
{
    size_t             total;
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->connection;
    total = hlen + len;

    if (!c->write->ready || total > sizeof(ngx_http_signalr_ws_frame)) {
        return 0;
    }

    ngx_memcpy(ngx_http_signalr_ws_frame, head, hlen);
    ngx_memcpy(ngx_http_signalr_ws_frame + hlen, data, len);

    n = c->send(c, ngx_http_signalr_ws_frame, total);

    if (n == NGX_ERROR) {
        /* the write handler ends the session, out of this fan-out */
        c->error = 1;
        ngx_http_signalr_ws_drop(s);
        return NGX_ERROR;
    }

    return (n == NGX_AGAIN) ? 0 : n;
}


/*
 * Starts the close handshake: queues our close frame and bounds the
 * rest of the connection's life. 1005 means the peer gave no code, and
 * is answered with an empty close frame since it must not be sent.
 */

void
ngx_http_signalr_ws_close(ngx_http_signalr_session_t *s, int code,
    const char *reason)
{
    int  rc;

    if (s->close_sent) {
        return;
    }

    /*
     * Closed for a fault of the client's (a bad frame, a message too
     * big): resuming would only bring the same message back.
     */
    if (!s->close_received && code != SR_WS_CLOSE_GOING_AWAY) {
        s->ended = 1;
    }

    if (code == SR_WS_CLOSE_NO_STATUS) {
        rc = sr_ws_write_frame(&s->out, SR_WS_OP_CLOSE, NULL, 0, NULL);

    } else {
        rc = sr_ws_write_close(&s->out, code, reason, NULL);
    }

    if (rc != SR_OK) {
        s->failed = 1;
    }

    s->close_sent = 1;

    /*
     * The session timer has nothing left to do (it only runs before the
     * close): it bounds the close handshake from now on, and is not
     * cancelable since a graceful shutdown waits for the handshake.
     */
    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    s->timer.handler = ngx_http_signalr_ws_close_timeout;
    s->timer.cancelable = 0;
    ngx_add_timer(&s->timer, NGX_HTTP_SIGNALR_CLOSE_TIMEOUT);

    ngx_http_signalr_ws_post_write(s);
}


/* NGX_OK, or NGX_DONE/NGX_ERROR when the connection is to be finalized */

static ngx_int_t
ngx_http_signalr_ws_flush(ngx_http_signalr_session_t *s)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->connection;

    while (s->out_pos < s->out.len) {

        n = c->send(c, s->out.data + s->out_pos, s->out.len - s->out_pos);

        if (n == NGX_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        s->out_pos += n;
    }

    /* an idle connection keeps no buffer: the next burst allocates one */
    s->out_pos = 0;
    sr_buf_free(&s->out);
    sr_buf_init(&s->out);

    if (!s->close_sent || s->close_flushed) {
        return NGX_OK;
    }

    s->close_flushed = 1;

    if (s->close_received) {
        return NGX_DONE;
    }

    /*
     * Our close frame is out and the peer's is awaited: half-close, so
     * that the client sees the end, and keep reading until its close
     * frame or EOF, within the close timer. Data frames are ignored.
     */

    if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, ngx_socket_errno,
                       "signalr connection \"%s\": shutdown() failed",
                       s->id);
        return NGX_DONE;
    }

    return NGX_OK;
}


/* the session's messages: text frames for JSON, binary for MessagePack */

static ngx_int_t
ngx_http_signalr_ws_send_message(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len, ngx_uint_t force)
{
    int  opcode;

    opcode = (s->protocol == SR_PROTOCOL_MSGPACK) ? SR_WS_OP_BINARY
                                                  : SR_WS_OP_TEXT;

    return ngx_http_signalr_ws_send(s, opcode, data, len, force);
}


/* the write handler finalizes a failed session */

static void
ngx_http_signalr_ws_drop(ngx_http_signalr_session_t *s)
{
    s->failed = 1;
    ngx_http_signalr_ws_post_write(s);
}


/* whether connections wait in the ring to be written */

ngx_uint_t
ngx_http_signalr_ws_writes_waiting(void)
{
    return ngx_http_signalr_ws_ring_head != ngx_http_signalr_ws_ring_tail;
}


void
ngx_http_signalr_ws_write_through(ngx_uint_t on)
{
    ngx_http_signalr_ws_through = on;
}


/*
 * Design note: the connections to write wait in a ring of their own,
 * and one posted event writes NGX_HTTP_SIGNALR_WS_WRITE_SLICE of them
 * at a time; with more left it runs again after the next epoll_wait(),
 * which then does not wait (ngx_posted_next_events). A burst of a
 * message to thousands of connections thus lets the daemon link be
 * read between slices: the messages that came meanwhile join what the
 * connections not written yet have queued, and leave with it in one
 * send(). A worker that keeps up writes every connection in the turn
 * it was queued in, as before: nothing waits on purpose. Each
 * connection's frames stay in its own buffer, in order. Measured with
 * bench/run broadcast against nchan, runs alternated, 7 workers: at
 * 10,000 subscribers 0.53 to 0.55 send() calls a delivery instead of
 * 0.69 to 0.84, and 1.7 to 1.9 times nchan's deliveries instead of 1.2
 * to 1.5; at 1,000 (about 140 connections a worker) 0.42 to 0.48
 * instead of 0.50 to 0.58. Slices of 8 coalesced no more than 32 did,
 * with more epoll_wait() calls.
 *
 * The ring holds sessions rather than their write events on a queue so
 * that queueing a connection touches its session only, which the
 * multicast has just read: at 10,000 subscribers, posting the write
 * event (the connection and the event: two more cache misses a
 * delivery) took 7% of the workers' time in the profile, a quarter of
 * what they spent in user space; queueing the session does not show.
 */

static void
ngx_http_signalr_ws_post_write(ngx_http_signalr_session_t *s)
{
    ngx_uint_t    i;
    ngx_event_t  *wev;

    if (s->write_queued) {
        return;
    }

    if (ngx_http_signalr_ws_ring_tail - ngx_http_signalr_ws_ring_head
        == ngx_http_signalr_ws_ring_size
        && ngx_http_signalr_ws_ring_grow() != NGX_OK)
    {
        /* the connection's own posted write event does it as well */
        wev = s->connection->write;

        if (!wev->posted) {
            ngx_post_event(wev, &ngx_posted_events);
        }

        return;
    }

    i = ngx_http_signalr_ws_ring_tail++ & (ngx_http_signalr_ws_ring_size - 1);

    ngx_http_signalr_ws_ring[i] = s;
    s->write_slot = (uint32_t) i;
    s->write_queued = 1;

    if (!ngx_http_signalr_ws_writer.posted) {
        ngx_http_signalr_ws_writer.handler = ngx_http_signalr_ws_write_slice;
        ngx_http_signalr_ws_writer.log = ngx_cycle->log;
        ngx_post_event(&ngx_http_signalr_ws_writer, &ngx_posted_events);
    }
}


/* twice the size, oldest first from 0, without the ended sessions */

static ngx_int_t
ngx_http_signalr_ws_ring_grow(void)
{
    ngx_uint_t                    i, n, size, mask;
    ngx_http_signalr_session_t  **ring, *s;

    size = ngx_http_signalr_ws_ring_size ? ngx_http_signalr_ws_ring_size * 2
                                         : NGX_HTTP_SIGNALR_WS_RING_MIN;

    if (size > 0xffffffff) {
        return NGX_ERROR;
    }

    ring = ngx_alloc(size * sizeof(ngx_http_signalr_session_t *),
                     ngx_cycle->log);
    if (ring == NULL) {
        return NGX_ERROR;
    }

    mask = ngx_http_signalr_ws_ring_size - 1;
    n = 0;

    for (i = ngx_http_signalr_ws_ring_head;
         i != ngx_http_signalr_ws_ring_tail;
         i++)
    {
        s = ngx_http_signalr_ws_ring[i & mask];

        if (s) {
            s->write_slot = (uint32_t) n;
            ring[n++] = s;
        }
    }

    if (ngx_http_signalr_ws_ring) {
        ngx_free(ngx_http_signalr_ws_ring);
    }

    ngx_http_signalr_ws_ring = ring;
    ngx_http_signalr_ws_ring_size = size;
    ngx_http_signalr_ws_ring_head = 0;
    ngx_http_signalr_ws_ring_tail = n;

    return NGX_OK;
}


static void
ngx_http_signalr_ws_write_slice(ngx_event_t *ev)
{
    ngx_uint_t                   n;
    ngx_event_t                 *wev;
    ngx_http_signalr_session_t  *s;

    n = 0;

    while (n < NGX_HTTP_SIGNALR_WS_WRITE_SLICE
           && ngx_http_signalr_ws_ring_head != ngx_http_signalr_ws_ring_tail)
    {
        s = ngx_http_signalr_ws_ring[ngx_http_signalr_ws_ring_head++
                                     & (ngx_http_signalr_ws_ring_size - 1)];
        if (s == NULL) {
            continue;
        }

        s->write_queued = 0;
        n++;

        /* it may end the session, or queue others (and grow the ring) */
        wev = s->connection->write;
        wev->handler(wev);
    }

    if (ngx_http_signalr_ws_ring_head != ngx_http_signalr_ws_ring_tail) {
        ngx_post_event(ev, &ngx_posted_next_events);
    }
}
