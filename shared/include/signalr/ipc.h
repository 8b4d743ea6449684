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
    SR_IPC_FORWARDED = 11,  /* the answer to a FORWARD, the same way */
    SR_IPC_DETACH = 12,     /* worker: hold this connection's messages */
    SR_IPC_RELEASE = 13,    /* daemon: nothing more follows DETACH */
    SR_IPC_PARK = 14,       /* worker: the state of a parked connection */
    SR_IPC_RESUME = 15,     /* worker, link: a client came back */
    SR_IPC_ADOPT = 16,      /* daemon: the answer, the connection's state */
    SR_IPC_RESUME_FAILED = 17, /* daemon, link: nothing to resume */
    SR_IPC_SUSPEND = 18     /* daemon: the client came back elsewhere */
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

/*
 * As sr_ipc_open_encode(), plus a "token" key when token is not NULL:
 * the connection token of a stateful connection, so that the daemon
 * finds it when its client comes back elsewhere (docs/ipc.md,
 * "Parking"). sr_ipc_open_decode() ignores the key.
 */
int sr_ipc_open_encode_token(const sr_ipc_open_t *open, const char *token,
    sr_buf_t *out, sr_error_t *err);

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

/*
 * Stateful reconnect (docs/ipc.md, "Parking"; docs/reconnect.md).
 *
 * Bytes inside a decoded body: data points into the body passed to the
 * decoder, which must outlive the decoded struct.
 */
typedef struct {
    const unsigned char  *data;
    size_t                len;
} sr_ipc_bytes_t;

/*
 * DETACH body: a MessagePack map {"window_ms", "buffer_bytes"}, both
 * unsigned, both required. SUSPEND carries the same map (its values
 * are ignored; encode zeros). RELEASE has an empty body.
 */
typedef struct {
    uint64_t  window_ms;
    uint64_t  buffer_bytes;
} sr_ipc_detach_t;

int sr_ipc_detach_encode(const sr_ipc_detach_t *detach, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_detach_decode(const unsigned char *body, size_t len,
    sr_ipc_detach_t *detach, sr_error_t *err);

/*
 * PARK body, the state of a parked connection: a MessagePack map
 *
 *   "token"         str     the negotiate connection token (a secret)
 *   "hub", "user", "protocol", "transport", "claims"   as in OPEN
 *   "received"      uint    trackable client messages received
 *   "first"         uint    sequence id of buffer[0] (sent + 1 if empty)
 *   "buffer"        [bin]   unacked trackable messages, IPC form,
 *                           oldest first
 *   "buffer_size"   uint    sum of the buffer's lengths
 *   "window_ms", "buffer_bytes"   uint, as in DETACH
 *   "pending"       [str]   invocation ids awaiting a Completion
 *   "exp"           int or nil   the token's expiry, unix seconds
 *   "ext"           bin or nil   worker-private, carried verbatim
 *
 * Unknown keys are ignored. The decoder requires token, hub, protocol,
 * first and buffer_size, refuses a buffer whose lengths do not add up
 * to buffer_size, and fills buffer[] and ext with pointers into body;
 * the strings, claims, and the buffer and pending arrays are owned and
 * freed by sr_ipc_state_clear(). The encoder reads only; it refuses
 * (SR_ERR_INVALID) a state without token, hub or protocol and, as the
 * decoder would, one whose buffer_size is not the sum.
 */
typedef struct {
    char            *token;         /* owned */
    sr_ipc_open_t    who;           /* owned fields, as in OPEN */
    uint64_t         received;
    uint64_t         first;
    sr_ipc_bytes_t  *buffer;        /* owned array */
    size_t           buffer_count;
    uint64_t         buffer_size;
    uint64_t         window_ms;
    uint64_t         buffer_bytes;
    char           **pending;       /* owned array of owned strings */
    size_t           pending_count;
    int              has_exp;
    int64_t          exp;
    sr_ipc_bytes_t   ext;           /* len 0 and data NULL when absent */
} sr_ipc_state_t;

int sr_ipc_state_encode(const sr_ipc_state_t *state, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_state_decode(const unsigned char *body, size_t len,
    sr_ipc_state_t *state, sr_error_t *err);
void sr_ipc_state_clear(sr_ipc_state_t *state);

/*
 * RESUME body (a link frame): a MessagePack map {"token": str,
 * "ref": uint}; ref is the worker's, copied into the answer.
 */
typedef struct {
    char      *token;               /* owned */
    uint64_t   ref;
} sr_ipc_resume_t;

int sr_ipc_resume_encode(const sr_ipc_resume_t *resume, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_resume_decode(const unsigned char *body, size_t len,
    sr_ipc_resume_t *resume, sr_error_t *err);
void sr_ipc_resume_clear(sr_ipc_resume_t *resume);

/*
 * ADOPT body (the frame's connection id is the connection's): a
 * MessagePack map {"ref": uint, "state": bin (a PARK body, verbatim),
 * "appended": [bin, ...] (hub messages, IPC form, kept while parked,
 * oldest first)}. The decoder points state and appended[] into body;
 * the appended array itself is owned, freed by sr_ipc_adopt_clear().
 */
typedef struct {
    uint64_t         ref;
    sr_ipc_bytes_t   state;
    sr_ipc_bytes_t  *appended;      /* owned array */
    size_t           appended_count;
} sr_ipc_adopt_t;

int sr_ipc_adopt_encode(const sr_ipc_adopt_t *adopt, sr_buf_t *out,
    sr_error_t *err);
int sr_ipc_adopt_decode(const unsigned char *body, size_t len,
    sr_ipc_adopt_t *adopt, sr_error_t *err);
void sr_ipc_adopt_clear(sr_ipc_adopt_t *adopt);

/* RESUME_FAILED body (a link frame): {"ref": uint, "reason": str}. */
typedef struct {
    uint64_t   ref;
    char      *reason;              /* owned, or NULL */
} sr_ipc_resume_failed_t;

int sr_ipc_resume_failed_encode(const sr_ipc_resume_failed_t *failed,
    sr_buf_t *out, sr_error_t *err);
int sr_ipc_resume_failed_decode(const unsigned char *body, size_t len,
    sr_ipc_resume_failed_t *failed, sr_error_t *err);
void sr_ipc_resume_failed_clear(sr_ipc_resume_failed_t *failed);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_IPC_H */
