/*
 * The link between an nginx worker and the daemon: one Unix-socket
 * stream per worker, carrying every connection of that worker.
 * docs/ipc.md is the specification; this is its only implementation.
 *
 * Frame layout, all integers big-endian:
 *
 *   u32  length     bytes that follow this field
 *   u8   type       SR_IPC_*
 *   u8   flags      0; receivers ignore bits they do not know
 *   u16  conn_len   length of the connection id, 0 for link frames
 *   ...  conn_id    conn_len bytes of ASCII
 *   ...  body       length - 4 - conn_len bytes, per type
 *
 * The first frame each way is HELLO; a peer that sees another version
 * than its own closes the link.
 */

#ifndef SIGNALR_IPC_H
#define SIGNALR_IPC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <signalr/buf.h>
#include <signalr/error.h>
#include <signalr/hub_message.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_IPC_VERSION        1
#define SR_IPC_HEADER_SIZE    8             /* length, type, flags, len */
#define SR_IPC_MAX_FRAME      (16u << 20)   /* default receive bound */
#define SR_IPC_MAX_CONN_ID    255

typedef enum {
    SR_IPC_HELLO = 1,       /* both ways, link */
    SR_IPC_OPEN = 2,        /* worker: a connection completed handshake */
    SR_IPC_CLOSED = 3,      /* worker: a connection ended */
    SR_IPC_INVOKE = 4,      /* worker: a hub message from a client */
    SR_IPC_SEND = 5,        /* daemon: a hub message for one connection */
    SR_IPC_MULTICAST = 6,   /* daemon: one hub message, many connections */
    SR_IPC_CLOSE = 7,       /* daemon: end a connection */
    SR_IPC_PING = 8,        /* both ways, link liveness */
    SR_IPC_PONG = 9,
    SR_IPC_FORWARD = 10,    /* worker to worker through the daemon */
    SR_IPC_FORWARDED = 11   /* the answer to a FORWARD, the same way */
} sr_ipc_type_t;

/* A parsed frame; conn_id and body point into the input buffer. */
typedef struct {
    uint8_t               type;
    uint8_t               flags;
    const char           *conn_id;
    size_t                conn_id_len;
    const unsigned char  *body;
    size_t                body_len;
} sr_ipc_frame_t;

/*
 * Parses the frame at the front of buf. SR_OK with *frame and *consumed;
 * SR_AGAIN for a partial frame; SR_ERR_TOO_LARGE for a length over
 * max_frame (0 means SR_IPC_MAX_FRAME); SR_ERR_PROTOCOL for a length
 * too short for its header or conn_len.
 */
int sr_ipc_parse(const unsigned char *buf, size_t len, size_t max_frame,
    sr_ipc_frame_t *frame, size_t *consumed, sr_error_t *err);

/* Appends one frame. SR_ERR_INVALID for a connection id over 255. */
int sr_ipc_write(sr_buf_t *out, sr_ipc_type_t type, const char *conn_id,
    size_t conn_id_len, const void *body, size_t body_len,
    sr_error_t *err);

/*
 * For a body built in place: sr_ipc_begin() appends a header with a
 * placeholder length and returns its offset in out; the caller appends
 * the body; sr_ipc_end() patches the length.
 */
int sr_ipc_begin(sr_buf_t *out, sr_ipc_type_t type, const char *conn_id,
    size_t conn_id_len, size_t *offset, sr_error_t *err);
int sr_ipc_end(sr_buf_t *out, size_t offset, sr_error_t *err);

/* HELLO body: a MessagePack map {"version", "pid", "node"}. */
typedef struct {
    uint32_t     version;
    int64_t      pid;
    char        *node;       /* owned; host or instance name, may be NULL */
} sr_ipc_hello_t;

/*
 * OPEN body: a MessagePack map {"hub", "user", "protocol", "transport",
 * "claims"}; claims is a map of the token claims the hubs need.
 */
typedef struct {
    char           *hub;        /* owned */
    char           *user;       /* owned */
    sr_protocol_t   protocol;
    char           *transport;  /* owned: "WebSockets", ... */
    json_t         *claims;     /* owned object, or NULL */
} sr_ipc_open_t;

/* CLOSE body: a MessagePack map {"error", "allowReconnect"}. */
typedef struct {
    char  *error;               /* owned, or NULL */
    int    allow_reconnect;
} sr_ipc_close_t;

int sr_ipc_hello_encode(const sr_ipc_hello_t *hello, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_hello_decode(const unsigned char *body, size_t len,
    sr_ipc_hello_t *hello, sr_error_t *err);
void sr_ipc_hello_clear(sr_ipc_hello_t *hello);

int sr_ipc_open_encode(const sr_ipc_open_t *open, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_open_decode(const unsigned char *body, size_t len,
    sr_ipc_open_t *open, sr_error_t *err);
void sr_ipc_open_clear(sr_ipc_open_t *open);

int sr_ipc_close_encode(const sr_ipc_close_t *close, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_close_decode(const unsigned char *body, size_t len,
    sr_ipc_close_t *close, sr_error_t *err);
void sr_ipc_close_clear(sr_ipc_close_t *close);

/*
 * INVOKE and SEND bodies are one hub message in the SignalR MessagePack
 * encoding, unframed: a worker forwards a MessagePack client's payload
 * as it came, and a JSON client's after one re-encoding.
 *
 * MULTICAST body:
 *
 *   u16  count
 *   count times:  u8 id_len, id_len bytes of connection id
 *   ...  the hub message, as in SEND
 *
 * sr_ipc_multicast_begin() appends the frame header and the id list and
 * returns the offset for sr_ipc_end(); the caller then appends the
 * message. sr_ipc_multicast_parse() checks the list and points *ids at
 * it, *message at the hub message; walk the ids with
 * sr_ipc_multicast_next().
 */
int sr_ipc_multicast_begin(sr_buf_t *out, const char *const *ids,
    const size_t *id_lens, size_t count, size_t *offset, sr_error_t *err);

typedef struct {
    const unsigned char  *next;
    size_t                left;       /* ids not yet returned */
} sr_ipc_id_iter_t;

int sr_ipc_multicast_parse(const unsigned char *body, size_t len,
    sr_ipc_id_iter_t *ids, const unsigned char **message,
    size_t *message_len, sr_error_t *err);

/* Returns 1 and sets *id, *id_len while ids remain, then 0. */
int sr_ipc_multicast_next(sr_ipc_id_iter_t *ids, const char **id,
    size_t *id_len);

/*
 * FORWARD and FORWARDED: an HTTP request of a connection that reached a
 * worker other than the one holding the connection, and its answer,
 * relayed by the daemon (docs/transports.md). Body, integers big-endian:
 *
 *   u32  pid     sent by a worker: the worker to deliver to; delivered
 *                by the daemon: the worker it came from
 *   u32  seq     chosen by the asking worker, copied into the answer
 *   u16  code    FORWARD: SR_IPC_FORWARD_*; FORWARDED: an HTTP status
 *   u8   flags   FORWARDED: SR_IPC_FORWARDED_BINARY; else 0
 *   ...  data    FORWARD: the request body; FORWARDED: the answer body
 *
 * The frame's connection id is the connection's. sr_ipc_relay_write()
 * appends a whole frame (SR_ERR_INVALID for another type or no id);
 * sr_ipc_relay_parse() points relay->data into body.
 */
#define SR_IPC_RELAY_HEADER       11

#define SR_IPC_FORWARD_SEND       1     /* HTTP POST: hub messages */
#define SR_IPC_FORWARD_POLL       2     /* a long poll */
#define SR_IPC_FORWARD_DELETE     3     /* HTTP DELETE: end it */

#define SR_IPC_FORWARDED_BINARY   0x01

typedef struct {
    uint32_t              pid;
    uint32_t              seq;
    uint16_t              code;
    uint8_t               flags;
    const unsigned char  *data;
    size_t                data_len;
} sr_ipc_relay_t;

int sr_ipc_relay_write(sr_buf_t *out, sr_ipc_type_t type,
    const char *conn_id, size_t conn_id_len, const sr_ipc_relay_t *relay,
    sr_error_t *err);
int sr_ipc_relay_parse(const unsigned char *body, size_t len,
    sr_ipc_relay_t *relay, sr_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_IPC_H */
