/*
 * RFC 6455 framing, both sides: an incremental frame parser that
 * reassembles fragmented messages and validates UTF-8 in text messages,
 * header writers for server (unmasked) and client (masked) frames, and
 * the opening-handshake accept key.
 */

#ifndef SIGNALR_WEBSOCKET_H
#define SIGNALR_WEBSOCKET_H

#include <stddef.h>
#include <stdint.h>

#include <signalr/buf.h>
#include <signalr/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_WS_OP_CONTINUATION  0x0
#define SR_WS_OP_TEXT          0x1
#define SR_WS_OP_BINARY        0x2
#define SR_WS_OP_CLOSE         0x8
#define SR_WS_OP_PING          0x9
#define SR_WS_OP_PONG          0xa

#define SR_WS_CLOSE_NORMAL            1000
#define SR_WS_CLOSE_GOING_AWAY        1001
#define SR_WS_CLOSE_PROTOCOL_ERROR    1002
#define SR_WS_CLOSE_UNSUPPORTED       1003
#define SR_WS_CLOSE_NO_STATUS         1005
#define SR_WS_CLOSE_INVALID_PAYLOAD   1007
#define SR_WS_CLOSE_POLICY            1008
#define SR_WS_CLOSE_TOO_BIG           1009
#define SR_WS_CLOSE_INTERNAL_ERROR    1011

/* Largest frame header: 2 + 8 bytes of length + 4 bytes of mask. */
#define SR_WS_MAX_HEADER  14

/* Length of the Sec-WebSocket-Accept value, without NUL. */
#define SR_WS_ACCEPT_LEN  28

typedef enum {
    SR_WS_ROLE_SERVER = 0,   /* peer is a client: frames must be masked */
    SR_WS_ROLE_CLIENT = 1    /* peer is a server: frames must not be */
} sr_ws_role_t;

/* What sr_ws_parser_feed() hands back: a whole message or a control
 * frame. data stays valid until the next call on the parser. */
typedef struct {
    int                   opcode;  /* TEXT, BINARY, CLOSE, PING, PONG */
    const unsigned char  *data;
    size_t                len;
    int                   close_code;   /* CLOSE: code, or 1005 if none */
} sr_ws_event_t;

typedef struct {
    sr_ws_role_t   role;
    size_t         max_message;    /* reassembled bound; 0: unbounded */

    /* private state below */
    unsigned char  header[SR_WS_MAX_HEADER];
    size_t         header_len;
    int            in_frame;
    int            fin;
    int            opcode;
    int            masked;
    unsigned char  mask[4];
    uint64_t       remaining;
    uint64_t       frame_offset;
    int            message_opcode;  /* of the fragmented message, or 0 */
    uint32_t       utf8_state;
    uint32_t       utf8_codepoint;
    sr_buf_t       message;
    sr_buf_t       control;
} sr_ws_parser_t;

void sr_ws_parser_init(sr_ws_parser_t *p, sr_ws_role_t role,
    size_t max_message);
void sr_ws_parser_free(sr_ws_parser_t *p);

/*
 * Consumes input from data[0, len) until one event is complete or the
 * input is used up. *consumed says how many bytes were taken.
 *
 * SR_OK: *ev holds an event; call again with the rest of the input.
 * SR_AGAIN: all input taken, no event yet.
 * Negative: the connection must be closed; err->code is the failure kind
 * and *close_code the RFC 6455 status to send (1002 for framing
 * violations and unmasked client frames, 1007 for invalid UTF-8, 1009
 * for a message over max_message).
 */
int sr_ws_parser_feed(sr_ws_parser_t *p, const unsigned char *data,
    size_t len, size_t *consumed, sr_ws_event_t *ev, int *close_code,
    sr_error_t *err);

/*
 * Writes a frame header for a payload of len bytes into out
 * (SR_WS_MAX_HEADER bytes of room) and returns its length. A client
 * passes a mask key and must mask the payload with sr_ws_mask().
 */
size_t sr_ws_write_header(unsigned char *out, int fin, int opcode,
    uint64_t len, const unsigned char *mask);

/* Appends a whole frame (header and payload, masked when mask != NULL). */
int sr_ws_write_frame(sr_buf_t *out, int opcode, const unsigned char *data,
    size_t len, const unsigned char *mask);

/* Appends a close frame with code and a reason of at most 123 bytes. */
int sr_ws_write_close(sr_buf_t *out, int code, const char *reason,
    const unsigned char *mask);

/* XORs data with mask, starting offset bytes into the mask cycle. */
void sr_ws_mask(unsigned char *data, size_t len, const unsigned char *mask,
    uint64_t offset);

/*
 * Computes the Sec-WebSocket-Accept value for a Sec-WebSocket-Key into
 * out (SR_WS_ACCEPT_LEN characters and a NUL). SR_ERR_PROTOCOL when the
 * key is not 16 bytes of base64.
 */
int sr_ws_accept_key(const char *key, size_t key_len,
    char out[SR_WS_ACCEPT_LEN + 1], sr_error_t *err);

/* Whether data[0, len) is complete, well-formed UTF-8. */
int sr_utf8_valid(const unsigned char *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_WEBSOCKET_H */
