/*
 * SignalR hub messages: one protocol-neutral form and its two encodings.
 *
 * The hub protocol (aspnetcore src/SignalR/docs/specs/HubProtocol.md)
 * defines message types 1 to 9. Both encodings are implemented here:
 *
 *   SR_PROTOCOL_JSON     a JSON object per message, each followed by the
 *                        record separator 0x1E;
 *   SR_PROTOCOL_MSGPACK  a MessagePack array per message, each preceded
 *                        by its length as a little-endian base-128 varint
 *                        of at most 5 bytes.
 *
 * Values (arguments, items, results, headers) are held as jansson values
 * in both cases, so one decoded message can be re-encoded in the other
 * protocol. MessagePack values without a JSON counterpart (bin, ext,
 * integers above INT64_MAX, non-string map keys) are refused with
 * SR_ERR_UNSUPPORTED.
 *
 * Thread safety: none needed; every function works on caller-owned data.
 */

#ifndef SIGNALR_HUB_MESSAGE_H
#define SIGNALR_HUB_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <signalr/buf.h>
#include <signalr/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_RECORD_SEPARATOR  0x1e

typedef enum {
    SR_PROTOCOL_JSON = 0,
    SR_PROTOCOL_MSGPACK = 1
} sr_protocol_t;

#define SR_PROTOCOL_COUNT  2

typedef enum {
    SR_MSG_INVOCATION = 1,
    SR_MSG_STREAM_ITEM = 2,
    SR_MSG_COMPLETION = 3,
    SR_MSG_STREAM_INVOCATION = 4,
    SR_MSG_CANCEL_INVOCATION = 5,
    SR_MSG_PING = 6,
    SR_MSG_CLOSE = 7,
    SR_MSG_ACK = 8,
    SR_MSG_SEQUENCE = 9
} sr_message_type_t;

/*
 * One hub message. Which fields are meaningful depends on type; the rest
 * are NULL or 0. The message owns every pointer it holds:
 * sr_message_clear() releases them (json_decref for jansson values).
 */
typedef struct {
    sr_message_type_t  type;

    json_t            *headers;         /* object of strings, or NULL */
    char              *invocation_id;   /* NULL when absent */
    char              *target;          /* types 1 and 4 */
    json_t            *arguments;       /* array; types 1 and 4 */
    json_t            *stream_ids;      /* array of strings, or NULL */

    json_t            *item;            /* type 2 */

    json_t            *result;          /* type 3: NULL when void; a JSON
                                           null is a present null result */
    char              *error;           /* types 3 and 7, or NULL */

    int                allow_reconnect; /* type 7 */
    uint64_t           sequence_id;     /* types 8 and 9 */
} sr_message_t;

/*
 * Bounds applied while decoding. A zero field means "no bound".
 * max_message_size counts the payload of one message, framing excluded.
 */
typedef struct {
    size_t  max_message_size;
    size_t  max_invocation_id;
    size_t  max_arguments;
} sr_limits_t;

/* Zeroes msg. */
void sr_message_init(sr_message_t *msg, sr_message_type_t type);

/* Releases what msg owns and zeroes it. Safe on an initialised message. */
void sr_message_clear(sr_message_t *msg);

/* The spec's name of a type ("Invocation", ...), or "unknown". */
const char *sr_message_type_name(int type);

/*
 * Finds the first framed message in buf[0, len) without decoding it.
 *
 * Returns SR_OK with *payload and *payload_len naming the message inside
 * buf (framing excluded) and *consumed the bytes to drop, framing
 * included; SR_AGAIN when buf holds only part of a message; or
 * SR_ERR_TOO_LARGE as soon as the message is known to exceed max_size
 * (0 means no bound), even before it is complete; or SR_ERR_PROTOCOL for
 * a malformed length prefix.
 */
int sr_frame_next(sr_protocol_t protocol, const unsigned char *buf,
    size_t len, size_t max_size, const unsigned char **payload,
    size_t *payload_len, size_t *consumed, sr_error_t *err);

/* Appends the framing of protocol around payload to out. */
int sr_frame_write(sr_protocol_t protocol, const unsigned char *payload,
    size_t len, sr_buf_t *out, sr_error_t *err);

/*
 * Decodes one unframed message. On SR_OK msg holds it and the caller
 * clears it later; on failure msg is left cleared and err says why,
 * e.g. "Completion has both result and error".
 *
 * Unknown message types are SR_ERR_UNSUPPORTED, so that a caller can
 * ignore them as the spec allows; every other violation is
 * SR_ERR_PROTOCOL, and a bound of limits (which may be NULL) exceeded
 * is SR_ERR_TOO_LARGE.
 */
int sr_message_decode_payload(sr_protocol_t protocol,
    const unsigned char *payload, size_t len, const sr_limits_t *limits,
    sr_message_t *msg, sr_error_t *err);

/*
 * sr_frame_next() followed by sr_message_decode_payload(): decodes the
 * first message of buf. *consumed is set on SR_OK only. Incremental use:
 * append input, call until SR_AGAIN, drop *consumed bytes after each
 * SR_OK.
 */
int sr_message_decode(sr_protocol_t protocol, const unsigned char *buf,
    size_t len, const sr_limits_t *limits, sr_message_t *msg,
    size_t *consumed, sr_error_t *err);

/* Appends msg to out unframed, or framed. SR_ERR_INVALID if msg lacks a
 * field its type requires. */
int sr_message_encode_payload(sr_protocol_t protocol,
    const sr_message_t *msg, sr_buf_t *out, sr_error_t *err);
int sr_message_encode(sr_protocol_t protocol, const sr_message_t *msg,
    sr_buf_t *out, sr_error_t *err);

/*
 * A message to be sent to many connections: encoded at most once per
 * protocol, on first demand, then shared.
 *
 * sr_fanout_init() takes ownership of msg's contents (msg is left
 * cleared). sr_fanout_framed() returns the framed encoding for protocol,
 * encoding it on the first call, or NULL with err set.
 * sr_fanout_init_encoded() starts from an already framed encoding in
 * protocol (copied), for a message that arrived encoded: the other
 * protocol is then produced by decoding it once (MessagePack to JSON:
 * written in one pass, without decoding, where it can be).
 * sr_fanout_init_payload() does the same from an unframed payload,
 * framed straight into the fan-out's own buffer.
 */
typedef struct {
    sr_message_t  msg;
    int           decoded;
    sr_buf_t      framed[SR_PROTOCOL_COUNT];
} sr_fanout_t;

void sr_fanout_init(sr_fanout_t *fanout, sr_message_t *msg);
int sr_fanout_init_encoded(sr_fanout_t *fanout, sr_protocol_t protocol,
    const unsigned char *payload, size_t len, sr_error_t *err);
int sr_fanout_init_payload(sr_fanout_t *fanout, sr_protocol_t protocol,
    const unsigned char *payload, size_t len, sr_error_t *err);
const sr_buf_t *sr_fanout_framed(sr_fanout_t *fanout,
    sr_protocol_t protocol, sr_error_t *err);
void sr_fanout_clear(sr_fanout_t *fanout);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_HUB_MESSAGE_H */
