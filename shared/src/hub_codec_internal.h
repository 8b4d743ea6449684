/*
 * Internal: the pieces the hub message codec shares between its JSON and
 * MessagePack halves (hub_json.c, hub_msgpack.c) and the dispatch in
 * hub_message.c. Not installed; tests and fuzzers include it by path.
 */

#ifndef SIGNALR_HUB_CODEC_INTERNAL_H
#define SIGNALR_HUB_CODEC_INTERNAL_H

#include <stddef.h>

#include <signalr/buf.h>
#include <signalr/error.h>
#include <signalr/websocket.h>
#include <signalr/hub_message.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Deepest nesting of arrays, maps and objects in one message payload,
 * the message's own array or object counting as level 1. msgpack-c's
 * unpacker cannot go deeper than 32 levels, so the JSON decoder applies
 * the same bound: whatever one encoding accepts, the other can carry.
 * Exceeding it is SR_ERR_TOO_LARGE.
 */
#define SR_HUB_MAX_DEPTH  32

/* The largest MessagePack frame the spec allows: 2 GiB - 1. */
#define SR_MSGPACK_MAX_FRAME  0x7fffffffu

/*
 * The decoders of one unframed payload. On success msg holds the
 * message (limits not yet applied); on failure msg may hold parts of
 * it and the caller clears it.
 */
int sr_hub_json_decode(const unsigned char *payload, size_t len,
    sr_message_t *msg, sr_error_t *err);
int sr_hub_msgpack_decode(const unsigned char *payload, size_t len,
    sr_message_t *msg, sr_error_t *err);

/*
 * The encoders of one unframed payload, for a message already checked
 * by sr_hub_check_encodable(). They append to out and leave it as it was
 * on failure.
 */
int sr_hub_json_encode(const sr_message_t *msg, sr_buf_t *out,
    sr_error_t *err);
int sr_hub_msgpack_encode(const sr_message_t *msg, sr_buf_t *out,
    sr_error_t *err);

/* SR_ERR_TOO_LARGE when a decoded msg breaks a bound of limits. */
int sr_hub_check_limits(const sr_message_t *msg, const sr_limits_t *limits,
    sr_error_t *err);

/* SR_ERR_INVALID when msg lacks what its type requires or holds values
 * that neither encoding can carry. */
int sr_hub_check_encodable(const sr_message_t *msg, sr_error_t *err);

/*
 * Walks the one MessagePack value at the front of buf[0, len) without
 * allocating: every declared length must fit in what is left, and
 * nesting stays within SR_HUB_MAX_DEPTH. On SR_OK *end is the offset
 * just past the value. SR_ERR_PROTOCOL for a truncated or malformed
 * value, SR_ERR_TOO_LARGE for nesting too deep.
 */
int sr_msgpack_scan(const unsigned char *buf, size_t len, size_t *end,
    sr_error_t *err);

/* A NUL-terminated malloc'ed copy of s[0, len), or NULL. */
char *sr_hub_strndup(const char *s, size_t len);

/* 1 when a and b carry the same envelope and values, 0 otherwise. */
int sr_hub_message_equal(const sr_message_t *a, const sr_message_t *b);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_HUB_CODEC_INTERNAL_H */
