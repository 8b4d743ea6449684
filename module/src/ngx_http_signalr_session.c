/*
 * The SignalR session, whatever the transport under it (WebSockets,
 * Server-Sent Events or Long Polling, see docs/transports.md): the
 * handshake, hub message routing between the client and the daemon
 * link, keep-alive and client timeout, and the invocations a client
 * still waits on, so that they can be answered when the daemon goes
 * away. It hands framed hub messages to s->transport and never touches
 * a socket itself.
 *
 * Every session of the worker is in one table by connection id (for what
 * the daemon sends, ..._ids.c) and one queue (for link state changes).
 */

#include "ngx_http_signalr_module.h"


#define NGX_HTTP_SIGNALR_HUB_UNAVAILABLE  "hub unavailable"
#define NGX_HTTP_SIGNALR_TIMEOUT_ERROR                                       \
    "Server timeout elapsed without receiving a message from the client."

/* connections a fan-out writes through between two looks at the link */
#define NGX_HTTP_SIGNALR_THROUGH_CHECK  32

/*
 * A session takes hub messages until it closes; a stateful one that
 * may be parked keeps them for replay while its transport closes.
 */
#define ngx_http_signalr_session_takes(s)                                    \
    ((s)->handshaken                                                         \
     && (!(s)->close_sent || ((s)->stateful && !(s)->ended)))


/* an invocation waiting for its Completion */
typedef struct {
    ngx_str_node_t               sn;
    ngx_uint_t                   stream;
    u_char                       data[1];
} ngx_http_signalr_pending_t;


/* a hub message from the daemon, encoded per protocol on demand */
typedef struct {
    const u_char                *payload;   /* MessagePack, unframed */
    size_t                       len;
    ngx_int_t                    type;
    sr_fanout_t                  fanout;
    size_t                       completion_id_len;
    u_char                       completion_id[
                                     NGX_HTTP_SIGNALR_MAX_INVOCATION_ID + 1];
    unsigned                     fanout_ready:1;
    unsigned                     fanout_failed:1;
    unsigned                     completion_decoded:1;
} ngx_http_signalr_outgoing_t;


static ngx_int_t ngx_http_signalr_session_process(
    ngx_http_signalr_session_t *s, const u_char *p, size_t n, size_t *used);
static ngx_int_t ngx_http_signalr_session_handshake(
    ngx_http_signalr_session_t *s, const u_char *p, size_t n,
    size_t *consumed);
static void ngx_http_signalr_session_accept(ngx_http_signalr_session_t *s,
    sr_handshake_request_t *req);
static void ngx_http_signalr_session_handshake_fail(
    ngx_http_signalr_session_t *s, const char *error, int code);
static void ngx_http_signalr_session_payload(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len);
static void ngx_http_signalr_session_route(ngx_http_signalr_session_t *s,
    sr_message_t *msg, const u_char *payload, size_t len);
static ngx_int_t ngx_http_signalr_session_invocation(
    ngx_http_signalr_session_t *s, sr_message_t *msg, ngx_msec_t *delay);
static void ngx_http_signalr_session_forward(ngx_http_signalr_session_t *s,
    sr_message_t *msg, const u_char *payload, size_t len, ngx_msec_t delay);
static void ngx_http_signalr_session_pass(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len, ngx_msec_t delay);
static void ngx_http_signalr_session_bad_message(
    ngx_http_signalr_session_t *s, const char *reason);
static void ngx_http_signalr_session_complete_error(
    ngx_http_signalr_session_t *s, const char *invocation_id,
    const char *error);
static ngx_int_t ngx_http_signalr_session_track_message(
    ngx_http_signalr_session_t *s, sr_message_t *msg);
static void ngx_http_signalr_session_send_ack(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_session_send_ping(ngx_http_signalr_session_t *s);
static void ngx_http_signalr_session_timer(ngx_event_t *ev);
static void ngx_http_signalr_session_schedule(ngx_http_signalr_session_t *s);
static ngx_int_t ngx_http_signalr_pending_add(ngx_http_signalr_session_t *s,
    const char *id, ngx_uint_t stream);
static void ngx_http_signalr_pending_remove(ngx_http_signalr_session_t *s,
    const char *id);
static void ngx_http_signalr_pending_drain(ngx_http_signalr_session_t *s,
    const char *error);
static ngx_uint_t ngx_http_signalr_session_idle(void);
static void ngx_http_signalr_outgoing_send(ngx_http_signalr_session_t *s,
    ngx_http_signalr_outgoing_t *o);
static const sr_buf_t *ngx_http_signalr_outgoing_framed(
    ngx_http_signalr_outgoing_t *o, sr_protocol_t protocol, ngx_log_t *log);
static void ngx_http_signalr_outgoing_clear(ngx_http_signalr_outgoing_t *o);


static ngx_queue_t        ngx_http_signalr_sessions_queue;

/* one re-encoded message at a time, reused to spare allocations */
static sr_buf_t           ngx_http_signalr_scratch;
static sr_buf_t           ngx_http_signalr_ping[SR_PROTOCOL_COUNT];


void
ngx_http_signalr_sessions_init(void)
{
    ngx_queue_init(&ngx_http_signalr_sessions_queue);

    sr_buf_init(&ngx_http_signalr_scratch);
    sr_buf_init(&ngx_http_signalr_ping[SR_PROTOCOL_JSON]);
    sr_buf_init(&ngx_http_signalr_ping[SR_PROTOCOL_MSGPACK]);

    ngx_http_signalr_reconnect_init();
}


void
ngx_http_signalr_sessions_exit(void)
{
    ngx_http_signalr_reconnect_exit();
    ngx_http_signalr_ids_exit();

    sr_buf_free(&ngx_http_signalr_scratch);
    sr_buf_free(&ngx_http_signalr_ping[SR_PROTOCOL_JSON]);
    sr_buf_free(&ngx_http_signalr_ping[SR_PROTOCOL_MSGPACK]);
}


ngx_int_t
ngx_http_signalr_session_init(ngx_http_signalr_session_t *s)
{
    s->id_len = ngx_strlen(s->id);
    s->id_hash = ngx_http_signalr_ids_hash(s->id, s->id_len);

    if (ngx_http_signalr_ids_insert(s) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&ngx_http_signalr_sessions_queue, &s->queue);
    s->in_tree = 1;

    ngx_rbtree_init(&s->pending, &s->pending_sentinel,
                    ngx_str_rbtree_insert_value);

    sr_buf_init(&s->in);
    ngx_queue_init(&s->replay);

    s->timer.handler = ngx_http_signalr_session_timer;
    s->timer.data = s;
    s->timer.log = s->log;
    s->timer.cancelable = 1;

    s->last_recv = ngx_current_msec;
    s->last_sent = ngx_current_msec;

    ngx_add_timer(&s->timer, s->conf->handshake_timeout);

    return NGX_OK;
}


ngx_http_signalr_session_t *
ngx_http_signalr_session_find(ngx_str_t *id)
{
    return ngx_http_signalr_ids_find(id);
}


/*
 * Frees what the session holds, at its end: from the pool cleanup of the
 * request of an SSE stream or a WebSocket not yet detached, from the end
 * of a detached WebSocket, or from Long Polling's own end.
 */

void
ngx_http_signalr_session_cleanup(void *data)
{
    ngx_http_signalr_session_t  *s = data;

    ngx_str_t  token;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\" cleanup", s->id);

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (s->in_tree) {
        ngx_http_signalr_ids_delete(s);
        ngx_queue_remove(&s->queue);
        s->in_tree = 0;
    }

    /* a stateful client that did not say goodbye may come back */
    if (s->opened && ngx_http_signalr_reconnect_parkable(s)
        && ngx_http_signalr_claims_thaw(s) == NGX_OK
        && ngx_http_signalr_reconnect_park(s) == NGX_OK)
    {
        s->opened = 0;
    }

    if (s->opened) {
        (void) ngx_http_signalr_link_closed(s);
        s->opened = 0;
    }

    if (s->token_len) {
        token.data = s->token;
        token.len = s->token_len;
        ngx_http_signalr_registry_remove(s->registry, &token);
        s->token_len = 0;
    }

    if (s->pending.root) {
        ngx_http_signalr_pending_drain(s, NULL);
    }

    ngx_http_signalr_limits_detach(s);

    ngx_http_signalr_reconnect_clear(s);

    sr_ws_parser_free(&s->parser);
    sr_buf_free(&s->in);
    sr_buf_free(&s->out);

    ngx_http_signalr_claims_free(s);
}


/*
 * One WebSocket message arrived. Hub messages may span WebSocket
 * messages, so what does not end a message waits in s->in; the common
 * case, whole messages, is decoded in place without a copy.
 */

void
ngx_http_signalr_session_input(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len)
{
    size_t         n, used;
    ngx_int_t      rc;
    const u_char  *p;

    if (s->in.len) {
        if (sr_buf_append(&s->in, data, len) != SR_OK) {
            s->failed = 1;
            return;
        }

        p = s->in.data;
        n = s->in.len;

    } else {
        p = data;
        n = len;
    }

    used = 0;

    rc = ngx_http_signalr_session_process(s, p, n, &used);

    if (rc != NGX_OK || s->close_sent) {
        sr_buf_free(&s->in);
        sr_buf_init(&s->in);
        return;
    }

    if (s->in.len) {
        sr_buf_consume(&s->in, used);

        /* the common case, whole messages: no buffer kept while idle */
        if (s->in.len == 0) {
            sr_buf_free(&s->in);
            sr_buf_init(&s->in);
        }

    } else if (used < n && sr_buf_append(&s->in, p + used, n - used)
                           != SR_OK)
    {
        s->failed = 1;
        return;
    }

    if (s->stateful && s->received != s->acked) {
        ngx_http_signalr_session_send_ack(s);
    }
}


static ngx_int_t
ngx_http_signalr_session_process(ngx_http_signalr_session_t *s,
    const u_char *p, size_t n, size_t *used)
{
    int            rc;
    size_t         consumed, plen;
    ngx_int_t      hrc;
    sr_error_t     err;
    const u_char  *payload;

    while (*used < n && !s->close_sent && !s->failed) {

        consumed = 0;

        if (!s->handshaken) {
            hrc = ngx_http_signalr_session_handshake(s, p + *used,
                                                     n - *used, &consumed);
            if (hrc == NGX_AGAIN) {
                return NGX_OK;
            }

            if (hrc != NGX_OK) {
                return NGX_ERROR;
            }

            *used += consumed;
            continue;
        }

        rc = sr_frame_next(s->protocol, p + *used, n - *used,
                           s->conf->max_message_size, &payload, &plen,
                           &consumed, &err);

        if (rc == SR_AGAIN) {
            return NGX_OK;
        }

        if (rc == SR_ERR_TOO_LARGE) {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "signalr connection \"%s\": hub message over "
                          "signalr_max_message_size", s->id);
            s->transport->close(s, SR_WS_CLOSE_TOO_BIG, NULL);
            return NGX_ERROR;
        }

        if (rc != SR_OK) {
            ngx_http_signalr_session_bad_message(s, err.str);
            return NGX_ERROR;
        }

        *used += consumed;

        ngx_http_signalr_session_payload(s, payload, plen);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_session_handshake(ngx_http_signalr_session_t *s,
    const u_char *p, size_t n, size_t *consumed)
{
    int                     rc;
    sr_error_t              err;
    sr_handshake_request_t  req;
    u_char                  text[SR_ERRSTR_SIZE + 64];

    sr_error_clear(&err);

    rc = sr_handshake_parse_request(p, n, s->conf->max_message_size, &req,
                                    consumed, &err);

    if (rc == SR_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc == SR_ERR_UNSUPPORTED) {
        ngx_http_signalr_session_handshake_fail(s, err.str,
                                                SR_WS_CLOSE_NORMAL);
        return NGX_ERROR;
    }

    if (rc == SR_ERR_TOO_LARGE) {
        ngx_http_signalr_session_handshake_fail(s,
                                                "Handshake request is too "
                                                "large.",
                                                SR_WS_CLOSE_TOO_BIG);
        return NGX_ERROR;
    }

    if (rc != SR_OK) {
        ngx_snprintf(text, sizeof(text), "Invalid handshake request: %s%Z",
                     err.str);
        text[sizeof(text) - 1] = '\0';

        ngx_http_signalr_session_handshake_fail(s, (char *) text,
                                                SR_WS_CLOSE_NORMAL);
        return NGX_ERROR;
    }

    /* SSE carries text: a binary protocol cannot travel on it */
    if (req.protocol == SR_PROTOCOL_MSGPACK && !s->transport->binary) {
        ngx_http_signalr_session_handshake_fail(s,
                                                "The 'messagepack' protocol "
                                                "needs a binary transport.",
                                                SR_WS_CLOSE_NORMAL);
        return NGX_ERROR;
    }

    ngx_http_signalr_session_accept(s, &req);

    return NGX_OK;
}


/* the handshake succeeded: answer it, start keep-alive, tell the daemon */

static void
ngx_http_signalr_session_accept(ngx_http_signalr_session_t *s,
    sr_handshake_request_t *req)
{
    sr_buf_t  b;

    s->protocol = req->protocol;
    s->handshaken = 1;
    s->stateful = s->conf->stateful_reconnect && req->version >= 2;

    if (s->stateful) {
        ngx_http_signalr_reconnect_start(s);
    }

    sr_buf_init(&b);

    if (sr_handshake_write_response(&b, NULL) == SR_OK) {
        (void) ngx_http_signalr_session_send(s, b.data, b.len, 0);
    }

    sr_buf_free(&b);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\": handshake, protocol %s",
                   s->id, sr_protocol_name(s->protocol));

    ngx_http_signalr_session_schedule(s);

    if (ngx_http_signalr_link_is_up()) {
        (void) ngx_http_signalr_link_open(s);
    }

    ngx_http_signalr_claims_freeze(s);
}


/* per the spec, a refused handshake is answered with its error, then closed */

static void
ngx_http_signalr_session_handshake_fail(ngx_http_signalr_session_t *s,
    const char *error, int code)
{
    sr_buf_t  b;

    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "signalr connection \"%s\": handshake refused: %s",
                  s->id, error);

    sr_buf_init(&b);

    if (sr_handshake_write_response(&b, error) == SR_OK) {
        (void) ngx_http_signalr_session_send(s, b.data, b.len, 1);
    }

    sr_buf_free(&b);

    s->transport->close(s, code, NULL);
}


static void
ngx_http_signalr_session_payload(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len)
{
    int           rc;
    ngx_int_t     type;
    sr_error_t    err;
    sr_limits_t   limits;
    sr_message_t  msg;

    limits.max_message_size = s->conf->max_message_size;
    limits.max_invocation_id = s->conf->max_invocation_id;
    limits.max_arguments = s->conf->max_arguments;

    sr_message_init(&msg, SR_MSG_PING);
    sr_error_clear(&err);

    rc = sr_message_decode_payload(s->protocol, payload, len, &limits, &msg,
                                   &err);

    if (rc == SR_OK) {
        ngx_http_signalr_session_route(s, &msg, payload, len);
        sr_message_clear(&msg);
        return;
    }

    if (rc == SR_ERR_TOO_LARGE) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": hub message over a "
                      "limit: %s", s->id, err.str);
        s->transport->close(s, SR_WS_CLOSE_TOO_BIG, NULL);
        return;
    }

    if (rc == SR_ERR_UNSUPPORTED) {

        /*
         * The spec lets unknown message types pass; a known type with a
         * MessagePack value that has no JSON form (bin, ext) is refused.
         */

        type = (s->protocol == SR_PROTOCOL_MSGPACK)
               ? ngx_http_signalr_msgpack_type(payload, len) : -1;

        if (type < SR_MSG_INVOCATION || type > SR_MSG_SEQUENCE) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                           "signalr connection \"%s\": unknown message "
                           "type ignored", s->id);
            return;
        }
    }

    ngx_http_signalr_session_bad_message(s, err.str);
}


static void
ngx_http_signalr_session_route(ngx_http_signalr_session_t *s,
    sr_message_t *msg, const u_char *payload, size_t len)
{
    ngx_msec_t  delay;

    delay = 0;

    /* what a reconnected client sends again and was forwarded before */
    if (s->skip && ngx_http_signalr_trackable(msg->type)
        && ngx_http_signalr_reconnect_duplicate(s))
    {
        return;
    }

    switch (msg->type) {

    case SR_MSG_PING:
        return;

    case SR_MSG_CLOSE:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                       "signalr connection \"%s\": client sent close",
                       s->id);
        s->ended = 1;
        s->transport->close(s, SR_WS_CLOSE_NORMAL, NULL);
        return;

    case SR_MSG_ACK:
        if (s->stateful) {
            ngx_http_signalr_reconnect_ack(s, msg->sequence_id);
        }

        return;

    case SR_MSG_SEQUENCE:
        if (s->stateful) {
            (void) ngx_http_signalr_reconnect_sequence(s, msg->sequence_id);
        }

        return;

    case SR_MSG_INVOCATION:
    case SR_MSG_STREAM_INVOCATION:
        s->received++;

        if (ngx_http_signalr_session_invocation(s, msg, &delay) != NGX_OK) {
            return;
        }

        break;

    case SR_MSG_CANCEL_INVOCATION:
        s->received++;

        if (msg->invocation_id) {
            ngx_http_signalr_pending_remove(s, msg->invocation_id);
        }

        break;

    default: /* StreamItem, Completion: client to server streams, results */
        s->received++;
        break;
    }

    if (ngx_http_signalr_link_is_up()) {
        ngx_http_signalr_session_forward(s, msg, payload, len, delay);
    }
}


/*
 * An invocation that waits for an answer is remembered until its
 * Completion, and answered here when the hub cannot be reached.
 * NGX_OK when it is to be forwarded.
 */

static ngx_int_t
ngx_http_signalr_session_invocation(ngx_http_signalr_session_t *s,
    sr_message_t *msg, ngx_msec_t *delay)
{
    ngx_int_t  rc;

    if (!ngx_http_signalr_link_is_up()) {
        if (msg->invocation_id) {
            ngx_http_signalr_session_complete_error(s, msg->invocation_id,
                                            NGX_HTTP_SIGNALR_HUB_UNAVAILABLE);
        }

        return NGX_DECLINED;
    }

    rc = ngx_http_signalr_limits_invocation(s, delay);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": invocation over "
                      "signalr_limit_invocations", s->id);

        /* one that waits for nothing cannot be told: it is dropped */
        if (msg->invocation_id) {
            ngx_http_signalr_session_complete_error(s, msg->invocation_id,
                                            NGX_HTTP_SIGNALR_RATE_LIMITED);
        }

        return NGX_DECLINED;
    }

    if (msg->invocation_id == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_signalr_pending_add(s, msg->invocation_id,
                                      msg->type == SR_MSG_STREAM_INVOCATION);

    if (rc == NGX_ERROR) {
        s->failed = 1;
        return NGX_ERROR;
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": stream over a stream "
                      "limit", s->id);
        ngx_http_signalr_session_complete_error(s, msg->invocation_id,
                                        NGX_HTTP_SIGNALR_TOO_MANY_STREAMS);
        return NGX_DECLINED;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_signalr_session_complete_error(s, msg->invocation_id,
                                            "too many pending invocations");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* INVOKE bodies are MessagePack: a JSON client's message is re-encoded */

static void
ngx_http_signalr_session_forward(ngx_http_signalr_session_t *s,
    sr_message_t *msg, const u_char *payload, size_t len, ngx_msec_t delay)
{
    sr_error_t  err;

    if (s->protocol == SR_PROTOCOL_MSGPACK) {
        ngx_http_signalr_session_pass(s, payload, len, delay);
        return;
    }

    sr_buf_reset(&ngx_http_signalr_scratch);

    if (sr_message_encode_payload(SR_PROTOCOL_MSGPACK, msg,
                                  &ngx_http_signalr_scratch, &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "signalr connection \"%s\": "
                      "sr_message_encode_payload() failed: %s",
                      s->id, err.str);
        return;
    }

    ngx_http_signalr_session_pass(s, ngx_http_signalr_scratch.data,
                                  ngx_http_signalr_scratch.len, delay);

    if (ngx_http_signalr_scratch.cap > 64 * 1024) {
        sr_buf_free(&ngx_http_signalr_scratch);
        sr_buf_init(&ngx_http_signalr_scratch);
    }
}


/*
 * Sends a hub message to the daemon, or holds it back: an invocation
 * waiting for a token of signalr_limit_invocations ... queue=, and every
 * message after it, keep the client's order.
 */

static void
ngx_http_signalr_session_pass(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len, ngx_msec_t delay)
{
    ngx_int_t  rc;

    if (delay == 0 && !ngx_http_signalr_delay_pending(s)) {
        (void) ngx_http_signalr_link_invoke(s, payload, len);
        return;
    }

    rc = ngx_http_signalr_delay_push(s, payload, len, delay);

    if (rc == NGX_ERROR) {
        s->failed = 1;
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": too many messages "
                      "held back by signalr_limit_invocations", s->id);
        ngx_http_signalr_session_end(s, "too many queued invocations", 0,
                                     SR_WS_CLOSE_POLICY);
    }
}


/*
 * A malformed hub message ends the connection the way ASP.NET Core
 * does: a Close message carrying the error, then a normal close.
 */

static void
ngx_http_signalr_session_bad_message(ngx_http_signalr_session_t *s,
    const char *reason)
{
    u_char  text[SR_ERRSTR_SIZE + 64];

    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "signalr connection \"%s\": bad hub message: %s",
                  s->id, reason);

    ngx_snprintf(text, sizeof(text), "Connection closed with an error. %s%Z",
                 reason);
    text[sizeof(text) - 1] = '\0';

    ngx_http_signalr_session_end(s, (char *) text, 0, SR_WS_CLOSE_NORMAL);
}


/*
 * Sends a Close message (when the handshake is done) and closes the
 * WebSocket with code.
 */

void
ngx_http_signalr_session_end(ngx_http_signalr_session_t *s,
    const char *error, ngx_uint_t allow_reconnect, int code)
{
    sr_buf_t      b;
    sr_error_t    err;
    sr_message_t  msg;

    if (s->close_sent) {
        return;
    }

    if (s->handshaken) {
        s->ended = 1;

        sr_message_init(&msg, SR_MSG_CLOSE);

        /* borrowed, so msg is not cleared */
        msg.error = (char *) error;
        msg.allow_reconnect = allow_reconnect ? 1 : 0;

        sr_buf_init(&b);

        if (sr_message_encode(s->protocol, &msg, &b, &err) == SR_OK) {
            (void) ngx_http_signalr_session_send(s, b.data, b.len, 1);
        }

        sr_buf_free(&b);
    }

    s->transport->close(s, code, NULL);
}


void
ngx_http_signalr_session_shutdown(ngx_http_signalr_session_t *s)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\": shutting down", s->id);

    /* what is queued below must not wait for the worker's next timer */
    ngx_http_signalr_wake_loop();

    /* no Close: the client reconnects, and its state moves with it */
    if (ngx_http_signalr_reconnect_parkable(s)) {
        s->transport->close(s, SR_WS_CLOSE_GOING_AWAY, NULL);
        return;
    }

    ngx_http_signalr_session_end(s, NULL, 1, SR_WS_CLOSE_GOING_AWAY);
}


void
ngx_http_signalr_session_overflow(ngx_http_signalr_session_t *s)
{
    ngx_log_error(NGX_LOG_WARN, s->log, 0,
                  "signalr connection \"%s\": send queue is full "
                  "(%uz bytes), closing", s->id, s->out.len - s->out_pos);

    ngx_http_signalr_session_end(s, "send queue full", 0,
                                 SR_WS_CLOSE_POLICY);
}


static void
ngx_http_signalr_session_complete_error(ngx_http_signalr_session_t *s,
    const char *invocation_id, const char *error)
{
    sr_error_t    err;
    sr_message_t  msg;

    sr_message_init(&msg, SR_MSG_COMPLETION);

    /* borrowed, so msg is not cleared */
    msg.invocation_id = (char *) invocation_id;
    msg.error = (char *) error;

    if (s->stateful
        && ngx_http_signalr_session_track_message(s, &msg) != NGX_OK)
    {
        return;
    }

    sr_buf_reset(&ngx_http_signalr_scratch);

    if (sr_message_encode(s->protocol, &msg, &ngx_http_signalr_scratch, &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, s->log, 0,
                      "signalr connection \"%s\": "
                      "sr_message_encode() failed: %s", s->id, err.str);
        return;
    }

    (void) ngx_http_signalr_session_send(s, ngx_http_signalr_scratch.data,
                                         ngx_http_signalr_scratch.len, 0);
}


/* a message of the module's own, kept for replay in the IPC form */

static ngx_int_t
ngx_http_signalr_session_track_message(ngx_http_signalr_session_t *s,
    sr_message_t *msg)
{
    sr_buf_t    b;
    ngx_int_t   rc;
    sr_error_t  err;

    sr_buf_init(&b);

    if (sr_message_encode_payload(SR_PROTOCOL_MSGPACK, msg, &b, &err)
        != SR_OK)
    {
        sr_buf_free(&b);
        ngx_log_error(NGX_LOG_ALERT, s->log, 0,
                      "signalr connection \"%s\": "
                      "sr_message_encode_payload() failed: %s",
                      s->id, err.str);
        return NGX_ERROR;
    }

    rc = ngx_http_signalr_reconnect_track(s, msg->type, b.data, b.len);

    sr_buf_free(&b);

    return rc;
}


/*
 * With stateful reconnect the official clients keep what they sent
 * until it is acknowledged, and stop sending when that buffer is full:
 * acknowledge what arrived.
 */

static void
ngx_http_signalr_session_send_ack(ngx_http_signalr_session_t *s)
{
    sr_error_t    err;
    sr_message_t  msg;

    sr_message_init(&msg, SR_MSG_ACK);
    msg.sequence_id = s->received;

    sr_buf_reset(&ngx_http_signalr_scratch);

    if (sr_message_encode(s->protocol, &msg, &ngx_http_signalr_scratch, &err)
        != SR_OK)
    {
        return;
    }

    if (ngx_http_signalr_session_send(s, ngx_http_signalr_scratch.data,
                                      ngx_http_signalr_scratch.len, 0)
        == NGX_OK)
    {
        s->acked = s->received;
    }
}


static void
ngx_http_signalr_session_send_ping(ngx_http_signalr_session_t *s)
{
    sr_buf_t      *ping;
    sr_error_t     err;
    sr_message_t   msg;

    ping = &ngx_http_signalr_ping[s->protocol];

    if (ping->len == 0) {
        sr_message_init(&msg, SR_MSG_PING);

        if (sr_message_encode(s->protocol, &msg, ping, &err) != SR_OK) {
            return;
        }
    }

    (void) ngx_http_signalr_session_send(s, ping->data, ping->len, 0);
}


static void
ngx_http_signalr_session_timer(ngx_event_t *ev)
{
    ngx_http_signalr_session_t  *s = ev->data;

    ngx_msec_t  now;

    if (s->close_sent) {
        return;
    }

    if (!s->handshaken) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": handshake timed out",
                      s->id);
        s->transport->close(s, SR_WS_CLOSE_POLICY, "handshake timeout");
        return;
    }

    if (ngx_http_signalr_expiry_check(s) != NGX_OK) {
        return;
    }

    now = ngx_current_msec;

    if (now - s->last_recv >= s->conf->client_timeout) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": client timed out",
                      s->id);

        /* most likely a network that went away: let it come back */
        if (ngx_http_signalr_reconnect_parkable(s)) {
            s->transport->drop(s);
            return;
        }

        ngx_http_signalr_session_end(s, NGX_HTTP_SIGNALR_TIMEOUT_ERROR, 0,
                                     SR_WS_CLOSE_NORMAL);
        return;
    }

    if (now - s->last_sent >= s->conf->keepalive_interval) {
        ngx_http_signalr_session_send_ping(s);
    }

    if (!s->close_sent) {
        ngx_http_signalr_session_schedule(s);
    }
}


/*
 * Wakes up at the next keep-alive, client timeout or token expiry,
 * whichever is first. Design note: the timer is re-armed here only,
 * when it fires (and at the handshake), never when a message comes or
 * goes: last_recv and last_sent are the deadlines, kept in the session,
 * and a wake-up that finds them moved just waits again, as nginx's own
 * keep-alive timers spare the timer tree an update per message.
 */

static void
ngx_http_signalr_session_schedule(ngx_http_signalr_session_t *s)
{
    ngx_msec_t  now, sent, recv, ping, idle;

    /* after a close the timer is the transport's, bounding the close */
    if (s->close_sent) {
        return;
    }

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    now = ngx_current_msec;

    sent = ngx_min(now - s->last_sent, s->conf->keepalive_interval);
    recv = ngx_min(now - s->last_recv, s->conf->client_timeout);

    ping = s->conf->keepalive_interval - sent;
    idle = s->conf->client_timeout - recv;
    idle = ngx_min(idle, ngx_http_signalr_expiry_left(s));

    ngx_add_timer(&s->timer, ngx_max(ngx_min(ping, idle), 1));
}


static ngx_int_t
ngx_http_signalr_pending_add(ngx_http_signalr_session_t *s, const char *id,
    ngx_uint_t stream)
{
    size_t                       len;
    uint32_t                     hash;
    ngx_str_t                    key;
    ngx_http_signalr_pending_t  *p;

    key.data = (u_char *) id;
    key.len = ngx_strlen(id);
    hash = ngx_crc32_short(key.data, key.len);

    if (ngx_str_rbtree_lookup(&s->pending, &key, hash)) {
        return NGX_OK;
    }

    if (s->npending >= NGX_HTTP_SIGNALR_MAX_PENDING) {
        return NGX_DECLINED;
    }

    if (stream && ngx_http_signalr_limits_stream_acquire(s) != NGX_OK) {
        return NGX_BUSY;
    }

    len = offsetof(ngx_http_signalr_pending_t, data) + key.len + 1;

    p = ngx_alloc(len, s->log);
    if (p == NULL) {
        if (stream) {
            ngx_http_signalr_limits_stream_release(s);
        }

        return NGX_ERROR;
    }

    ngx_memcpy(p->data, id, key.len + 1);

    p->sn.str.data = p->data;
    p->sn.str.len = key.len;
    p->sn.node.key = hash;
    p->stream = stream;

    ngx_rbtree_insert(&s->pending, &p->sn.node);
    s->npending++;

    return NGX_OK;
}


static void
ngx_http_signalr_pending_remove(ngx_http_signalr_session_t *s,
    const char *id)
{
    uint32_t         hash;
    ngx_str_t        key;
    ngx_str_node_t  *sn;

    key.data = (u_char *) id;
    key.len = ngx_strlen(id);
    hash = ngx_crc32_short(key.data, key.len);

    sn = ngx_str_rbtree_lookup(&s->pending, &key, hash);

    if (sn == NULL) {
        return;
    }

    if (((ngx_http_signalr_pending_t *) sn)->stream) {
        ngx_http_signalr_limits_stream_release(s);
    }

    ngx_rbtree_delete(&s->pending, &sn->node);
    ngx_free(sn);
    s->npending--;
}


/* empties the pending set, answering each with error unless it is NULL */

static void
ngx_http_signalr_pending_drain(ngx_http_signalr_session_t *s,
    const char *error)
{
    ngx_rbtree_node_t           *node;
    ngx_http_signalr_pending_t  *p;

    while (s->pending.root != s->pending.sentinel) {

        node = ngx_rbtree_min(s->pending.root, s->pending.sentinel);
        p = (ngx_http_signalr_pending_t *) node;

        if (error) {
            ngx_http_signalr_session_complete_error(s, (char *) p->data,
                                                    error);
        }

        if (p->stream) {
            ngx_http_signalr_limits_stream_release(s);
        }

        ngx_rbtree_delete(&s->pending, node);
        ngx_free(p);
    }

    s->npending = 0;
}


/* the link is up again: the daemon learns of every live connection */

void
ngx_http_signalr_sessions_link_up(void)
{
    ngx_int_t                    rc;
    ngx_queue_t                 *q;
    ngx_http_signalr_session_t  *s;

    for (q = ngx_queue_head(&ngx_http_signalr_sessions_queue);
         q != ngx_queue_sentinel(&ngx_http_signalr_sessions_queue);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_http_signalr_session_t, queue);

        if (s->handshaken && !s->close_sent && !s->opened) {
            if (ngx_http_signalr_claims_thaw(s) != NGX_OK) {
                continue;
            }

            rc = ngx_http_signalr_link_open(s);

            ngx_http_signalr_claims_freeze(s);

            if (rc != NGX_OK) {
                return;
            }
        }
    }
}


/*
 * The link is down: the daemon forgot every connection, so whatever a
 * client waits for will not come. The connections stay open.
 */

void
ngx_http_signalr_sessions_link_down(void)
{
    ngx_queue_t                 *q;
    ngx_http_signalr_session_t  *s;

    for (q = ngx_queue_head(&ngx_http_signalr_sessions_queue);
         q != ngx_queue_sentinel(&ngx_http_signalr_sessions_queue);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_http_signalr_session_t, queue);

        s->opened = 0;

        /* what was held back is answered below as unavailable */
        ngx_http_signalr_delay_clear(s);

        if (s->npending) {
            ngx_http_signalr_pending_drain(s,
                                           NGX_HTTP_SIGNALR_HUB_UNAVAILABLE);
        }
    }
}


void
ngx_http_signalr_session_deliver(ngx_str_t *id, const u_char *payload,
    size_t len)
{
    ngx_http_signalr_session_t   *s;
    ngx_http_signalr_outgoing_t   o;

    s = ngx_http_signalr_session_find(id);

    if (s == NULL
        && ngx_http_signalr_reconnect_deliver(id,
                               ngx_http_signalr_msgpack_type(payload, len),
                               payload, len))
    {
        return;
    }

    if (s == NULL || !ngx_http_signalr_session_takes(s)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "signalr message for gone connection \"%V\"", id);
        return;
    }

    ngx_memzero(&o, sizeof(ngx_http_signalr_outgoing_t));
    o.payload = payload;
    o.len = len;
    o.type = ngx_http_signalr_msgpack_type(payload, len);

    /* only a WebSocket writes through: the others spare the look */
    ngx_http_signalr_ws_write_through(
        s->transport == &ngx_http_signalr_ws_transport
        && ngx_http_signalr_session_idle());

    ngx_http_signalr_outgoing_send(s, &o);

    ngx_http_signalr_ws_write_through(0);
    ngx_http_signalr_outgoing_clear(&o);
}


/*
 * Design note, latency: a WebSocket's frames wait in its send queue for
 * the worker's write ring (ngx_http_signalr_ws_post_write()), so that
 * what arrives while a worker is behind leaves together. A worker that
 * is not behind gains nothing from the wait: with no connection in the
 * ring and nothing more from the daemon, a message is written to each
 * connection as it is found (..._ws_write_through()), without a buffer
 * of the connection's own. A fan-out then starts writing at its
 * first id instead of after its last: at 1,000 subscribers and 100
 * messages a second, a worker took 100 to 130 us to queue its 500
 * connections before it wrote the first, while the other core and
 * the clients waited. Every NGX_HTTP_SIGNALR_THROUGH_CHECK connections
 * the link is looked at again, and once the daemon has sent more, the
 * rest of the fan-out is queued as before.
 */

static ngx_uint_t
ngx_http_signalr_session_idle(void)
{
    return !ngx_http_signalr_ws_writes_waiting()
           && !ngx_http_signalr_link_pending();
}


/* one message, many connections: encoded once per protocol */

void
ngx_http_signalr_session_multicast(sr_ipc_id_iter_t *ids,
    const u_char *payload, size_t len)
{
    size_t                        id_len;
    ngx_str_t                     key;
    ngx_uint_t                    n, through;
    const char                   *id;
    ngx_http_signalr_session_t   *s;
    ngx_http_signalr_outgoing_t   o;

    ngx_memzero(&o, sizeof(ngx_http_signalr_outgoing_t));
    o.payload = payload;
    o.len = len;
    o.type = ngx_http_signalr_msgpack_type(payload, len);

    through = ngx_http_signalr_session_idle();
    ngx_http_signalr_ws_write_through(through);

    for (n = 1; sr_ipc_multicast_next(ids, &id, &id_len); n++) {

        if (through
            && n % NGX_HTTP_SIGNALR_THROUGH_CHECK == 0
            && ngx_http_signalr_link_pending())
        {
            through = 0;
            ngx_http_signalr_ws_write_through(0);
        }

        key.data = (u_char *) id;
        key.len = id_len;

        s = ngx_http_signalr_session_find(&key);

        if (s == NULL) {
            (void) ngx_http_signalr_reconnect_deliver(&key, o.type, payload,
                                                      len);

        } else if (ngx_http_signalr_session_takes(s)) {
            ngx_http_signalr_outgoing_send(s, &o);
        }
    }

    ngx_http_signalr_ws_write_through(0);
    ngx_http_signalr_outgoing_clear(&o);
}


void
ngx_http_signalr_session_close_by_daemon(ngx_str_t *id, const char *error,
    ngx_uint_t allow_reconnect)
{
    ngx_http_signalr_session_t  *s;

    s = ngx_http_signalr_session_find(id);

    if (s == NULL) {
        ngx_http_signalr_reconnect_close(id);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\": closed by the daemon", s->id);

    /* even one already closing: it is not to be parked */
    s->ended = 1;

    ngx_http_signalr_session_end(s, error, allow_reconnect,
                                 SR_WS_CLOSE_NORMAL);
}


static void
ngx_http_signalr_outgoing_send(ngx_http_signalr_session_t *s,
    ngx_http_signalr_outgoing_t *o)
{
    size_t           len;
    sr_error_t       err;
    sr_message_t     msg;
    const sr_buf_t  *framed;

    /* a Completion ends what the client waits for */
    if (o->type == SR_MSG_COMPLETION && s->npending) {

        if (!o->completion_decoded) {
            o->completion_decoded = 1;

            if (sr_message_decode_payload(SR_PROTOCOL_MSGPACK, o->payload,
                                          o->len, NULL, &msg, &err)
                == SR_OK)
            {
                len = msg.invocation_id ? ngx_strlen(msg.invocation_id) : 0;

                if (len && len <= NGX_HTTP_SIGNALR_MAX_INVOCATION_ID) {
                    ngx_memcpy(o->completion_id, msg.invocation_id, len + 1);
                    o->completion_id_len = len;
                }

                sr_message_clear(&msg);
            }
        }

        if (o->completion_id_len) {
            ngx_http_signalr_pending_remove(s, (char *) o->completion_id);
        }
    }

    if (s->stateful
        && ngx_http_signalr_reconnect_track(s, o->type, o->payload, o->len)
           != NGX_OK)
    {
        return;
    }

    if (s->close_sent) {
        return;
    }

    framed = ngx_http_signalr_outgoing_framed(o, s->protocol,
                                              s->log);
    if (framed == NULL) {
        return;
    }

    (void) ngx_http_signalr_session_send(s, framed->data, framed->len, 0);
}


static const sr_buf_t *
ngx_http_signalr_outgoing_framed(ngx_http_signalr_outgoing_t *o,
    sr_protocol_t protocol, ngx_log_t *log)
{
    sr_error_t       err;
    const sr_buf_t  *b;

    if (o->fanout_failed) {
        return NULL;
    }

    sr_error_clear(&err);

    if (!o->fanout_ready) {

        /* the daemon's MessagePack payload, framed once into the fan-out */
        if (sr_fanout_init_payload(&o->fanout, SR_PROTOCOL_MSGPACK,
                                   o->payload, o->len, &err)
            != SR_OK)
        {
            sr_fanout_clear(&o->fanout);
            o->fanout_failed = 1;
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "signalr message from the daemon dropped: %s",
                          err.str);
            return NULL;
        }

        o->fanout_ready = 1;
    }

    b = sr_fanout_framed(&o->fanout, protocol, &err);

    if (b == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "signalr message from the daemon not encodable as "
                      "%s: %s", sr_protocol_name(protocol), err.str);
    }

    return b;
}


static void
ngx_http_signalr_outgoing_clear(ngx_http_signalr_outgoing_t *o)
{
    if (o->fanout_ready) {
        sr_fanout_clear(&o->fanout);
    }
}


/*
 * The type of a MessagePack hub message, read from the first bytes of
 * its array without decoding it; -1 when it cannot be told.
 */

ngx_int_t
ngx_http_signalr_msgpack_type(const u_char *p, size_t len)
{
    size_t  i;

    if (len < 2) {
        return -1;
    }

    if (p[0] >= 0x90 && p[0] <= 0x9f) {
        i = 1;

    } else if (p[0] == 0xdc) {
        i = 3;

    } else if (p[0] == 0xdd) {
        i = 5;

    } else {
        return -1;
    }

    if (i >= len) {
        return -1;
    }

    if (p[i] <= 0x7f) {
        return p[i];
    }

    if (p[i] == 0xcc && i + 1 < len) {
        return p[i + 1];
    }

    return -1;
}


/*
 * A message kept for replay, framed for the client, not tracked again;
 * past signalr_send_queue_size too, since the replay buffer bounds it.
 */

ngx_int_t
ngx_http_signalr_session_send_payload(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len)
{
    ngx_int_t                     rc;
    const sr_buf_t               *framed;
    ngx_http_signalr_outgoing_t   o;

    ngx_memzero(&o, sizeof(ngx_http_signalr_outgoing_t));
    o.payload = payload;
    o.len = len;

    framed = ngx_http_signalr_outgoing_framed(&o, s->protocol, s->log);

    rc = (framed == NULL) ? NGX_DECLINED
                          : ngx_http_signalr_session_send(s, framed->data,
                                                          framed->len, 1);

    ngx_http_signalr_outgoing_clear(&o);

    return rc;
}


/*
 * The invocation ids awaiting a Completion, for the state of a parked
 * connection: malloc'ed arrays of borrowed ids and of stream flags,
 * freed by the caller with ngx_free().
 */

ngx_int_t
ngx_http_signalr_session_pending_list(ngx_http_signalr_session_t *s,
    char ***ids, u_char **streams, size_t *count)
{
    size_t                       n;
    ngx_rbtree_node_t           *node;
    ngx_http_signalr_pending_t  *p;

    *ids = NULL;
    *streams = NULL;
    *count = 0;

    if (s->npending == 0 || s->pending.root == s->pending.sentinel) {
        return NGX_OK;
    }

    *ids = ngx_alloc(s->npending * sizeof(char *), s->log);
    *streams = ngx_alloc(s->npending, s->log);

    if (*ids == NULL || *streams == NULL) {
        ngx_free(*ids);
        ngx_free(*streams);
        *ids = NULL;
        *streams = NULL;
        return NGX_ERROR;
    }

    n = 0;

    for (node = ngx_rbtree_min(s->pending.root, s->pending.sentinel);
         node && n < s->npending;
         node = ngx_rbtree_next(&s->pending, node))
    {
        p = (ngx_http_signalr_pending_t *) node;
        (*ids)[n] = (char *) p->data;
        (*streams)[n] = (u_char) p->stream;
        n++;
    }

    *count = n;

    return NGX_OK;
}


/*
 * An adopted connection picks up where its state left it: handshake
 * done, the client's count, and the invocations it still waits on
 * (ext carries one stream flag per pending id).
 */

void
ngx_http_signalr_session_adopt(ngx_http_signalr_session_t *s,
    const sr_ipc_state_t *state)
{
    size_t      i;
    ngx_uint_t  stream;

    s->protocol = state->who.protocol;
    s->handshaken = 1;
    s->stateful = 1;
    s->received = state->received;
    s->acked = state->received;

    for (i = 0; i < state->pending_count; i++) {
        stream = i < state->ext.len && state->ext.data[i];

        if (ngx_strlen(state->pending[i])
            > NGX_HTTP_SIGNALR_MAX_INVOCATION_ID)
        {
            continue;
        }

        (void) ngx_http_signalr_pending_add(s, state->pending[i], stream);
    }

    ngx_http_signalr_session_schedule(s);

    /* the daemon has the connection: only a later OPEN parses them */
    ngx_http_signalr_claims_freeze(s);
}
