/*
 * The Server-Sent Events transport (server to client; the client sends
 * with HTTP POST): a GET answered with text/event-stream that stays open
 * for the life of the connection, each hub message one event of "data:"
 * lines.
 *
 * Design note: the response header goes through nginx's filters, so that
 * add_header and the like apply, but the events are written on the
 * socket here, like WebSocket frames, in chunks framed by hand when the
 * chunked filter chose that framing. nginx's body filters would each
 * want a buffer per write from the request's pool, which only shrinks
 * when the stream ends; and none of them may hold an event back
 * (postpone_output, gzip), which "no buffering on the path" requires.
 * X-Accel-Buffering tells a proxy in front of us the same.
 */

#include "ngx_http_signalr_module.h"


#define NGX_HTTP_SIGNALR_SSE_OUT_KEEP  (64 * 1024)


static ngx_int_t ngx_http_signalr_sse_header(ngx_http_request_t *r);
static void ngx_http_signalr_sse_read_handler(ngx_event_t *rev);
static void ngx_http_signalr_sse_write_handler(ngx_event_t *wev);
static void ngx_http_signalr_sse_close_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_signalr_sse_flush(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_sse_finalize(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_sse_post_write(ngx_http_signalr_session_t *s);
static size_t ngx_http_signalr_sse_event_size(const u_char *data,
    size_t len);
static u_char *ngx_http_signalr_sse_event(u_char *p, const u_char *data,
    size_t len);
static ngx_int_t ngx_http_signalr_sse_send(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len, ngx_uint_t force);
static void ngx_http_signalr_sse_close(ngx_http_signalr_session_t *s,
    int code, const char *reason);
static void ngx_http_signalr_sse_drop(ngx_http_signalr_session_t *s);


const ngx_http_signalr_transport_t  ngx_http_signalr_sse_transport = {
    ngx_string("ServerSentEvents"),
    SR_TRANSPORT_SSE,
    0,
    ngx_http_signalr_sse_send,
    ngx_http_signalr_sse_close,
    ngx_http_signalr_sse_drop
};


static u_char  ngx_http_signalr_sse_buffer[4096];


/*
 * The connection was attached to this worker for the stream: the
 * session lives as long as the request, and its pool cleanup gives the
 * registry entry back whatever fails from here on.
 */

ngx_int_t
ngx_http_signalr_sse_start(ngx_http_request_t *r, ngx_http_signalr_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                      token;
    ngx_connection_t              *c;
    ngx_pool_cleanup_t            *cln;
    ngx_http_signalr_session_t    *s;
    ngx_http_signalr_main_conf_t  *smcf;

    c = r->connection;
    smcf = ngx_http_get_module_main_conf(r, ngx_http_signalr_module);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_signalr_session_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s = cln->data;
    ngx_memzero(s, sizeof(ngx_http_signalr_session_t));
    cln->handler = ngx_http_signalr_session_cleanup;

    (void) ngx_http_arg(r, (u_char *) "id", 2, &token);

    s->registry = smcf->registry_zone;
    ngx_memcpy(s->token, token.data, token.len);
    s->token_len = token.len;
    ngx_memcpy(s->id, ctx->connection_id.data, ctx->connection_id.len);

    s->transport = &ngx_http_signalr_sse_transport;
    s->request = r;
    s->connection = c;
    s->log = c->log;
    s->conf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    if (ngx_http_signalr_session_identity(s, ctx, r->pool) != NGX_OK
        || ngx_http_signalr_session_init(s) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->session = s;

    rc = ngx_http_signalr_sse_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    s->chunked = r->chunked;

    ngx_http_signalr_take_over(r, "serving signalr server-sent events",
                               ngx_http_signalr_sse_read_handler,
                               ngx_http_signalr_sse_write_handler);
    ngx_http_signalr_sse_post_write(s);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "signalr connection \"%s\": event stream", s->id);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_signalr_sse_header(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     value;
    ngx_http_signalr_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_signalr_module);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

#if (NGX_HTTP_GZIP)
    /* a compressor would hold events back */
    r->gzip_tested = 1;
    r->gzip_ok = 0;
#endif

    ngx_str_set(&value, "no-cache");

    if (ngx_http_signalr_add_header(r, "Cache-Control", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "no");

    if (ngx_http_signalr_add_header(r, "X-Accel-Buffering", &value)
        != NGX_OK
        || ngx_http_signalr_cors_headers(r, slcf) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /* the header is below postpone_output: push it out now */
    rc = ngx_http_send_special(r, NGX_HTTP_FLUSH);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_signalr_sse_read_handler(ngx_event_t *rev)
{
    ssize_t                      n;
    ngx_uint_t                   i;
    ngx_connection_t            *c;
    ngx_http_signalr_session_t  *s;

    c = rev->data;
    s = ngx_http_signalr_event_session(rev);

    if (c->close) {
        c->close = 0;

        if (c->error || s->failed || s->close_sent) {
            ngx_http_signalr_sse_finalize(s);
            return;
        }

        ngx_http_signalr_session_shutdown(s);
    }

    /* the client sends nothing here; its going away ends the stream */
    for (i = 0; i < 16; i++) {
        n = c->recv(c, ngx_http_signalr_sse_buffer,
                    sizeof(ngx_http_signalr_sse_buffer));

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_signalr_sse_finalize(s);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "signalr connection \"%s\": client closed "
                           "the event stream", s->id);
            ngx_http_signalr_sse_finalize(s);
            return;
        }
    }

    ngx_post_event(rev, &ngx_posted_events);
}


static void
ngx_http_signalr_sse_write_handler(ngx_event_t *wev)
{
    ngx_http_signalr_session_t  *s;

    s = ngx_http_signalr_event_session(wev);

    if (s->failed || ngx_http_signalr_sse_flush(s) != NGX_OK) {
        ngx_http_signalr_sse_finalize(s);
    }
}


static void
ngx_http_signalr_sse_close_timeout(ngx_event_t *ev)
{
    ngx_http_signalr_session_t  *s = ev->data;

    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "signalr connection \"%s\": the end of the event stream "
                  "was not read in time", s->id);

    ngx_http_signalr_sse_finalize(s);
}


/* NGX_OK; NGX_DONE once the ended stream is out; NGX_ERROR */

static ngx_int_t
ngx_http_signalr_sse_flush(ngx_http_signalr_session_t *s)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->connection;

    /* the response header may still be in nginx's filters */
    if (c->buffered) {
        if (ngx_http_output_filter(s->request, NULL) == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (c->buffered) {
            return ngx_handle_write_event(c->write, 0);
        }
    }

    while (s->out_pos < s->out.len) {

        n = c->send(c, s->out.data + s->out_pos, s->out.len - s->out_pos);

        if (n == NGX_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            return ngx_handle_write_event(c->write, 0);
        }

        s->out_pos += n;
    }

    s->out_pos = 0;

    if (s->out.cap > NGX_HTTP_SIGNALR_SSE_OUT_KEEP) {
        sr_buf_free(&s->out);
        sr_buf_init(&s->out);

    } else {
        sr_buf_reset(&s->out);
    }

    return s->close_sent ? NGX_DONE : NGX_OK;
}


/* the caller must not touch s or its connection after */

static void
ngx_http_signalr_sse_finalize(ngx_http_signalr_session_t *s)
{
    ngx_connection_t  *c;

    c = s->connection;
    c->idle = 0;

    ngx_http_finalize_request(s->request, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_signalr_sse_post_write(ngx_http_signalr_session_t *s)
{
    ngx_event_t  *wev;

    wev = s->connection->write;

    if (!wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }
}


/*
 * An event is "data:" lines and a blank line. The framed JSON message
 * has no line break of its own; one in it would start a new data line,
 * which the client joins back with "\n".
 */

static size_t
ngx_http_signalr_sse_event_size(const u_char *data, size_t len)
{
    size_t  i, lines;

    lines = 1;

    for (i = 0; i < len; i++) {
        if (data[i] == '\n' || (data[i] == '\r'
                                && (i + 1 == len || data[i + 1] != '\n')))
        {
            lines++;
        }
    }

    return len + lines * (sizeof("data: " CRLF) - 1) + 2;
}


static u_char *
ngx_http_signalr_sse_event(u_char *p, const u_char *data, size_t len)
{
    size_t  i;

    p = ngx_cpymem(p, "data: ", 6);

    for (i = 0; i < len; i++) {

        if (data[i] != '\r' && data[i] != '\n') {
            *p++ = data[i];
            continue;
        }

        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') {
            i++;
        }

        p = ngx_cpymem(p, CRLF "data: ", 8);
    }

    return ngx_cpymem(p, CRLF CRLF, 4);
}


static ngx_int_t
ngx_http_signalr_sse_send(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len, ngx_uint_t force)
{
    size_t   size, total;
    u_char  *p, *start;

    if (s->close_sent || s->failed) {
        return NGX_DECLINED;
    }

    size = ngx_http_signalr_sse_event_size(data, len);
    total = size + (s->chunked ? NGX_SIZE_T_LEN + 4 : 0);

    if (!force
        && s->out.len - s->out_pos + total > s->conf->send_queue_size)
    {
        ngx_http_signalr_session_overflow(s);
        return NGX_DECLINED;
    }

    if (s->out_pos && s->out_pos >= s->out.len / 2) {
        sr_buf_consume(&s->out, s->out_pos);
        s->out_pos = 0;
    }

    if (sr_buf_reserve(&s->out, total) != SR_OK) {
        ngx_log_error(NGX_LOG_ALERT, s->log, 0,
                      "signalr connection \"%s\": no memory for "
                      "the send queue", s->id);
        ngx_http_signalr_sse_drop(s);
        return NGX_DECLINED;
    }

    start = s->out.data + s->out.len;
    p = start;

    if (s->chunked) {
        p = ngx_sprintf(p, "%xz" CRLF, size);
    }

    p = ngx_http_signalr_sse_event(p, data, len);

    if (s->chunked) {
        p = ngx_cpymem(p, CRLF, 2);
    }

    s->out.len += p - start;
    s->last_sent = ngx_current_msec;

    ngx_http_signalr_sse_post_write(s);

    return NGX_OK;
}


/* what is queued goes out, then the last chunk, then the request ends */

static void
ngx_http_signalr_sse_close(ngx_http_signalr_session_t *s, int code,
    const char *reason)
{
    if (s->close_sent) {
        return;
    }

    if (s->chunked && sr_buf_append(&s->out, "0" CRLF CRLF, 5) != SR_OK) {
        s->failed = 1;
    }

    s->close_sent = 1;

    /* the session timer bounds the close from now on, see ..._ws_close() */
    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    s->timer.handler = ngx_http_signalr_sse_close_timeout;
    s->timer.cancelable = 0;
    ngx_add_timer(&s->timer, NGX_HTTP_SIGNALR_CLOSE_TIMEOUT);

    ngx_http_signalr_sse_post_write(s);
}


static void
ngx_http_signalr_sse_drop(ngx_http_signalr_session_t *s)
{
    s->failed = 1;
    ngx_http_signalr_sse_post_write(s);
}
