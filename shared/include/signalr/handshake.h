/*
 * The SignalR handshake: one JSON object each way, terminated by 0x1E.
 *
 *   request   {"protocol":"json","version":1}
 *   response  {}  or  {"error":"..."}
 */

#ifndef SIGNALR_HANDSHAKE_H
#define SIGNALR_HANDSHAKE_H

#include <stddef.h>

#include <signalr/buf.h>
#include <signalr/error.h>
#include <signalr/hub_message.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    sr_protocol_t  protocol;
    int            version;
} sr_handshake_request_t;

/*
 * Parses the handshake request at the front of buf.
 *
 * SR_OK: *req is filled and *consumed counts the request with its
 * separator; bytes after it are hub messages. SR_AGAIN: no separator yet
 * (and fewer than max_len bytes). SR_ERR_TOO_LARGE: max_len bytes without
 * a separator. SR_ERR_UNSUPPORTED: a well-formed request naming a
 * protocol or version this library does not speak; err->str is suitable
 * for the client, e.g. "The protocol 'xml' is not supported.".
 * SR_ERR_PROTOCOL: anything else malformed.
 */
int sr_handshake_parse_request(const unsigned char *buf, size_t len,
    size_t max_len, sr_handshake_request_t *req, size_t *consumed,
    sr_error_t *err);

/* Appends the request a client sends, separator included. */
int sr_handshake_write_request(sr_buf_t *out, sr_protocol_t protocol);

/* Appends "{}\x1e", or {"error":...}\x1e when error is not NULL. */
int sr_handshake_write_response(sr_buf_t *out, const char *error);

/*
 * Parses a handshake response (a client's view, for tests and the
 * benchmark). SR_OK with *server_error set to a malloc'ed copy of the
 * server's error, or NULL for success; SR_AGAIN; SR_ERR_PROTOCOL.
 */
int sr_handshake_parse_response(const unsigned char *buf, size_t len,
    char **server_error, size_t *consumed, sr_error_t *err);

/* The name a protocol has in the handshake: "json" or "messagepack". */
const char *sr_protocol_name(sr_protocol_t protocol);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_HANDSHAKE_H */
