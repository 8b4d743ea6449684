/*
 * Stateful reconnect (docs/reconnect.md), the way back: a WebSocket
 * upgrade for a token this worker cannot attach asks the daemon with
 * RESUME and waits for ADOPT (the connection's state: it goes on here)
 * or RESUME_FAILED (404). Also the daemon's SUSPEND, for a connection
 * whose client came back elsewhere first.
 */

#include "ngx_http_signalr_module.h"


/* how long an upgrade waits for the daemon */
#define NGX_HTTP_SIGNALR_RESUME_TIMEOUT   5000


/* an upgrade waiting for the daemon's answer to its RESUME */
typedef struct {
    ngx_queue_t                  queue;
    uint64_t                     ref;
    ngx_http_request_t          *request;
    ngx_http_signalr_session_t  *session;
    ngx_event_t                  timer;
    u_char                       token[SR_RANDOM_ID_LEN + 1];
    size_t                       token_len;
    char                         accept[SR_WS_ACCEPT_LEN + 1];
} ngx_http_signalr_resume_t;


static void ngx_http_signalr_resume_cleanup(void *data);
static void ngx_http_signalr_resume_timeout(ngx_event_t *ev);
static ngx_http_signalr_resume_t *ngx_http_signalr_resume_find(uint64_t ref);
static void ngx_http_signalr_resume_answer(ngx_http_signalr_resume_t *rs,
    ngx_int_t rc, const char *detail);
static ngx_int_t ngx_http_signalr_suspend_frame(ngx_str_t *id);
static ngx_int_t ngx_http_signalr_adopt_frame(ngx_str_t *id,
    sr_ipc_frame_t *frame);
static ngx_int_t ngx_http_signalr_adopt_check(ngx_http_signalr_resume_t *rs,
    ngx_str_t *id, sr_ipc_state_t *state, const char **detail);
static ngx_int_t ngx_http_signalr_adopt_register(
    ngx_http_signalr_resume_t *rs, ngx_str_t *id);
static ngx_int_t ngx_http_signalr_adopt_replay(ngx_http_signalr_session_t *s,
    sr_ipc_state_t *state, sr_ipc_adopt_t *adopt);
static ngx_int_t ngx_http_signalr_send_sequence(
    ngx_http_signalr_session_t *s);
static void ngx_http_signalr_adopt(ngx_http_signalr_resume_t *rs,
    ngx_str_t *id, sr_ipc_state_t *state, sr_ipc_adopt_t *adopt);
static ngx_int_t ngx_http_signalr_failed_frame(sr_ipc_frame_t *frame);


static ngx_queue_t  ngx_http_signalr_resumes;
static uint64_t     ngx_http_signalr_resume_ref;


void
ngx_http_signalr_resume_init(void)
{
    ngx_queue_init(&ngx_http_signalr_resumes);
}


/*
 * The upgrade of a returning client waits here for the daemon; the
 * request is kept (r->main->count) until the answer or the timeout.
 */

ngx_int_t
ngx_http_signalr_resume_start(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, ngx_str_t *token, const char *accept)
{
    sr_buf_t                    body;
    ngx_int_t                   rc;
    sr_error_t                  err;
    sr_ipc_resume_t             resume;
    ngx_pool_cleanup_t         *cln;
    ngx_http_signalr_resume_t  *rs;

    if (token->len > SR_RANDOM_ID_LEN) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_NOT_FOUND,
                                             "unknown connection");
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_signalr_resume_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rs = cln->data;
    ngx_memzero(rs, sizeof(ngx_http_signalr_resume_t));

    rs->ref = ++ngx_http_signalr_resume_ref;
    rs->request = r;
    rs->session = s;
    ngx_memcpy(rs->token, token->data, token->len);
    rs->token_len = token->len;
    ngx_cpystrn((u_char *) rs->accept, (u_char *) accept,
                sizeof(rs->accept));

    resume.token = (char *) rs->token;
    resume.ref = rs->ref;

    sr_buf_init(&body);

    rc = (sr_ipc_resume_encode(&resume, &body, &err) == SR_OK)
         ? ngx_http_signalr_link_send(SR_IPC_RESUME, NULL, body.data,
                                      body.len)
         : NGX_ERROR;

    sr_buf_free(&body);

    if (rc != NGX_OK) {
        return ngx_http_signalr_send_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "the hub is unavailable");
    }

    ngx_queue_insert_tail(&ngx_http_signalr_resumes, &rs->queue);
    cln->handler = ngx_http_signalr_resume_cleanup;

    rs->timer.handler = ngx_http_signalr_resume_timeout;
    rs->timer.data = rs;
    rs->timer.log = r->connection->log;
    ngx_add_timer(&rs->timer, NGX_HTTP_SIGNALR_RESUME_TIMEOUT);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "signalr resume %uL asked", rs->ref);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_signalr_resume_cleanup(void *data)
{
    ngx_http_signalr_resume_t  *rs = data;

    if (rs->timer.timer_set) {
        ngx_del_timer(&rs->timer);
    }

    if (rs->queue.next) {
        ngx_queue_remove(&rs->queue);
        rs->queue.next = NULL;
    }
}


static void
ngx_http_signalr_resume_timeout(ngx_event_t *ev)
{
    ngx_http_signalr_resume_t  *rs = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "signalr resume %uL: no answer from the daemon in time",
                  rs->ref);

    ngx_http_signalr_resume_answer(rs, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "the hub did not answer in time");
}


static ngx_http_signalr_resume_t *
ngx_http_signalr_resume_find(uint64_t ref)
{
    ngx_queue_t                *q;
    ngx_http_signalr_resume_t  *rs;

    for (q = ngx_queue_head(&ngx_http_signalr_resumes);
         q != ngx_queue_sentinel(&ngx_http_signalr_resumes);
         q = ngx_queue_next(q))
    {
        rs = ngx_queue_data(q, ngx_http_signalr_resume_t, queue);

        if (rs->ref == ref) {
            return rs;
        }
    }

    return NULL;
}


/* ends a waiting upgrade with a refusal; rs is gone afterwards */

static void
ngx_http_signalr_resume_answer(ngx_http_signalr_resume_t *rs, ngx_int_t rc,
    const char *detail)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = rs->request;
    c = r->connection;

    ngx_http_signalr_resume_cleanup(rs);

    ngx_http_finalize_request(r,
                              ngx_http_signalr_send_problem(r, rc, detail));
    ngx_http_run_posted_requests(c);
}


/* the link went down: no answer will come */

void
ngx_http_signalr_resume_link_down(void)
{
    ngx_queue_t                *q;
    ngx_http_signalr_resume_t  *rs;

    while (!ngx_queue_empty(&ngx_http_signalr_resumes)) {
        q = ngx_queue_head(&ngx_http_signalr_resumes);
        rs = ngx_queue_data(q, ngx_http_signalr_resume_t, queue);
        ngx_http_signalr_resume_answer(rs, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "the hub is unavailable");
    }
}


/* RELEASE, ADOPT, RESUME_FAILED and SUSPEND; NGX_ERROR ends the link */

ngx_int_t
ngx_http_signalr_reconnect_frame(sr_ipc_frame_t *frame)
{
    ngx_str_t  id;

    id.data = (u_char *) frame->conn_id;
    id.len = frame->conn_id_len;

    if (frame->type == SR_IPC_RESUME_FAILED) {
        return ngx_http_signalr_failed_frame(frame);
    }

    if (id.len == 0) {
        return NGX_ERROR;
    }

    switch (frame->type) {

    case SR_IPC_RELEASE:
        ngx_http_signalr_reconnect_release(&id);
        return NGX_OK;

    case SR_IPC_SUSPEND:
        return ngx_http_signalr_suspend_frame(&id);

    case SR_IPC_ADOPT:
        return ngx_http_signalr_adopt_frame(&id, frame);

    default:
        return NGX_OK;
    }
}


/*
 * The client came back elsewhere before its cut was noticed here: the
 * transport ends without a Close and the state goes to the daemon at
 * once. A connection that cannot be parked is left alone, and one that
 * is gone already has its CLOSED or PARK on the way.
 */

static ngx_int_t
ngx_http_signalr_suspend_frame(ngx_str_t *id)
{
    ngx_http_signalr_session_t  *s;

    s = ngx_http_signalr_session_find(id);

    if (s == NULL || !ngx_http_signalr_reconnect_parkable(s)) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, s->log, 0,
                  "signalr connection \"%s\": client came back on another "
                  "connection", s->id);

    s->suspended = 1;

    ngx_http_signalr_ws_finalize(s);

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_failed_frame(sr_ipc_frame_t *frame)
{
    sr_error_t                  err;
    sr_ipc_resume_failed_t      failed;
    ngx_http_signalr_resume_t  *rs;

    if (sr_ipc_resume_failed_decode(frame->body, frame->body_len, &failed,
                                    &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "signalr daemon link: bad RESUME_FAILED: %s", err.str);
        return NGX_ERROR;
    }

    rs = ngx_http_signalr_resume_find(failed.ref);

    if (rs) {
        ngx_log_error(NGX_LOG_INFO, rs->request->connection->log, 0,
                      "signalr resume %uL refused: %s", failed.ref,
                      failed.reason ? failed.reason : "no reason given");

        ngx_http_signalr_resume_answer(rs, NGX_HTTP_NOT_FOUND,
                                       "no such connection");
    }

    sr_ipc_resume_failed_clear(&failed);

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_adopt_frame(ngx_str_t *id, sr_ipc_frame_t *frame)
{
    const char                 *detail;
    ngx_int_t                   rc;
    sr_error_t                  err;
    sr_ipc_adopt_t              adopt;
    sr_ipc_state_t              state;
    ngx_http_signalr_resume_t  *rs;

    if (sr_ipc_adopt_decode(frame->body, frame->body_len, &adopt, &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "signalr daemon link: bad ADOPT: %s", err.str);
        return NGX_ERROR;
    }

    rs = ngx_http_signalr_resume_find(adopt.ref);

    /* the upgrade is gone (timed out): so is the connection */
    if (rs == NULL) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "signalr connection \"%V\": adopted too late, "
                      "closed", id);
        ngx_http_signalr_send_closed(id);
        sr_ipc_adopt_clear(&adopt);
        return NGX_OK;
    }

    if (sr_ipc_state_decode(adopt.state.data, adopt.state.len, &state,
                            &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "signalr connection \"%V\": bad adopted state: %s",
                      id, err.str);
        ngx_http_signalr_send_closed(id);
        ngx_http_signalr_resume_answer(rs, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal error");
        sr_ipc_adopt_clear(&adopt);
        return NGX_OK;
    }

    rc = ngx_http_signalr_adopt_check(rs, id, &state, &detail);

    if (rc != NGX_OK) {
        ngx_http_signalr_send_closed(id);
        ngx_http_signalr_resume_answer(rs, rc, detail);

    } else {
        ngx_http_signalr_adopt(rs, id, &state, &adopt);
    }

    sr_ipc_state_clear(&state);
    sr_ipc_adopt_clear(&adopt);

    return NGX_OK;
}


/*
 * The state must be the one asked for (the daemon matched a hash of
 * the token), of this hub, protocol-compatible and of the same user.
 */

static ngx_int_t
ngx_http_signalr_adopt_check(ngx_http_signalr_resume_t *rs, ngx_str_t *id,
    sr_ipc_state_t *state, const char **detail)
{
    size_t                       user_len;
    ngx_http_signalr_session_t  *s;

    s = rs->session;
    *detail = "no such connection";

    if (id->len > SR_RANDOM_ID_LEN
        || ngx_strlen(state->token) != rs->token_len
        || ngx_memcmp(state->token, rs->token, rs->token_len) != 0
        || ngx_strlen(state->who.hub) != s->conf->hub.len
        || ngx_memcmp(state->who.hub, s->conf->hub.data, s->conf->hub.len)
           != 0)
    {
        return NGX_HTTP_NOT_FOUND;
    }

    user_len = state->who.user ? ngx_strlen(state->who.user) : 0;

    if (user_len != s->user.len
        || (user_len && ngx_memcmp(state->who.user, s->user.data, user_len)
                        != 0))
    {
        *detail = "connection of another user";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/* the connection is this worker's again, for the relays of its requests */

static ngx_int_t
ngx_http_signalr_adopt_register(ngx_http_signalr_resume_t *rs,
    ngx_str_t *id)
{
    ngx_str_t                      token;
    ngx_http_signalr_session_t    *s;
    ngx_http_signalr_main_conf_t  *smcf;

    s = rs->session;
    smcf = ngx_http_get_module_main_conf(rs->request,
                                         ngx_http_signalr_module);

    token.data = rs->token;
    token.len = rs->token_len;

    if (ngx_http_signalr_registry_add(smcf->registry_zone, &token, id,
                                      &s->user, s->conf->client_timeout)
        != NGX_OK
        || ngx_http_signalr_registry_attach(smcf->registry_zone, &token,
                                            &s->user, s->id, sizeof(s->id),
                                            SR_TRANSPORT_WEBSOCKETS, NULL,
                                            NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->registry = smcf->registry_zone;
    ngx_memcpy(s->token, rs->token, rs->token_len);
    s->token_len = rs->token_len;

    (void) ngx_http_signalr_registry_stateful(s->registry, &token, 1);

    return NGX_OK;
}


static void
ngx_http_signalr_adopt(ngx_http_signalr_resume_t *rs, ngx_str_t *id,
    sr_ipc_state_t *state, sr_ipc_adopt_t *adopt)
{
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_signalr_ctx_t      *ctx;
    ngx_http_signalr_session_t  *s;

    r = rs->request;
    c = r->connection;
    s = rs->session;

    ngx_memcpy(s->id, id->data, id->len);
    s->id[id->len] = '\0';

    ctx = ngx_http_signalr_get_ctx(r);

    if (ctx == NULL || ngx_http_signalr_adopt_register(rs, id) != NGX_OK) {
        ngx_http_signalr_send_closed(id);
        ngx_http_signalr_resume_answer(rs, NGX_HTTP_CONFLICT,
                                       "connection already in use");
        return;
    }

    ctx->session = s;
    ctx->connection_id.data = s->id;
    ctx->connection_id.len = id->len;

    ngx_http_signalr_resume_cleanup(rs);

    rc = ngx_http_signalr_ws_adopt(r, s, rs->accept);

    if (rc != NGX_DONE) {
        /* the cleanup gives the registry entry back */
        ngx_http_signalr_send_closed(id);
        ngx_http_finalize_request(r, ngx_http_signalr_send_problem(r, rc,
                                                    "connection refused"));
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_http_signalr_session_adopt(s, state);
    s->opened = 1;

    if (ngx_http_signalr_adopt_replay(s, state, adopt) != NGX_OK) {
        s->transport->drop(s);
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "signalr connection \"%s\" resumed, %uz messages to "
                  "replay from %uL", s->id,
                  (size_t) (state->buffer_count + adopt->appended_count),
                  s->replay_first);

    ngx_http_finalize_request(r, NGX_DONE);
    ngx_http_run_posted_requests(c);
}


/*
 * Rebuilds the buffer (the parked one, then what the daemon kept) and
 * sends the client Sequence and every message of it.
 */

static ngx_int_t
ngx_http_signalr_adopt_replay(ngx_http_signalr_session_t *s,
    sr_ipc_state_t *state, sr_ipc_adopt_t *adopt)
{
    size_t                           i;
    ngx_int_t                        type;
    ngx_queue_t                     *q;
    ngx_http_signalr_replay_item_t  *item;

    s->replay_first = state->first ? state->first : 1;

    for (i = 0; i < state->buffer_count; i++) {
        if (ngx_http_signalr_replay_push(&s->replay, &s->replay_size,
                                         state->buffer[i].data,
                                         state->buffer[i].len, s->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < adopt->appended_count; i++) {
        type = ngx_http_signalr_msgpack_type(adopt->appended[i].data,
                                             adopt->appended[i].len);

        if (!ngx_http_signalr_trackable(type)) {
            continue;
        }

        if (ngx_http_signalr_replay_push(&s->replay, &s->replay_size,
                                         adopt->appended[i].data,
                                         adopt->appended[i].len, s->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_signalr_send_sequence(s) != NGX_OK) {
        return NGX_ERROR;
    }

    for (q = ngx_queue_head(&s->replay);
         q != ngx_queue_sentinel(&s->replay);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_signalr_replay_item_t, queue);

        if (ngx_http_signalr_session_send_payload(s, item->data, item->len)
            == NGX_DECLINED && s->close_sent)
        {
            return NGX_OK;
        }
    }

    return NGX_OK;
}


/* the id of the first message the client is about to get again */

static ngx_int_t
ngx_http_signalr_send_sequence(ngx_http_signalr_session_t *s)
{
    sr_buf_t      b;
    ngx_int_t     rc;
    sr_error_t    err;
    sr_message_t  msg;

    sr_message_init(&msg, SR_MSG_SEQUENCE);
    msg.sequence_id = s->replay_first;

    sr_buf_init(&b);

    rc = (sr_message_encode(s->protocol, &msg, &b, &err) == SR_OK)
         ? ngx_http_signalr_session_send(s, b.data, b.len, 0)
         : NGX_ERROR;

    sr_buf_free(&b);

    return rc;
}
