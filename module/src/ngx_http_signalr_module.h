/*
 * ngx_http_signalr_module: types shared by the files of the module.
 *
 * A SignalR connection is a session (the hub protocol, independent of
 * the transport) on top of one transport: a WebSocket, which owns the
 * client socket after the 101 answer; a Server-Sent Events stream plus
 * HTTP POSTs; or long polls plus HTTP POSTs. The link forwards hub
 * messages to the daemon over one Unix socket per worker, and relays the
 * requests of a connection that reach another worker than the one
 * holding it (docs/transports.md).
 */

#ifndef _NGX_HTTP_SIGNALR_MODULE_H_INCLUDED_
#define _NGX_HTTP_SIGNALR_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signalr/buf.h>
#include <signalr/error.h>
#include <signalr/handshake.h>
#include <signalr/hub_message.h>
#include <signalr/ipc.h>
#include <signalr/jwt.h>
#include <signalr/negotiate.h>
#include <signalr/websocket.h>


#define NGX_HTTP_SIGNALR_DEFAULT_DAEMON  "unix:/run/signalrd/signalrd.sock"

/* the bound of a close handshake before the socket is dropped */
#define NGX_HTTP_SIGNALR_CLOSE_TIMEOUT   5000

/* invocations a client may have waiting for a Completion */
#define NGX_HTTP_SIGNALR_MAX_PENDING     1024

/* upper bounds of signalr_max_invocation_id and signalr_max_arguments */
#define NGX_HTTP_SIGNALR_MAX_INVOCATION_ID  128
#define NGX_HTTP_SIGNALR_MAX_ARGUMENTS      1024

/* the longest user id a connection may carry */
#define NGX_HTTP_SIGNALR_MAX_USER        1024

#define NGX_HTTP_SIGNALR_ALL_TRANSPORTS                                      \
    (SR_TRANSPORT_WEBSOCKETS|SR_TRANSPORT_SSE|SR_TRANSPORT_LONG_POLLING)


typedef struct ngx_http_signalr_session_s  ngx_http_signalr_session_t;


/*
 * What the session needs of a transport. send() queues one framed hub
 * message (force: even over signalr_send_queue_size, for the messages
 * that end a session) and returns NGX_DECLINED when it was not queued;
 * close() ends the transport after what is queued, code being a
 * WebSocket close code that the HTTP transports ignore; drop() ends it
 * at once, for s->failed. None of them frees s synchronously.
 */
typedef struct {
    ngx_str_t                    name;          /* as OPEN names it */
    ngx_uint_t                   kind;          /* SR_TRANSPORT_* */
    ngx_uint_t                   binary;        /* carries MessagePack */
    ngx_int_t                  (*send)(ngx_http_signalr_session_t *s,
                                       const u_char *data, size_t len,
                                       ngx_uint_t force);
    void                       (*close)(ngx_http_signalr_session_t *s,
                                        int code, const char *reason);
    void                       (*drop)(ngx_http_signalr_session_t *s);
} ngx_http_signalr_transport_t;


#define ngx_http_signalr_session_send(s, data, len, force)                   \
    (s)->transport->send(s, data, len, force)


/* one signalr_limit_* directive: a zone and its bounds there */
typedef struct {
    ngx_shm_zone_t              *zone;
    ngx_uint_t                   burst;         /* rate limits */
    ngx_uint_t                   queue;
    ngx_uint_t                   max;           /* counting limits */
} ngx_http_signalr_limit_t;


typedef struct {
    ngx_str_t                    daemon;
    ngx_addr_t                   daemon_addr;
    size_t                       registry_size;
    ngx_shm_zone_t              *registry_zone;
    ngx_uint_t                   hubs;          /* hub locations */
} ngx_http_signalr_main_conf_t;


typedef struct {
    ngx_str_t                    hub;
    ngx_str_t                    location;      /* hub path, no "/" at end */
    ngx_uint_t                   transports;
    ngx_flag_t                   stateful_reconnect;
    size_t                       reconnect_buffer;
    ngx_msec_t                   reconnect_window;
    ngx_msec_t                   keepalive_interval;
    ngx_msec_t                   client_timeout;
    ngx_msec_t                   handshake_timeout;
    size_t                       max_message_size;
    size_t                       send_queue_size;
    ngx_msec_t                   poll_timeout;
    ngx_msec_t                   disconnect_timeout;
    ngx_array_t                 *cors_origins;  /* of ngx_str_t */

    ngx_flag_t                   jwt;
    ngx_array_t                 *jwt_key_files; /* of ngx_str_t */
    ngx_str_t                    jwt_issuer;
    ngx_array_t                 *jwt_audiences; /* of ngx_str_t */
    time_t                       jwt_leeway;
    ngx_str_t                    jwt_user_claim;
    ngx_array_t                 *jwt_roles;     /* required, of ngx_str_t */
    ngx_array_t                 *jwt_scopes;
    ngx_array_t                 *jwt_role_claims;
    ngx_array_t                 *jwt_scope_claims;
    ngx_flag_t                   jwt_close_expired;

    size_t                       max_invocation_id;
    ngx_uint_t                   max_arguments;
    ngx_uint_t                   max_streams;   /* per connection */
    ngx_http_signalr_limit_t    *limit_requests;
    ngx_http_signalr_limit_t    *limit_invocations;
    ngx_http_signalr_limit_t    *limit_connections;
    ngx_http_signalr_limit_t    *limit_streams;

    /* built while merging, from the jwt fields above */
    sr_jwt_keys_t               *jwt_keys;
    sr_jwt_policy_t              jwt_policy;
} ngx_http_signalr_loc_conf_t;


/* what one request learnt about its SignalR connection */
typedef struct {
    ngx_str_t                    user;
    json_t                      *claims;        /* owned; NULL without JWT */
    ngx_str_t                    connection_id;
    ngx_http_signalr_session_t  *session;
    ngx_pid_t                    owner;         /* worker holding it */
    ngx_uint_t                   kind;          /* its SR_TRANSPORT_* */
    time_t                       expires;       /* exp, 0 when none */
    unsigned                     authenticated:1;
    unsigned                     rate_checked:1;
} ngx_http_signalr_ctx_t;


/* invocations held back by signalr_limit_invocations, ..._limits.c */
typedef struct {
    ngx_queue_t                  queue;
    ngx_uint_t                   n;
    size_t                       bytes;
    ngx_event_t                  timer;
} ngx_http_signalr_delay_t;


/*
 * Long Polling: the poll waiting for out, here or on another worker. Out
 * of the session, in the session's pool, since a WebSocket or an SSE
 * stream needs none of it.
 */
typedef struct {
    ngx_http_signalr_session_t  *session;
    ngx_http_request_t          *poll;
    void                        *poll_ctx;
    ngx_pid_t                    poll_pid;      /* 0: the poll is local */
    uint32_t                     poll_seq;
    ngx_event_t                  poll_timer;    /* poll or disconnect */
    ngx_event_t                  poll_flush;    /* answers with out */
    ngx_queue_t                  queue;         /* Long Polling sessions */
} ngx_http_signalr_lp_t;


struct ngx_http_signalr_session_s {
    ngx_queue_t                  queue;         /* every session here */
    uint32_t                     id_hash;       /* in ..._ids.c's table */
    uint32_t                     id_len;

    const ngx_http_signalr_transport_t  *transport;

    /*
     * The request and socket of a WebSocket or SSE stream, else NULL; a
     * WebSocket's request is NULL once the session has left it.
     */
    ngx_http_request_t          *request;
    ngx_connection_t            *connection;
    ngx_log_t                   *log;
    ngx_pool_t                  *pool;          /* Long Polling's own */
    ngx_http_signalr_loc_conf_t *conf;
    ngx_shm_zone_t              *registry;

    u_char                       id[SR_RANDOM_ID_LEN + 1];
    u_char                       token[SR_RANDOM_ID_LEN + 1];
    size_t                       token_len;     /* 0: not in registry */
    ngx_str_t                    user;
    json_t                      *claims;        /* owned reference */
    char                        *claims_text;   /* or them, past the OPEN */
    sr_protocol_t                protocol;

    sr_ws_parser_t               parser;
    u_char                      *early;         /* sent with the upgrade */
    size_t                       early_len;
    u_char                      *own;           /* strings, once detached */
    sr_buf_t                     in;            /* undecoded hub bytes */
    sr_buf_t                     out;           /* frames for the client */
    size_t                       out_pos;       /* sent part of out */

    ngx_http_signalr_lp_t       *lp;            /* Long Polling's state */
    ngx_http_request_t          *post;          /* HTTP transports' POST */

    /* handshake, keep-alive, client timeout; then the close's bound */
    ngx_event_t                  timer;
    ngx_msec_t                   last_recv;
    ngx_msec_t                   last_sent;

    ngx_rbtree_t                 pending;       /* invocation ids */
    ngx_rbtree_node_t            pending_sentinel;
    ngx_uint_t                   npending;

    uint64_t                     received;      /* for stateful acks */
    uint64_t                     acked;

    /* stateful reconnect, ngx_http_signalr_reconnect.c */
    ngx_queue_t                  replay;        /* unacked, oldest first */
    size_t                       replay_size;
    uint64_t                     replay_first;  /* id of the oldest */
    uint64_t                     skip;          /* resent, to be dropped */
    int                          close_code;    /* the client's, or 0 */

    time_t                       expires;       /* of the token, or 0 */

    /* the keys of the limits of the location, found at the upgrade */
    ngx_str_t                    invocations_key;
    ngx_str_t                    connections_key;
    ngx_str_t                    streams_key;
    ngx_uint_t                   nstreams;

    ngx_http_signalr_delay_t    *delay;         /* while any is held back */

    unsigned                     handshaken:1;
    unsigned                     opened:1;      /* OPEN sent on the link */
    unsigned                     close_sent:1;  /* close frame queued */
    unsigned                     close_flushed:1;
    unsigned                     close_received:1;
    unsigned                     read_closed:1; /* input is discarded */
    unsigned                     stateful:1;
    unsigned                     in_tree:1;
    unsigned                     failed:1;      /* drop without closing */
    unsigned                     polled:1;      /* the first poll is over */
    unsigned                     chunked:1;     /* SSE body framing */
    unsigned                     counted:1;     /* in connections limit */
    unsigned                     limits_ready:1;
    unsigned                     ended:1;       /* a Close went either way */
    unsigned                     suspended:1;   /* back on another worker */
    unsigned                     parked:1;      /* state handed over */
    unsigned                     write_queued:1; /* in ..._ws_post_write() */
    uint32_t                     write_slot;    /* its place there */
};


extern ngx_module_t  ngx_http_signalr_module;


/* ngx_http_signalr_module.c */
ngx_http_signalr_ctx_t *ngx_http_signalr_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_signalr_send_problem(ngx_http_request_t *r,
    ngx_uint_t status, const char *detail);
ngx_int_t ngx_http_signalr_send_buffer(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *content_type, ngx_buf_t *b);
ngx_int_t ngx_http_signalr_name_zone(ngx_shm_zone_t *shm_zone,
    ngx_slab_pool_t *shpool, const char *what);
ngx_int_t ngx_http_signalr_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_signalr_is_hub_request(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, ngx_uint_t *negotiate);
ngx_table_elt_t *ngx_http_signalr_find_header(ngx_http_request_t *r,
    const char *name, size_t len);
ngx_int_t ngx_http_signalr_header_has_token(ngx_http_request_t *r,
    const char *name, size_t len, const char *token);

/* ngx_http_signalr_negotiate.c */
ngx_int_t ngx_http_signalr_negotiate_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_signalr_cors_headers(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf);
ngx_int_t ngx_http_signalr_is_preflight(ngx_http_request_t *r);

/* ngx_http_signalr_auth.c */
ngx_int_t ngx_http_signalr_auth_init(ngx_conf_t *cf);
char *ngx_http_signalr_auth_merge(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *prev, ngx_http_signalr_loc_conf_t *conf);

/* ngx_http_signalr_authz.c */
ngx_int_t ngx_http_signalr_authz_check(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf, json_t *claims, const char **reason);
char *ngx_http_signalr_authz_merge(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *prev, ngx_http_signalr_loc_conf_t *conf);
ngx_msec_t ngx_http_signalr_expiry_left(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_expiry_check(ngx_http_signalr_session_t *s);

/* ngx_http_signalr_limits.c */
#define NGX_HTTP_SIGNALR_RATE_LIMITED  "rate limit exceeded"
#define NGX_HTTP_SIGNALR_TOO_MANY_STREAMS  "too many streams"

char *ngx_http_signalr_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_signalr_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_signalr_limits_merge(ngx_conf_t *cf,
    ngx_http_signalr_loc_conf_t *prev, ngx_http_signalr_loc_conf_t *conf);
ngx_int_t ngx_http_signalr_limits_init(ngx_conf_t *cf);
ngx_int_t ngx_http_signalr_limits_attach(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char **detail);
void ngx_http_signalr_limits_detach(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_limits_negotiate(ngx_http_request_t *r,
    ngx_http_signalr_loc_conf_t *slcf);
ngx_int_t ngx_http_signalr_limits_invocation(ngx_http_signalr_session_t *s,
    ngx_msec_t *delay);
ngx_int_t ngx_http_signalr_limits_stream_acquire(
    ngx_http_signalr_session_t *s);
void ngx_http_signalr_limits_stream_release(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_delay_push(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len, ngx_msec_t delay);
void ngx_http_signalr_delay_clear(ngx_http_signalr_session_t *s);
void ngx_http_signalr_delay_flush(ngx_http_signalr_session_t *s);

#define ngx_http_signalr_delay_pending(s)  ((s)->delay != NULL)

/* ngx_http_signalr_websocket.c */
extern const ngx_http_signalr_transport_t  ngx_http_signalr_ws_transport;

ngx_int_t ngx_http_signalr_websocket_handler(ngx_http_request_t *r);
void ngx_http_signalr_ws_finalize(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_ws_send(ngx_http_signalr_session_t *s,
    int opcode, const u_char *data, size_t len, ngx_uint_t force);
void ngx_http_signalr_ws_close(ngx_http_signalr_session_t *s, int code,
    const char *reason);
ngx_uint_t ngx_http_signalr_ws_writes_waiting(void);
void ngx_http_signalr_ws_write_through(ngx_uint_t on);
ngx_int_t ngx_http_signalr_ws_adopt(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, const char *accept);

/* ngx_http_signalr_transports.c: HTTP POST, DELETE, and dispatch */
ngx_int_t ngx_http_signalr_http_handler(ngx_http_request_t *r,
    ngx_uint_t sse);
ngx_int_t ngx_http_signalr_session_identity(ngx_http_signalr_session_t *s,
    ngx_http_signalr_ctx_t *ctx, ngx_pool_t *pool);
void ngx_http_signalr_take_over(ngx_http_request_t *r, const char *action,
    ngx_event_handler_pt read_handler, ngx_event_handler_pt write_handler);
ngx_http_signalr_session_t *ngx_http_signalr_event_session(ngx_event_t *ev);
void ngx_http_signalr_wake_loop(void);
ngx_int_t ngx_http_signalr_feed(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len);
ngx_int_t ngx_http_signalr_send_empty(ngx_http_request_t *r,
    ngx_uint_t status, const u_char *data, size_t len, ngx_uint_t binary);

/* ngx_http_signalr_sse.c */
extern const ngx_http_signalr_transport_t  ngx_http_signalr_sse_transport;

ngx_int_t ngx_http_signalr_sse_start(ngx_http_request_t *r,
    ngx_http_signalr_ctx_t *ctx);

/* ngx_http_signalr_longpoll.c */
extern const ngx_http_signalr_transport_t  ngx_http_signalr_lp_transport;

ngx_int_t ngx_http_signalr_lp_create(ngx_http_request_t *r,
    ngx_http_signalr_ctx_t *ctx, ngx_str_t *token);
ngx_int_t ngx_http_signalr_lp_poll(ngx_http_signalr_session_t *s,
    ngx_http_request_t *r, ngx_pid_t pid, uint32_t seq);
void ngx_http_signalr_lp_delete(ngx_http_signalr_session_t *s);
void ngx_http_signalr_lp_exit(void);

/* ngx_http_signalr_relay.c */
void ngx_http_signalr_relay_init(void);
ngx_int_t ngx_http_signalr_relay_forward(ngx_http_request_t *r,
    ngx_http_signalr_ctx_t *ctx, ngx_uint_t kind, const u_char *data,
    size_t len);
void ngx_http_signalr_relay_answer(ngx_str_t *id, ngx_pid_t pid,
    uint32_t seq, ngx_uint_t status, const u_char *data, size_t len,
    ngx_uint_t binary);
ngx_int_t ngx_http_signalr_relay_frame(sr_ipc_frame_t *frame);
void ngx_http_signalr_relay_link_down(void);

/* ngx_http_signalr_session.c */
ngx_int_t ngx_http_signalr_session_init(ngx_http_signalr_session_t *s);
void ngx_http_signalr_session_input(ngx_http_signalr_session_t *s,
    const u_char *data, size_t len);
void ngx_http_signalr_session_shutdown(ngx_http_signalr_session_t *s);
void ngx_http_signalr_session_overflow(ngx_http_signalr_session_t *s);
void ngx_http_signalr_session_cleanup(void *data);
void ngx_http_signalr_session_end(ngx_http_signalr_session_t *s,
    const char *error, ngx_uint_t allow_reconnect, int code);
ngx_http_signalr_session_t *ngx_http_signalr_session_find(ngx_str_t *id);
void ngx_http_signalr_sessions_init(void);
void ngx_http_signalr_sessions_exit(void);
void ngx_http_signalr_sessions_link_up(void);
void ngx_http_signalr_sessions_link_down(void);
void ngx_http_signalr_session_deliver(ngx_str_t *id,
    const u_char *payload, size_t len);
void ngx_http_signalr_session_multicast(sr_ipc_id_iter_t *ids,
    const u_char *payload, size_t len);
void ngx_http_signalr_session_close_by_daemon(ngx_str_t *id,
    const char *error, ngx_uint_t allow_reconnect);
ngx_int_t ngx_http_signalr_msgpack_type(const u_char *p, size_t len);
ngx_int_t ngx_http_signalr_session_send_payload(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len);
ngx_int_t ngx_http_signalr_session_pending_list(
    ngx_http_signalr_session_t *s, char ***ids, u_char **streams,
    size_t *count);
void ngx_http_signalr_session_adopt(ngx_http_signalr_session_t *s,
    const sr_ipc_state_t *state);

/* ngx_http_signalr_reconnect.c: stateful reconnect, docs/reconnect.md */
#define NGX_HTTP_SIGNALR_RESUME  NGX_AGAIN     /* ws_attach: ask the daemon */

#define ngx_http_signalr_trackable(type)                                     \
    ((type) >= SR_MSG_INVOCATION && (type) <= SR_MSG_CANCEL_INVOCATION)

/* one message kept for replay, in its IPC (MessagePack) form */
typedef struct {
    ngx_queue_t                  queue;
    size_t                       len;
    u_char                       data[1];
} ngx_http_signalr_replay_item_t;

ngx_int_t ngx_http_signalr_replay_push(ngx_queue_t *replay, size_t *size,
    const u_char *data, size_t len, ngx_log_t *log);
void ngx_http_signalr_send_closed(ngx_str_t *id);
void ngx_http_signalr_reconnect_release(ngx_str_t *id);

void ngx_http_signalr_reconnect_init(void);
void ngx_http_signalr_reconnect_start(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_reconnect_track(ngx_http_signalr_session_t *s,
    ngx_int_t type, const u_char *payload, size_t len);
void ngx_http_signalr_reconnect_ack(ngx_http_signalr_session_t *s,
    uint64_t sequence_id);
ngx_int_t ngx_http_signalr_reconnect_sequence(ngx_http_signalr_session_t *s,
    uint64_t sequence_id);
ngx_uint_t ngx_http_signalr_reconnect_duplicate(
    ngx_http_signalr_session_t *s);
ngx_uint_t ngx_http_signalr_reconnect_parkable(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_reconnect_park(ngx_http_signalr_session_t *s);
void ngx_http_signalr_reconnect_clear(ngx_http_signalr_session_t *s);
ngx_uint_t ngx_http_signalr_reconnect_deliver(ngx_str_t *id,
    ngx_int_t type, const u_char *payload, size_t len);
void ngx_http_signalr_reconnect_close(ngx_str_t *id);
void ngx_http_signalr_reconnect_exit(void);
void ngx_http_signalr_reconnect_link_down(void);

/* ngx_http_signalr_resume.c: the way back, RESUME and ADOPT */
void ngx_http_signalr_resume_init(void);
ngx_int_t ngx_http_signalr_reconnect_frame(sr_ipc_frame_t *frame);
ngx_int_t ngx_http_signalr_resume_start(ngx_http_request_t *r,
    ngx_http_signalr_session_t *s, ngx_str_t *token, const char *accept);
void ngx_http_signalr_resume_link_down(void);

/* ngx_http_signalr_claims.c */
void ngx_http_signalr_claims_freeze(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_claims_thaw(ngx_http_signalr_session_t *s);
void ngx_http_signalr_claims_free(ngx_http_signalr_session_t *s);

/* ngx_http_signalr_ids.c: the sessions by connection id */
uint32_t ngx_http_signalr_ids_hash(const u_char *id, size_t len);
ngx_int_t ngx_http_signalr_ids_insert(ngx_http_signalr_session_t *s);
ngx_http_signalr_session_t *ngx_http_signalr_ids_find(ngx_str_t *id);
void ngx_http_signalr_ids_delete(ngx_http_signalr_session_t *s);
void ngx_http_signalr_ids_exit(void);

/* ngx_http_signalr_link.c */
ngx_int_t ngx_http_signalr_link_init_process(ngx_cycle_t *cycle);
void ngx_http_signalr_link_exit_process(ngx_cycle_t *cycle);
ngx_uint_t ngx_http_signalr_link_is_up(void);
ngx_uint_t ngx_http_signalr_link_pending(void);
ngx_int_t ngx_http_signalr_link_open(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_link_closed(ngx_http_signalr_session_t *s);
ngx_int_t ngx_http_signalr_link_invoke(ngx_http_signalr_session_t *s,
    const u_char *payload, size_t len);
ngx_int_t ngx_http_signalr_link_relay(sr_ipc_type_t type, ngx_str_t *id,
    sr_ipc_relay_t *relay);
ngx_int_t ngx_http_signalr_link_send(sr_ipc_type_t type, ngx_str_t *id,
    const u_char *body, size_t len);

/* ngx_http_signalr_registry.c */
#define NGX_HTTP_SIGNALR_REG_UNKNOWN    1
#define NGX_HTTP_SIGNALR_REG_ATTACHED   2
#define NGX_HTTP_SIGNALR_REG_OTHER_USER 3
#define NGX_HTTP_SIGNALR_REG_NOT_YET    4   /* negotiated, not attached */

ngx_int_t ngx_http_signalr_registry_conf(ngx_conf_t *cf,
    ngx_shm_zone_t *zone);
ngx_int_t ngx_http_signalr_registry_add(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_str_t *id, ngx_str_t *user, ngx_msec_t ttl);
ngx_int_t ngx_http_signalr_registry_attach(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_str_t *user, u_char *id, size_t id_size,
    ngx_uint_t kind, ngx_pid_t *owner, ngx_uint_t *owner_kind);
void ngx_http_signalr_registry_remove(ngx_shm_zone_t *zone,
    ngx_str_t *token);
ngx_uint_t ngx_http_signalr_registry_stateful(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_uint_t set);
ngx_int_t ngx_http_signalr_registry_negotiate(ngx_shm_zone_t *zone,
    ngx_str_t *token, ngx_str_t *id, ngx_str_t *user, ngx_msec_t ttl);

/* ngx_http_signalr_shm.c: partitions of a zone and their index */
#define NGX_HTTP_SIGNALR_MAX_PARTS  64

typedef struct {
    uint32_t                     hash;
    uint32_t                     ref;           /* offset / 8; 0: empty */
} ngx_http_signalr_slot_t;

typedef struct {
    ngx_http_signalr_slot_t     *slots;
    uint32_t                     mask;          /* slots - 1 */
    uint32_t                     n;
    u_char                      *base;          /* the zone's start */
} ngx_http_signalr_index_t;

typedef ngx_uint_t (*ngx_http_signalr_match_pt)(void *entry, void *key);

ngx_uint_t ngx_http_signalr_shm_pages(ngx_slab_pool_t *shpool);
ngx_uint_t ngx_http_signalr_shm_parts(ngx_cycle_t *cycle, ngx_uint_t pages);
ngx_int_t ngx_http_signalr_shm_split(ngx_slab_pool_t *shpool,
    ngx_uint_t keep, ngx_uint_t n, ngx_slab_pool_t **parts);
void ngx_http_signalr_shm_done(ngx_slab_pool_t *shpool, ngx_uint_t n,
    ngx_slab_pool_t **parts);
ngx_uint_t ngx_http_signalr_shm_own(ngx_uint_t nparts);
size_t ngx_http_signalr_shm_apart(size_t size);
void ngx_http_signalr_index_init(ngx_http_signalr_index_t *idx,
    u_char *base);
void *ngx_http_signalr_index_find(ngx_http_signalr_index_t *idx,
    uint32_t hash, ngx_http_signalr_match_pt match, void *key);
ngx_int_t ngx_http_signalr_index_insert(ngx_http_signalr_index_t *idx,
    ngx_slab_pool_t *pool, uint32_t hash, void *entry);
void ngx_http_signalr_index_move(ngx_http_signalr_index_t *idx,
    uint32_t hash, void *entry, void *to);
void ngx_http_signalr_index_delete(ngx_http_signalr_index_t *idx,
    uint32_t hash, void *entry);


#endif /* _NGX_HTTP_SIGNALR_MODULE_H_INCLUDED_ */
