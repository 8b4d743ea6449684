/*
 * Stateful reconnect (docs/reconnect.md), the worker's buffer and the
 * handover: what the worker does so that a stateful client whose
 * WebSocket went away can carry on, here, on another worker or on
 * another instance.
 *
 * While connected, every trackable message sent to the client (types 1
 * to 5) is kept in its IPC form in s->replay until the client's Ack;
 * the ids are implicit, s->replay_first being the oldest one's. Over
 * signalr_stateful_reconnect_buffer the connection ends.
 *
 * When the WebSocket ends without a Close, the session's state moves
 * into a parking entry and the daemon is told (docs/ipc.md, section
 * "Parking"): DETACH, then the daemon's RELEASE after the messages it
 * had already sent, which join the entry, then PARK with the state.
 *
 * The way back, RESUME and ADOPT, is in ngx_http_signalr_resume.c.
 */

#include "ngx_http_signalr_module.h"


/* how long a parking waits for RELEASE */
#define NGX_HTTP_SIGNALR_RELEASE_TIMEOUT  5000


/* a connection between its DETACH and its PARK */
typedef struct {
    ngx_str_node_t               sn;            /* by connection id */
    ngx_queue_t                  queue;         /* every parking */
    ngx_event_t                  timer;         /* RELEASE awaited */

    ngx_queue_t                  replay;
    size_t                       replay_size;
    uint64_t                     first;
    uint64_t                     received;
    sr_protocol_t                protocol;
    json_t                      *claims;        /* owned reference */
    time_t                       expires;
    size_t                       buffer_bytes;
    ngx_msec_t                   window;

    char                       **pending;       /* owned copies */
    u_char                      *streams;
    size_t                       npending;

    char                        *hub;           /* owned copies */
    char                        *user;
    u_char                       id[SR_RANDOM_ID_LEN + 1];
    u_char                       token[SR_RANDOM_ID_LEN + 1];
} ngx_http_signalr_parking_t;


static void ngx_http_signalr_replay_free(ngx_queue_t *replay);
static ngx_http_signalr_parking_t *ngx_http_signalr_parking_new(
    ngx_http_signalr_session_t *s);
static ngx_int_t ngx_http_signalr_parking_pending(
    ngx_http_signalr_parking_t *p, ngx_http_signalr_session_t *s);
static ngx_http_signalr_parking_t *ngx_http_signalr_parking_find(
    ngx_str_t *id);
static void ngx_http_signalr_parking_timeout(ngx_event_t *ev);
static void ngx_http_signalr_parking_finish(ngx_http_signalr_parking_t *p);
static ngx_int_t ngx_http_signalr_parking_encode(
    ngx_http_signalr_parking_t *p, sr_buf_t *out, sr_error_t *err);
static void ngx_http_signalr_parking_free(ngx_http_signalr_parking_t *p);


static ngx_rbtree_t       ngx_http_signalr_parkings;
static ngx_rbtree_node_t  ngx_http_signalr_parkings_sentinel;
static ngx_queue_t        ngx_http_signalr_parkings_queue;


void
ngx_http_signalr_reconnect_init(void)
{
    ngx_rbtree_init(&ngx_http_signalr_parkings,
                    &ngx_http_signalr_parkings_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_http_signalr_parkings_queue);

    ngx_http_signalr_resume_init();
}


/* the worker exits: whatever is still parking is lost */

void
ngx_http_signalr_reconnect_exit(void)
{
    ngx_queue_t                 *q;
    ngx_http_signalr_parking_t  *p;

    while (!ngx_queue_empty(&ngx_http_signalr_parkings_queue)) {
        q = ngx_queue_head(&ngx_http_signalr_parkings_queue);
        p = ngx_queue_data(q, ngx_http_signalr_parking_t, queue);
        ngx_http_signalr_parking_free(p);
    }
}


/* the handshake made the session stateful */

void
ngx_http_signalr_reconnect_start(ngx_http_signalr_session_t *s)
{
    ngx_str_t  token;

    s->replay_first = 1;

    if (s->token_len && s->registry) {
        token.data = s->token;
        token.len = s->token_len;
        (void) ngx_http_signalr_registry_stateful(s->registry, &token, 1);
    }
}


/* appends a copy of one message to a replay buffer */

ngx_int_t
ngx_http_signalr_replay_push(ngx_queue_t *replay, size_t *size,
    const u_char *data, size_t len, ngx_log_t *log)
{
    ngx_http_signalr_replay_item_t  *item;

    item = ngx_alloc(offsetof(ngx_http_signalr_replay_item_t, data) + len,
                     log);
    if (item == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(item->data, data, len);
    item->len = len;

    ngx_queue_insert_tail(replay, &item->queue);
    *size += len;

    return NGX_OK;
}


static void
ngx_http_signalr_replay_free(ngx_queue_t *replay)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(replay)) {
        q = ngx_queue_head(replay);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_http_signalr_replay_item_t, queue));
    }
}


/*
 * A message for the client: a trackable one is kept until acked.
 * NGX_OK to send it; NGX_DECLINED when the connection ended instead
 * (the bound was passed, or no memory).
 */

ngx_int_t
ngx_http_signalr_reconnect_track(ngx_http_signalr_session_t *s,
    ngx_int_t type, const u_char *payload, size_t len)
{
    if (!ngx_http_signalr_trackable(type) || s->ended) {
        return NGX_OK;
    }

    /*
     * TODO(docs/reconnect.md): a full buffer ends the connection, where
     * ASP.NET Core would make the sender wait for the client's Ack.
     */

    if (s->replay_size + len > s->conf->reconnect_buffer) {
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "signalr connection \"%s\": replay buffer is full "
                      "(%uz bytes unacknowledged), closing",
                      s->id, s->replay_size);
        ngx_http_signalr_session_end(s, "replay buffer full", 1,
                                     SR_WS_CLOSE_NORMAL);
        return NGX_DECLINED;
    }

    if (ngx_http_signalr_replay_push(&s->replay, &s->replay_size, payload,
                                     len, s->log)
        != NGX_OK)
    {
        s->transport->drop(s);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the client has every message up to sequence_id */

void
ngx_http_signalr_reconnect_ack(ngx_http_signalr_session_t *s,
    uint64_t sequence_id)
{
    ngx_queue_t                     *q;
    ngx_http_signalr_replay_item_t  *item;

    while (!ngx_queue_empty(&s->replay) && s->replay_first <= sequence_id) {
        q = ngx_queue_head(&s->replay);
        item = ngx_queue_data(q, ngx_http_signalr_replay_item_t, queue);

        ngx_queue_remove(q);
        s->replay_size -= item->len;
        s->replay_first++;

        ngx_free(item);
    }
}


/*
 * A reconnected client resends from sequence_id on: what of it was
 * received before is dropped. A gap cannot be filled: the connection
 * ends, and the client starts a new one.
 */

ngx_int_t
ngx_http_signalr_reconnect_sequence(ngx_http_signalr_session_t *s,
    uint64_t sequence_id)
{
    if (sequence_id == 0 || sequence_id > s->received + 1) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "signalr connection \"%s\": client resends from "
                      "%uL, only %uL received", s->id, sequence_id,
                      s->received);
        ngx_http_signalr_session_end(s, "Sequence ID greater than the "
                                     "messages received.", 1,
                                     SR_WS_CLOSE_NORMAL);
        return NGX_ERROR;
    }

    s->skip = s->received + 1 - sequence_id;

    /* our last Ack may have been lost with the old socket: send one */
    s->acked = s->received + 1;

    return NGX_OK;
}


/* 1 when the client message just decoded was received before */

ngx_uint_t
ngx_http_signalr_reconnect_duplicate(ngx_http_signalr_session_t *s)
{
    if (s->skip == 0) {
        return 0;
    }

    s->skip--;

    return 1;
}


void
ngx_http_signalr_reconnect_clear(ngx_http_signalr_session_t *s)
{
    if (s->replay.next) {
        ngx_http_signalr_replay_free(&s->replay);
        s->replay_size = 0;
    }
}


/*
 * A stateful WebSocket that ends without a Close either way may come
 * back: its state is worth keeping. A close frame of the client's own
 * with code 1000 or none is a goodbye too: the official clients' stop()
 * sends one, and may send it before their Close message is out.
 */

ngx_uint_t
ngx_http_signalr_reconnect_parkable(ngx_http_signalr_session_t *s)
{
    return s->stateful && s->handshaken && !s->ended && !s->parked
           && s->opened && s->token_len
           && s->transport->kind == SR_TRANSPORT_WEBSOCKETS
           && !(s->close_received
                && (s->close_code == SR_WS_CLOSE_NORMAL
                    || s->close_code == SR_WS_CLOSE_NO_STATUS))
           && ngx_http_signalr_link_is_up();
}


/*
 * Called from the session's cleanup, before it forgets the session:
 * moves the state into a parking entry and tells the daemon. NGX_OK
 * when the daemon takes over (no CLOSED is to be sent).
 */

ngx_int_t
ngx_http_signalr_reconnect_park(ngx_http_signalr_session_t *s)
{
    sr_buf_t                     body;
    ngx_str_t                    id;
    ngx_int_t                    rc;
    sr_error_t                   err;
    sr_ipc_detach_t              detach;
    ngx_http_signalr_parking_t  *pk;

    /*
     * TODO(docs/reconnect.md): acknowledged already, so forwarded now
     * rather than lost, ahead of their turn in the rate limit.
     */
    ngx_http_signalr_delay_flush(s);

    id.data = s->id;
    id.len = ngx_strlen(s->id);

    /* after SUSPEND every SEND was read already: no DETACH is needed */
    if (!s->suspended) {
        detach.window_ms = s->conf->reconnect_window;
        detach.buffer_bytes = s->conf->reconnect_buffer;

        sr_buf_init(&body);

        rc = (sr_ipc_detach_encode(&detach, &body, &err) == SR_OK)
             ? ngx_http_signalr_link_send(SR_IPC_DETACH, &id, body.data,
                                          body.len)
             : NGX_ERROR;

        sr_buf_free(&body);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    pk = ngx_http_signalr_parking_new(s);
    if (pk == NULL) {
        return NGX_ERROR;
    }

    s->parked = 1;

    if (s->suspended) {
        ngx_http_signalr_parking_finish(pk);
        return NGX_OK;
    }

    /* not cancelable: a worker that shuts down waits for the handover */
    pk->timer.handler = ngx_http_signalr_parking_timeout;
    pk->timer.data = pk;
    pk->timer.log = ngx_cycle->log;
    ngx_add_timer(&pk->timer, NGX_HTTP_SIGNALR_RELEASE_TIMEOUT);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "signalr connection \"%s\": detached", pk->id);

    return NGX_OK;
}


static ngx_http_signalr_parking_t *
ngx_http_signalr_parking_new(ngx_http_signalr_session_t *s)
{
    size_t                       len;
    ngx_http_signalr_parking_t  *p;

    p = ngx_calloc(sizeof(ngx_http_signalr_parking_t), s->log);
    if (p == NULL) {
        return NULL;
    }

    ngx_queue_init(&p->replay);
    ngx_queue_insert_tail(&ngx_http_signalr_parkings_queue, &p->queue);

    ngx_cpystrn(p->id, s->id, sizeof(p->id));
    ngx_memcpy(p->token, s->token, s->token_len);
    p->token[s->token_len] = '\0';

    len = s->conf->hub.len;
    p->hub = ngx_alloc(len + 1, s->log);
    p->user = s->user.len ? ngx_alloc(s->user.len + 1, s->log) : NULL;

    if (p->hub == NULL || (s->user.len && p->user == NULL)
        || ngx_http_signalr_parking_pending(p, s) != NGX_OK)
    {
        ngx_http_signalr_parking_free(p);
        return NULL;
    }

    ngx_cpystrn((u_char *) p->hub, s->conf->hub.data, len + 1);

    if (p->user) {
        ngx_cpystrn((u_char *) p->user, s->user.data, s->user.len + 1);
    }

    p->protocol = s->protocol;
    p->claims = s->claims ? json_incref(s->claims) : NULL;
    p->expires = s->expires;
    p->received = s->received;
    p->first = s->replay_first;
    p->window = s->conf->reconnect_window;
    p->buffer_bytes = s->conf->reconnect_buffer;

    /* the buffer moves over as it is */
    if (!ngx_queue_empty(&s->replay)) {
        p->replay = s->replay;
        p->replay.next->prev = &p->replay;
        p->replay.prev->next = &p->replay;
        ngx_queue_init(&s->replay);
    }

    p->replay_size = s->replay_size;
    s->replay_size = 0;

    p->sn.str.data = p->id;
    p->sn.str.len = ngx_strlen(p->id);
    p->sn.node.key = ngx_crc32_short(p->sn.str.data, p->sn.str.len);
    ngx_rbtree_insert(&ngx_http_signalr_parkings, &p->sn.node);

    return p;
}


static ngx_int_t
ngx_http_signalr_parking_pending(ngx_http_signalr_parking_t *p,
    ngx_http_signalr_session_t *s)
{
    char    **ids;
    size_t    n, i, len;
    u_char   *streams;

    if (ngx_http_signalr_session_pending_list(s, &ids, &streams, &n)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (n == 0) {
        return NGX_OK;
    }

    p->pending = ngx_calloc(n * sizeof(char *), s->log);
    p->streams = streams;

    if (p->pending == NULL) {
        ngx_free(ids);
        return NGX_ERROR;
    }

    p->npending = n;

    for (i = 0; i < n; i++) {
        len = ngx_strlen(ids[i]);

        p->pending[i] = ngx_alloc(len + 1, s->log);
        if (p->pending[i] == NULL) {
            ngx_free(ids);
            return NGX_ERROR;
        }

        ngx_memcpy(p->pending[i], ids[i], len + 1);
    }

    ngx_free(ids);

    return NGX_OK;
}


static ngx_http_signalr_parking_t *
ngx_http_signalr_parking_find(ngx_str_t *id)
{
    uint32_t  hash;

    if (ngx_http_signalr_parkings.root == NULL) {
        return NULL;
    }

    hash = ngx_crc32_short(id->data, id->len);

    return (ngx_http_signalr_parking_t *)
               ngx_str_rbtree_lookup(&ngx_http_signalr_parkings, id, hash);
}


/*
 * A message the daemon sent before it read DETACH: kept for the
 * replay. 0 when no connection of that id is parking here.
 */

ngx_uint_t
ngx_http_signalr_reconnect_deliver(ngx_str_t *id, ngx_int_t type,
    const u_char *payload, size_t len)
{
    ngx_http_signalr_parking_t  *p;

    p = ngx_http_signalr_parking_find(id);

    if (p == NULL) {
        return 0;
    }

    if (ngx_http_signalr_trackable(type)
        && ngx_http_signalr_replay_push(&p->replay, &p->replay_size,
                                        payload, len, ngx_cycle->log)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "signalr connection \"%V\": no memory to keep a "
                      "message while parking", id);
    }

    return 1;
}


/* the daemon ended a connection that is parking: it is gone */

void
ngx_http_signalr_reconnect_close(ngx_str_t *id)
{
    ngx_http_signalr_parking_t  *p;

    p = ngx_http_signalr_parking_find(id);

    if (p) {
        ngx_http_signalr_parking_free(p);
        ngx_http_signalr_send_closed(id);
    }
}


/*
 * Both below forget the entry before they write to the link: a write
 * may drop the link, which forgets every entry.
 */

static void
ngx_http_signalr_parking_timeout(ngx_event_t *ev)
{
    ngx_str_t                    id;
    ngx_http_signalr_parking_t  *p = ev->data;
    u_char                       copy[SR_RANDOM_ID_LEN + 1];

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "signalr connection \"%s\": the daemon did not answer "
                  "DETACH in time, connection closed", p->id);

    id.len = ngx_strlen(p->id);
    id.data = ngx_cpymem(copy, p->id, id.len) - id.len;

    ngx_http_signalr_parking_free(p);
    ngx_http_signalr_send_closed(&id);
}


/* the state is complete: PARK hands it over, and the worker forgets it */

static void
ngx_http_signalr_parking_finish(ngx_http_signalr_parking_t *p)
{
    size_t      replay_size;
    sr_buf_t    body;
    ngx_int_t   rc;
    ngx_str_t   id;
    sr_error_t  err;
    u_char      copy[SR_RANDOM_ID_LEN + 1];

    id.len = ngx_strlen(p->id);
    id.data = ngx_cpymem(copy, p->id, id.len) - id.len;
    replay_size = p->replay_size;

    sr_buf_init(&body);

    rc = ngx_http_signalr_parking_encode(p, &body, &err);

    ngx_http_signalr_parking_free(p);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "signalr connection \"%V\": state not encodable: %s",
                      &id, err.str);
        ngx_http_signalr_send_closed(&id);

    } else if (ngx_http_signalr_link_send(SR_IPC_PARK, &id, body.data,
                                          body.len)
               == NGX_OK)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "signalr connection \"%V\": parked, %uz bytes "
                       "to replay", &id, replay_size);
    }

    sr_buf_free(&body);
}


static ngx_int_t
ngx_http_signalr_parking_encode(ngx_http_signalr_parking_t *p,
    sr_buf_t *out, sr_error_t *err)
{
    size_t                           n;
    ngx_int_t                        rc;
    ngx_queue_t                     *q;
    sr_ipc_state_t                   st;
    ngx_http_signalr_replay_item_t  *item;

    ngx_memzero(&st, sizeof(sr_ipc_state_t));

    for (n = 0, q = ngx_queue_head(&p->replay);
         q != ngx_queue_sentinel(&p->replay);
         q = ngx_queue_next(q))
    {
        n++;
    }

    if (n) {
        st.buffer = ngx_alloc(n * sizeof(sr_ipc_bytes_t), ngx_cycle->log);
        if (st.buffer == NULL) {
            sr_error_set(err, SR_ERR_NOMEM, "out of memory for a state");
            return NGX_ERROR;
        }
    }

    for (n = 0, q = ngx_queue_head(&p->replay);
         q != ngx_queue_sentinel(&p->replay);
         q = ngx_queue_next(q), n++)
    {
        item = ngx_queue_data(q, ngx_http_signalr_replay_item_t, queue);
        st.buffer[n].data = item->data;
        st.buffer[n].len = item->len;
    }

    /* borrowed throughout: st is not cleared */
    st.token = (char *) p->token;
    st.who.hub = p->hub;
    st.who.user = p->user;
    st.who.protocol = p->protocol;
    st.who.transport = "WebSockets";
    st.who.claims = p->claims;
    st.received = p->received;
    st.first = p->first;
    st.buffer_count = n;
    st.buffer_size = p->replay_size;
    st.window_ms = p->window;
    st.buffer_bytes = p->buffer_bytes;
    st.pending = p->pending;
    st.pending_count = p->npending;
    st.has_exp = (p->expires != 0);
    st.exp = p->expires;

    /* one stream flag per pending id, for signalr_max_streams */
    st.ext.data = p->streams ? p->streams : (u_char *) "";
    st.ext.len = p->npending;

    rc = (sr_ipc_state_encode(&st, out, err) == SR_OK) ? NGX_OK : NGX_ERROR;

    ngx_free(st.buffer);

    return rc;
}


static void
ngx_http_signalr_parking_free(ngx_http_signalr_parking_t *p)
{
    size_t  i;

    if (p->timer.timer_set) {
        ngx_del_timer(&p->timer);
    }

    if (p->sn.str.len) {
        ngx_rbtree_delete(&ngx_http_signalr_parkings, &p->sn.node);
    }

    ngx_queue_remove(&p->queue);
    ngx_http_signalr_replay_free(&p->replay);

    for (i = 0; p->pending && i < p->npending; i++) {
        ngx_free(p->pending[i]);
    }

    ngx_free(p->pending);
    ngx_free(p->streams);
    ngx_free(p->hub);
    ngx_free(p->user);

    if (p->claims) {
        json_decref(p->claims);
    }

    ngx_free(p);
}


void
ngx_http_signalr_send_closed(ngx_str_t *id)
{
    (void) ngx_http_signalr_link_send(SR_IPC_CLOSED, id, NULL, 0);
}


/*
 * The link went down: the daemon forgot every parked connection.
 * TODO(docs/reconnect.md): their clients start new connections.
 */

void
ngx_http_signalr_reconnect_link_down(void)
{
    ngx_queue_t                 *q;
    ngx_http_signalr_parking_t  *p;

    while (!ngx_queue_empty(&ngx_http_signalr_parkings_queue)) {
        q = ngx_queue_head(&ngx_http_signalr_parkings_queue);
        p = ngx_queue_data(q, ngx_http_signalr_parking_t, queue);
        ngx_http_signalr_parking_free(p);
    }

    ngx_http_signalr_resume_link_down();
}


/* the daemon's RELEASE: what it sent before is in, the state complete */

void
ngx_http_signalr_reconnect_release(ngx_str_t *id)
{
    ngx_http_signalr_parking_t  *p;

    p = ngx_http_signalr_parking_find(id);

    /* none: the daemon's CLOSE or our timeout came first */
    if (p) {
        ngx_http_signalr_parking_finish(p);
    }
}
