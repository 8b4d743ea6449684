/*
 * The daemon link: one Unix-socket stream per worker that carries every
 * connection of the worker (docs/ipc.md). It reconnects with a doubling
 * backoff when the daemon goes away, and says HELLO and OPEN for every
 * live connection again when it is back.
 *
 * Both directions are buffered without blocking: frames toward the
 * daemon wait in a queue bounded by NGX_HTTP_SIGNALR_LINK_MAX_QUEUE, and
 * a daemon that stops reading gets its link dropped rather than the
 * worker's memory.
 */

#include "ngx_http_signalr_module.h"


#define NGX_HTTP_SIGNALR_LINK_MAX_QUEUE     (16u << 20)
#define NGX_HTTP_SIGNALR_LINK_READ_BUDGET   (1024 * 1024)
#define NGX_HTTP_SIGNALR_LINK_READ_CHUNK    (64 * 1024)
#define NGX_HTTP_SIGNALR_LINK_CONNECT_TIME  5000
#define NGX_HTTP_SIGNALR_LINK_MIN_BACKOFF   100
#define NGX_HTTP_SIGNALR_LINK_MAX_BACKOFF   5000

/* a silent daemon is pinged, and dropped when it stays silent */
#define NGX_HTTP_SIGNALR_LINK_PING_TIME     10000
#define NGX_HTTP_SIGNALR_LINK_TIMEOUT       30000


typedef enum {
    NGX_HTTP_SIGNALR_LINK_OFF = 0,
    NGX_HTTP_SIGNALR_LINK_DOWN,
    NGX_HTTP_SIGNALR_LINK_CONNECTING,
    NGX_HTTP_SIGNALR_LINK_HELLO,        /* ours sent, the daemon's awaited */
    NGX_HTTP_SIGNALR_LINK_UP
} ngx_http_signalr_link_state_e;


typedef struct {
    ngx_http_signalr_link_state_e   state;
    ngx_connection_t               *connection;
    ngx_addr_t                     *addr;
    ngx_str_t                      *name;
    ngx_log_t                      *log;

    sr_buf_t                        in;
    sr_buf_t                        out;
    size_t                          out_pos;

    ngx_event_t                     reconnect;
    ngx_event_t                     ping;
    ngx_event_t                     drain;     /* a worker that exits */
    ngx_uint_t                      drains;
    ngx_msec_t                      last_recv;
    ngx_msec_t                      backoff;
    ngx_uint_t                      failures;  /* since the last HELLO */

    /* input past the frame being handled, for ..._link_pending() */
    unsigned                        more_input:1;
} ngx_http_signalr_link_t;


static void ngx_http_signalr_link_connect(void);
static ngx_int_t ngx_http_signalr_link_socket(void);
static void ngx_http_signalr_link_connected(void);
static void ngx_http_signalr_link_drop(const char *reason, ngx_err_t err);
static void ngx_http_signalr_link_close_socket(void);
static void ngx_http_signalr_link_reconnect_handler(ngx_event_t *ev);
static void ngx_http_signalr_link_ping_handler(ngx_event_t *ev);
static void ngx_http_signalr_link_drain_handler(ngx_event_t *ev);
static void ngx_http_signalr_link_read_handler(ngx_event_t *rev);
static void ngx_http_signalr_link_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_http_signalr_link_test_connect(ngx_connection_t *c);
static ngx_int_t ngx_http_signalr_link_parse(void);
static ngx_int_t ngx_http_signalr_link_frame(sr_ipc_frame_t *frame);
static ngx_int_t ngx_http_signalr_link_hello(sr_ipc_frame_t *frame);
static ngx_int_t ngx_http_signalr_link_close_frame(ngx_str_t *id,
    sr_ipc_frame_t *frame);
static ngx_int_t ngx_http_signalr_link_protocol_error(const char *what,
    sr_error_t *err);
static ngx_int_t ngx_http_signalr_link_flush(void);
static ngx_int_t ngx_http_signalr_link_queued(void);
static void ngx_http_signalr_link_compact(void);


static ngx_http_signalr_link_t  ngx_http_signalr_link;


ngx_int_t
ngx_http_signalr_link_init_process(ngx_cycle_t *cycle)
{
    ngx_http_signalr_link_t       *link;
    ngx_http_signalr_main_conf_t  *smcf;

    link = &ngx_http_signalr_link;

    ngx_memzero(link, sizeof(ngx_http_signalr_link_t));

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_signalr_module);

    if (smcf == NULL || smcf->hubs == 0) {
        return NGX_OK;
    }

    link->addr = &smcf->daemon_addr;
    link->name = &smcf->daemon;
    link->log = cycle->log;
    link->backoff = NGX_HTTP_SIGNALR_LINK_MIN_BACKOFF;

    sr_buf_init(&link->in);
    sr_buf_init(&link->out);

    link->reconnect.handler = ngx_http_signalr_link_reconnect_handler;
    link->reconnect.data = link;
    link->reconnect.log = cycle->log;
    link->reconnect.cancelable = 1;

    link->ping.handler = ngx_http_signalr_link_ping_handler;
    link->ping.data = link;
    link->ping.log = cycle->log;
    link->ping.cancelable = 1;

    link->drain.handler = ngx_http_signalr_link_drain_handler;
    link->drain.data = link;
    link->drain.log = cycle->log;

    link->state = NGX_HTTP_SIGNALR_LINK_DOWN;

    ngx_http_signalr_link_connect();

    return NGX_OK;
}


/* a last try to hand CLOSED frames over before the worker exits */

void
ngx_http_signalr_link_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state == NGX_HTTP_SIGNALR_LINK_OFF) {
        return;
    }

    if (link->state == NGX_HTTP_SIGNALR_LINK_UP
        || link->state == NGX_HTTP_SIGNALR_LINK_HELLO)
    {
        (void) ngx_http_signalr_link_flush();
    }

    if (link->reconnect.timer_set) {
        ngx_del_timer(&link->reconnect);
    }

    if (link->ping.timer_set) {
        ngx_del_timer(&link->ping);
    }

    if (link->drain.timer_set) {
        ngx_del_timer(&link->drain);
    }

    ngx_http_signalr_link_close_socket();

    sr_buf_free(&link->in);
    sr_buf_free(&link->out);

    link->state = NGX_HTTP_SIGNALR_LINK_OFF;
}


ngx_uint_t
ngx_http_signalr_link_is_up(void)
{
    return ngx_http_signalr_link.state == NGX_HTTP_SIGNALR_LINK_UP;
}


/*
 * Whether the daemon has sent more than the frame being handled: in the
 * input read so far, or still in the socket (FIONREAD, which costs one
 * system call). A link that cannot tell counts as busy.
 */

ngx_uint_t
ngx_http_signalr_link_pending(void)
{
    int                       n;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->more_input) {
        return 1;
    }

    if (link->connection == NULL) {
        return 0;
    }

    if (ioctl(link->connection->fd, FIONREAD, &n) == -1) {
        return 1;
    }

    return n > 0;
}


static void
ngx_http_signalr_link_connect(void)
{
    int                       rc;
    ngx_err_t                 err;
    ngx_connection_t         *c;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (ngx_http_signalr_link_socket() != NGX_OK) {
        return;
    }

    c = link->connection;

    rc = connect(c->fd, link->addr->sockaddr, link->addr->socklen);

    if (rc == 0) {
        ngx_http_signalr_link_connected();
        return;
    }

    err = ngx_socket_errno;

    /* EAGAIN on a Unix socket: the daemon's backlog is full */
    if (err != NGX_EINPROGRESS) {
        ngx_http_signalr_link_drop("connect() failed", err);
        return;
    }

    link->state = NGX_HTTP_SIGNALR_LINK_CONNECTING;

    /* a worker shutting down need not wait for the daemon */
    c->write->cancelable = 1;
    ngx_add_timer(c->write, NGX_HTTP_SIGNALR_LINK_CONNECT_TIME);

    if (!ngx_add_conn && ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_signalr_link_drop("ngx_handle_write_event() failed", 0);
    }
}


/*
 * Design note: the socket is set up here rather than with
 * ngx_event_connect_peer(), which logs every failed attempt at "crit"
 * for a missing socket file; a link retries for as long as the worker
 * lives, and only its first failure in a row deserves an error line.
 */

static ngx_int_t
ngx_http_signalr_link_socket(void)
{
    ngx_socket_t              s;
    ngx_connection_t         *c;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    s = ngx_socket(AF_UNIX, SOCK_STREAM, 0);

    if (s == (ngx_socket_t) -1) {
        ngx_http_signalr_link_drop(ngx_socket_n " failed", ngx_socket_errno);
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, link->log);

    if (c == NULL) {
        (void) ngx_close_socket(s);
        ngx_http_signalr_link_drop("no free connection", 0);
        return NGX_ERROR;
    }

    link->connection = c;

    c->recv = ngx_recv;
    c->send = ngx_send;
    c->data = link;
    c->read->handler = ngx_http_signalr_link_read_handler;
    c->write->handler = ngx_http_signalr_link_write_handler;
    c->read->log = link->log;
    c->write->log = link->log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    if (ngx_nonblocking(s) == -1) {
        ngx_http_signalr_link_drop(ngx_nonblocking_n " failed",
                                   ngx_socket_errno);
        return NGX_ERROR;
    }

    if (ngx_add_conn && ngx_add_conn(c) == NGX_ERROR) {
        ngx_http_signalr_link_drop("ngx_add_conn() failed", 0);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_signalr_link_connected(void)
{
    size_t                    offset;
    sr_error_t                err;
    ngx_connection_t         *c;
    sr_ipc_hello_t            hello;
    ngx_http_signalr_link_t  *link;
    char                      node[NGX_MAXHOSTNAMELEN];

    link = &ngx_http_signalr_link;
    c = link->connection;

    link->state = NGX_HTTP_SIGNALR_LINK_HELLO;
    link->last_recv = ngx_current_msec;
    c->write->ready = 1;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!ngx_add_conn && ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_signalr_link_drop("ngx_handle_read_event() failed", 0);
        return;
    }

    ngx_cpystrn((u_char *) node, ngx_cycle->hostname.data,
                ngx_min(ngx_cycle->hostname.len + 1, sizeof(node)));

    hello.version = SR_IPC_VERSION;
    hello.pid = ngx_pid;
    hello.node = node;

    sr_buf_reset(&link->out);
    sr_buf_reset(&link->in);
    link->out_pos = 0;

    if (sr_ipc_begin(&link->out, SR_IPC_HELLO, NULL, 0, &offset, &err)
        != SR_OK
        || sr_ipc_hello_encode(&hello, &link->out, &err) != SR_OK
        || sr_ipc_end(&link->out, offset, &err) != SR_OK)
    {
        ngx_http_signalr_link_drop("HELLO not encodable", 0);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, link->log, 0,
                   "signalr daemon link to %V connected", link->name);

    if (!link->ping.timer_set) {
        ngx_add_timer(&link->ping, NGX_HTTP_SIGNALR_LINK_PING_TIME);
    }

    ngx_post_event(c->write, &ngx_posted_events);
}


/*
 * Closes the socket, tells the sessions, and schedules the next attempt.
 * Safe from any state; the caller must not use the old connection after.
 */

static void
ngx_http_signalr_link_drop(const char *reason, ngx_err_t err)
{
    ngx_uint_t                was_up, level;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    was_up = (link->state == NGX_HTTP_SIGNALR_LINK_UP);
    level = (link->failures == 0) ? NGX_LOG_ERR : NGX_LOG_INFO;

    ngx_log_error(level, link->log, err, "signalr daemon link to %V: %s",
                  link->name, reason);

    link->failures++;

    ngx_http_signalr_link_close_socket();

    sr_buf_free(&link->in);
    sr_buf_free(&link->out);
    sr_buf_init(&link->in);
    sr_buf_init(&link->out);
    link->out_pos = 0;

    link->state = NGX_HTTP_SIGNALR_LINK_DOWN;

    if (link->ping.timer_set) {
        ngx_del_timer(&link->ping);
    }

    if (was_up) {
        ngx_http_signalr_sessions_link_down();
    }

    /* whatever was relayed has no way back any more */
    ngx_http_signalr_relay_link_down();

    /* nor has what was parked or asked back */
    ngx_http_signalr_reconnect_link_down();

    if (!link->reconnect.timer_set) {
        ngx_add_timer(&link->reconnect, link->backoff);
    }

    link->backoff = ngx_min(link->backoff * 2,
                            NGX_HTTP_SIGNALR_LINK_MAX_BACKOFF);
}


static void
ngx_http_signalr_link_close_socket(void)
{
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->connection) {
        ngx_close_connection(link->connection);
        link->connection = NULL;
    }
}


static void
ngx_http_signalr_link_reconnect_handler(ngx_event_t *ev)
{
    if (ngx_http_signalr_link.state == NGX_HTTP_SIGNALR_LINK_DOWN) {
        ngx_http_signalr_link_connect();
    }
}


static void
ngx_http_signalr_link_ping_handler(ngx_event_t *ev)
{
    ngx_msec_t                silent;
    sr_error_t                err;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;
    silent = ngx_current_msec - link->last_recv;

    if (silent >= NGX_HTTP_SIGNALR_LINK_TIMEOUT) {
        ngx_http_signalr_link_drop("the daemon did not answer in time",
                                   NGX_ETIMEDOUT);
        return;
    }

    ngx_add_timer(&link->ping, NGX_HTTP_SIGNALR_LINK_PING_TIME);

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP
        || silent < NGX_HTTP_SIGNALR_LINK_PING_TIME)
    {
        return;
    }

    ngx_http_signalr_link_compact();

    if (sr_ipc_write(&link->out, SR_IPC_PING, NULL, 0, NULL, 0, &err)
        != SR_OK)
    {
        ngx_http_signalr_link_drop("no memory for PING", 0);
        return;
    }

    (void) ngx_http_signalr_link_queued();
}


/*
 * A worker that shuts down exits once no timer but cancelable ones is
 * left: this one keeps it until the queue, with the PARK frames of its
 * connections, is written (or a few seconds passed).
 */

static void
ngx_http_signalr_link_drain_handler(ngx_event_t *ev)
{
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP
        || link->out_pos >= link->out.len || ++link->drains > 50)
    {
        return;
    }

    if (ngx_http_signalr_link_flush() == NGX_OK
        && link->out_pos < link->out.len)
    {
        ngx_add_timer(&link->drain, 100);
    }
}


static void
ngx_http_signalr_link_write_handler(ngx_event_t *wev)
{
    ngx_connection_t         *c;
    ngx_http_signalr_link_t  *link;

    c = wev->data;
    link = c->data;

    if (link->state == NGX_HTTP_SIGNALR_LINK_CONNECTING) {

        if (wev->timedout) {
            ngx_http_signalr_link_drop("connect() timed out",
                                       NGX_ETIMEDOUT);
            return;
        }

        if (ngx_http_signalr_link_test_connect(c) != NGX_OK) {
            return;
        }

        ngx_http_signalr_link_connected();
        return;
    }

    if (link->state == NGX_HTTP_SIGNALR_LINK_UP
        || link->state == NGX_HTTP_SIGNALR_LINK_HELLO)
    {
        (void) ngx_http_signalr_link_flush();
    }
}


static ngx_int_t
ngx_http_signalr_link_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_http_signalr_link_drop("connect() failed", err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* NGX_OK, or NGX_ERROR when the link was dropped */

static ngx_int_t
ngx_http_signalr_link_flush(void)
{
    ssize_t                   n;
    ngx_connection_t         *c;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;
    c = link->connection;

    while (link->out_pos < link->out.len) {

        n = c->send(c, link->out.data + link->out_pos,
                    link->out.len - link->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_signalr_link_drop("ngx_handle_write_event() "
                                           "failed", 0);
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        if (n == NGX_ERROR) {
            ngx_http_signalr_link_drop("send() failed", ngx_socket_errno);
            return NGX_ERROR;
        }

        link->out_pos += n;
    }

    link->out_pos = 0;

    if (link->out.cap > NGX_HTTP_SIGNALR_LINK_READ_BUDGET) {
        sr_buf_free(&link->out);
        sr_buf_init(&link->out);

    } else {
        sr_buf_reset(&link->out);
    }

    return NGX_OK;
}


/*
 * Called after a frame was appended: enforces the queue bound and gets
 * the queue written after the current event. NGX_ERROR when the link
 * was dropped.
 */

static ngx_int_t
ngx_http_signalr_link_queued(void)
{
    ngx_event_t              *wev;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->out.len - link->out_pos > NGX_HTTP_SIGNALR_LINK_MAX_QUEUE) {
        ngx_http_signalr_link_drop("the daemon does not keep up, "
                                   "send queue is full", 0);
        return NGX_ERROR;
    }

    wev = link->connection->write;

    if (!wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }

    if (ngx_exiting && !link->drain.timer_set) {
        ngx_add_timer(&link->drain, 10);
    }

    return NGX_OK;
}


/* drops the part of the queue already written when it is worth it */

static void
ngx_http_signalr_link_compact(void)
{
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->out_pos && link->out_pos >= link->out.len / 2) {
        sr_buf_consume(&link->out, link->out_pos);
        link->out_pos = 0;
    }
}


ngx_int_t
ngx_http_signalr_link_open(ngx_http_signalr_session_t *s)
{
    size_t                    offset, mark;
    sr_error_t                err;
    sr_ipc_open_t             open;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP) {
        return NGX_DECLINED;
    }

    ngx_http_signalr_link_compact();

    /* the strings are borrowed: open is never cleared */
    open.hub = (char *) s->conf->hub.data;
    open.user = s->user.len ? (char *) s->user.data : NULL;
    open.protocol = s->protocol;
    open.transport = (char *) s->transport->name.data;
    open.claims = s->claims ? s->claims : json_object();

    mark = link->out.len;

    if (open.claims == NULL
        || sr_ipc_begin(&link->out, SR_IPC_OPEN, (const char *) s->id,
                        ngx_strlen(s->id), &offset, &err)
           != SR_OK
        || sr_ipc_open_encode_token(&open,
                                    (s->stateful && s->token_len)
                                    ? (const char *) s->token : NULL,
                                    &link->out, &err)
           != SR_OK
        || sr_ipc_end(&link->out, offset, &err) != SR_OK)
    {
        link->out.len = mark;

        if (open.claims && open.claims != s->claims) {
            json_decref(open.claims);
        }

        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "signalr connection \"%s\": OPEN not encodable",
                      s->id);
        return NGX_ERROR;
    }

    if (open.claims != s->claims) {
        json_decref(open.claims);
    }

    s->opened = 1;

    return ngx_http_signalr_link_queued();
}


ngx_int_t
ngx_http_signalr_link_closed(ngx_http_signalr_session_t *s)
{
    sr_error_t                err;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP) {
        return NGX_DECLINED;
    }

    ngx_http_signalr_link_compact();

    if (sr_ipc_write(&link->out, SR_IPC_CLOSED, (const char *) s->id,
                     ngx_strlen(s->id), NULL, 0, &err)
        != SR_OK)
    {
        ngx_http_signalr_link_drop("no memory for CLOSED", 0);
        return NGX_ERROR;
    }

    return ngx_http_signalr_link_queued();
}


ngx_int_t
ngx_http_signalr_link_invoke(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len)
{
    sr_error_t                err;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP || !s->opened) {
        return NGX_DECLINED;
    }

    ngx_http_signalr_link_compact();

    if (sr_ipc_write(&link->out, SR_IPC_INVOKE, (const char *) s->id,
                     ngx_strlen(s->id), payload, len, &err)
        != SR_OK)
    {
        ngx_http_signalr_link_drop("no memory for INVOKE", 0);
        return NGX_ERROR;
    }

    return ngx_http_signalr_link_queued();
}


/*
 * One frame of any type with a body encoded by the caller (id NULL for
 * a link frame); NGX_DECLINED while the link is down.
 */

ngx_int_t
ngx_http_signalr_link_send(sr_ipc_type_t type, ngx_str_t *id,
    const u_char *body, size_t len)
{
    sr_error_t                err;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP) {
        return NGX_DECLINED;
    }

    ngx_http_signalr_link_compact();

    if (sr_ipc_write(&link->out, type, id ? (const char *) id->data : NULL,
                     id ? id->len : 0, body, len, &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "signalr daemon link: frame of type %d not "
                      "written: %s", (int) type, err.str);
        return NGX_ERROR;
    }

    return ngx_http_signalr_link_queued();
}


/* a FORWARD or FORWARDED frame; NGX_DECLINED while the link is down */

ngx_int_t
ngx_http_signalr_link_relay(sr_ipc_type_t type, ngx_str_t *id,
    sr_ipc_relay_t *relay)
{
    sr_error_t                err;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP) {
        return NGX_DECLINED;
    }

    ngx_http_signalr_link_compact();

    if (sr_ipc_relay_write(&link->out, type, (const char *) id->data,
                           id->len, relay, &err)
        != SR_OK)
    {
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "signalr connection \"%V\": relay frame not "
                      "encodable: %s", id, err.str);
        return NGX_ERROR;
    }

    return ngx_http_signalr_link_queued();
}


static void
ngx_http_signalr_link_read_handler(ngx_event_t *rev)
{
    ssize_t                   n;
    size_t                    total;
    ngx_connection_t         *c;
    ngx_http_signalr_link_t  *link;

    c = rev->data;
    link = c->data;

    if (link->state != NGX_HTTP_SIGNALR_LINK_UP
        && link->state != NGX_HTTP_SIGNALR_LINK_HELLO)
    {
        return;
    }

    for (total = 0; total < NGX_HTTP_SIGNALR_LINK_READ_BUDGET; total += n) {

        if (sr_buf_reserve(&link->in, NGX_HTTP_SIGNALR_LINK_READ_CHUNK)
            != SR_OK)
        {
            ngx_http_signalr_link_drop("no memory for reading", 0);
            return;
        }

        n = c->recv(c, link->in.data + link->in.len,
                    link->in.cap - link->in.len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_signalr_link_drop("ngx_handle_read_event() "
                                           "failed", 0);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_signalr_link_drop(n == 0 ? "closed by the daemon"
                                              : "recv() failed",
                                       n == 0 ? 0 : ngx_socket_errno);
            return;
        }

        link->in.len += n;
        link->last_recv = ngx_current_msec;

        if (ngx_http_signalr_link_parse() != NGX_OK) {
            return;
        }
    }

    ngx_post_event(rev, &ngx_posted_events);
}


/* handles every whole frame of the input; NGX_ERROR when dropped */

static ngx_int_t
ngx_http_signalr_link_parse(void)
{
    int                       rc;
    size_t                    pos, consumed;
    ngx_int_t                 handled;
    sr_error_t                err;
    sr_ipc_frame_t            frame;
    ngx_connection_t         *c;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;
    c = link->connection;
    pos = 0;

    for ( ;; ) {
        rc = sr_ipc_parse(link->in.data + pos, link->in.len - pos, 0,
                          &frame, &consumed, &err);

        if (rc == SR_AGAIN) {
            break;
        }

        if (rc != SR_OK) {
            return ngx_http_signalr_link_protocol_error("frame", &err);
        }

        link->more_input = (pos + consumed < link->in.len);

        handled = ngx_http_signalr_link_frame(&frame);

        link->more_input = 0;

        if (handled != NGX_OK || link->connection != c) {
            return NGX_ERROR;
        }

        pos += consumed;
    }

    sr_buf_consume(&link->in, pos);

    return NGX_OK;
}


static ngx_int_t
ngx_http_signalr_link_frame(sr_ipc_frame_t *frame)
{
    ngx_str_t                 id;
    sr_error_t                err;
    size_t                    len;
    const u_char             *message;
    sr_ipc_id_iter_t          ids;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state == NGX_HTTP_SIGNALR_LINK_HELLO
        || frame->type == SR_IPC_HELLO)
    {
        return ngx_http_signalr_link_hello(frame);
    }

    id.data = (u_char *) frame->conn_id;
    id.len = frame->conn_id_len;

    if (id.len == 0
        && (frame->type == SR_IPC_SEND || frame->type == SR_IPC_CLOSE))
    {
        sr_error_set(&err, SR_ERR_PROTOCOL, "no connection id");
        return ngx_http_signalr_link_protocol_error("frame", &err);
    }

    switch (frame->type) {

    case SR_IPC_SEND:
        ngx_http_signalr_session_deliver(&id, frame->body, frame->body_len);
        return NGX_OK;

    case SR_IPC_MULTICAST:
        if (sr_ipc_multicast_parse(frame->body, frame->body_len, &ids,
                                   &message, &len, &err)
            != SR_OK)
        {
            return ngx_http_signalr_link_protocol_error("MULTICAST", &err);
        }

        ngx_http_signalr_session_multicast(&ids, message, len);
        return NGX_OK;

    case SR_IPC_CLOSE:
        return ngx_http_signalr_link_close_frame(&id, frame);

    case SR_IPC_FORWARD:
    case SR_IPC_FORWARDED:
        if (ngx_http_signalr_relay_frame(frame) != NGX_OK) {
            sr_error_set(&err, SR_ERR_PROTOCOL, "bad relay frame");
            return ngx_http_signalr_link_protocol_error("frame", &err);
        }

        return NGX_OK;

    case SR_IPC_RELEASE:
    case SR_IPC_ADOPT:
    case SR_IPC_RESUME_FAILED:
    case SR_IPC_SUSPEND:
        if (ngx_http_signalr_reconnect_frame(frame) != NGX_OK) {
            sr_error_set(&err, SR_ERR_PROTOCOL, "bad reconnect frame");
            return ngx_http_signalr_link_protocol_error("frame", &err);
        }

        return NGX_OK;

    case SR_IPC_PING:
        ngx_http_signalr_link_compact();

        if (sr_ipc_write(&link->out, SR_IPC_PONG, NULL, 0, NULL, 0, &err)
            != SR_OK)
        {
            ngx_http_signalr_link_drop("no memory for PONG", 0);
            return NGX_ERROR;
        }

        return ngx_http_signalr_link_queued();

    default:
        /* PONG, and types of later versions, carry nothing for us */
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_signalr_link_close_frame(ngx_str_t *id, sr_ipc_frame_t *frame)
{
    sr_error_t      err;
    sr_ipc_close_t  close;

    ngx_memzero(&close, sizeof(sr_ipc_close_t));

    if (sr_ipc_close_decode(frame->body, frame->body_len, &close, &err)
        != SR_OK)
    {
        return ngx_http_signalr_link_protocol_error("CLOSE", &err);
    }

    ngx_http_signalr_session_close_by_daemon(id, close.error,
                                             close.allow_reconnect);
    sr_ipc_close_clear(&close);

    return NGX_OK;
}


/* the stream cannot be trusted to be in step any more: drop the link */

static ngx_int_t
ngx_http_signalr_link_protocol_error(const char *what, sr_error_t *err)
{
    ngx_log_error(NGX_LOG_ERR, ngx_http_signalr_link.log, 0,
                  "signalr daemon link: bad %s: %s", what, err->str);

    ngx_http_signalr_link_drop("protocol error", 0);

    return NGX_ERROR;
}


/*
 * The daemon's HELLO ends the opening of the link: only then do the
 * live connections get their OPEN. Any other frame first is an error;
 * a later HELLO is ignored.
 */

static ngx_int_t
ngx_http_signalr_link_hello(sr_ipc_frame_t *frame)
{
    sr_error_t                err;
    uint32_t                  version;
    sr_ipc_hello_t            hello;
    ngx_http_signalr_link_t  *link;

    link = &ngx_http_signalr_link;

    if (link->state == NGX_HTTP_SIGNALR_LINK_UP) {
        return NGX_OK;
    }

    if (frame->type != SR_IPC_HELLO) {
        sr_error_set(&err, SR_ERR_PROTOCOL, "frame of type %d before HELLO",
                     frame->type);
        return ngx_http_signalr_link_protocol_error("frame", &err);
    }

    ngx_memzero(&hello, sizeof(sr_ipc_hello_t));

    if (sr_ipc_hello_decode(frame->body, frame->body_len, &hello, &err)
        != SR_OK)
    {
        return ngx_http_signalr_link_protocol_error("HELLO", &err);
    }

    version = hello.version;
    sr_ipc_hello_clear(&hello);

    if (version != SR_IPC_VERSION) {
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "signalr daemon link: daemon speaks version %uD, "
                      "the module version %d", version, SR_IPC_VERSION);
        ngx_http_signalr_link_drop("version mismatch", 0);
        return NGX_ERROR;
    }

    if (link->failures) {
        ngx_log_error(NGX_LOG_NOTICE, link->log, 0,
                      "signalr daemon link to %V is up", link->name);
    }

    link->failures = 0;
    link->backoff = NGX_HTTP_SIGNALR_LINK_MIN_BACKOFF;
    link->state = NGX_HTTP_SIGNALR_LINK_UP;

    ngx_http_signalr_sessions_link_up();

    return link->state == NGX_HTTP_SIGNALR_LINK_UP ? NGX_OK : NGX_ERROR;
}
