/*
 * The WebSocket transport: the upgrade request, the 101 answer, and
 * RFC 6455 I/O on the connection afterwards (frames in through
 * sr_ws_parser, a bounded queue of frames out, the close handshake),
 * offered to the session as ngx_http_signalr_ws_transport.
 *
 * After the 101 answer the request stays alive (r->main->count) but no
 * nginx filter sees the connection again: its read and write events are
 * handled here, and the request is finalized when the WebSocket ends,
 * which runs the session's pool cleanup.
 */

#include "ngx_http_signalr_module.h"


/* what one read event may take before others get their turn */
#define NGX_HTTP_SIGNALR_READ_BUDGET   (512 * 1024)

/* a drained queue keeps its memory unless it grew past this */
#define NGX_HTTP_SIGNALR_OUT_KEEP      (64 * 1024)


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
static void ngx_http_signalr_ws_read_handler(ngx_event_t *rev);
static void ngx_http_signalr_ws_write_handler(ngx_event_t *wev);
static void ngx_http_signalr_ws_close_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_signalr_ws_read(ngx_http_signalr_session_t *s);
static ngx_int_t ngx_http_signalr_ws_feed(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len);
static ngx_int_t ngx_http_signalr_ws_event(ngx_http_signalr_session_t *s,
    sr_ws_event_t *ev);
static ngx_int_t ngx_http_signalr_ws_flush(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_ws_post_write(ngx_http_signalr_session_t *s);
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

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_signalr_session_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* everything the cleanup looks at starts zeroed */
    s = cln->data;
    ngx_memzero(s, sizeof(ngx_http_signalr_session_t));

    cln->handler = ngx_http_signalr_session_cleanup;

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

    s->close_timer.handler = ngx_http_signalr_ws_close_timeout;
    s->close_timer.data = s;
    s->close_timer.log = r->connection->log;

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
                               ngx_http_signalr_ws_read_handler,
                               ngx_http_signalr_ws_write_handler);
    ngx_http_signalr_ws_post_write(s);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "signalr connection \"%s\" upgraded", s->id);

    return NGX_DONE;
}


/*
 * Ends the request and with it the connection; the pool cleanup frees
 * the session. The caller must not touch s or its connection after.
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

    ngx_http_finalize_request(r, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_signalr_ws_read_handler(ngx_event_t *rev)
{
    ngx_connection_t            *c;
    ngx_http_signalr_session_t  *s;

    c = rev->data;
    s = ngx_http_signalr_event_session(rev);

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
    ngx_http_signalr_session_t  *s;

    s = ngx_http_signalr_event_session(wev);

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

    if (s->early_len) {
        n = s->early_len;
        s->early_len = 0;

        if (ngx_http_signalr_ws_feed(s, s->early, n) != NGX_OK) {
            return NGX_DONE;
        }
    }

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
 */

ngx_int_t
ngx_http_signalr_ws_send(ngx_http_signalr_session_t *s, int opcode,
    const u_char *data, size_t len, ngx_uint_t force)
{
    size_t   hlen;
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

    /* sent bytes are dropped once they are half of the buffer */
    if (s->out_pos && s->out_pos >= s->out.len / 2) {
        sr_buf_consume(&s->out, s->out_pos);
        s->out_pos = 0;
    }

    hlen = sr_ws_write_header(head, 1, opcode, len, NULL);

    if (sr_buf_reserve(&s->out, hlen + len) != SR_OK
        || sr_buf_append(&s->out, head, hlen) != SR_OK
        || (len && sr_buf_append(&s->out, data, len) != SR_OK))
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

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    /* not cancelable: a graceful shutdown waits for the handshake */
    s->close_timer.cancelable = 0;
    ngx_add_timer(&s->close_timer, NGX_HTTP_SIGNALR_CLOSE_TIMEOUT);

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

    s->out_pos = 0;

    if (s->out.cap > NGX_HTTP_SIGNALR_OUT_KEEP) {
        sr_buf_free(&s->out);
        sr_buf_init(&s->out);

    } else {
        sr_buf_reset(&s->out);
    }

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


static void
ngx_http_signalr_ws_post_write(ngx_http_signalr_session_t *s)
{
    ngx_event_t  *wev;

    wev = s->connection->write;

    if (!wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }
}
