/*
 * The negotiate response (aspnetcore src/SignalR/docs/specs/
 * TransportProtocols.md) and the random identifiers it hands out.
 */

#ifndef SIGNALR_NEGOTIATE_H
#define SIGNALR_NEGOTIATE_H

#include <stddef.h>

#include <signalr/buf.h>
#include <signalr/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SR_TRANSPORT_WEBSOCKETS    0x01
#define SR_TRANSPORT_SSE           0x02
#define SR_TRANSPORT_LONG_POLLING  0x04

/* 16 random bytes in unpadded base64url: 22 characters. */
#define SR_RANDOM_ID_LEN  22

typedef struct {
    int          version;            /* 0 or 1 */
    const char  *connection_id;
    const char  *connection_token;   /* ignored for version 0 */
    unsigned     transports;         /* SR_TRANSPORT_* bits */
    int          stateful_reconnect; /* adds "useStatefulReconnect" */
} sr_negotiate_response_t;

/*
 * Appends the negotiate JSON body. WebSockets and Long Polling are
 * offered with the Text and Binary transfer formats, Server-Sent Events
 * with Text only. SR_ERR_INVALID for an unknown version or no transport.
 */
int sr_negotiate_write(const sr_negotiate_response_t *res, sr_buf_t *out,
    sr_error_t *err);

/*
 * Parses the "negotiateVersion" query value of a negotiate request:
 * absent (NULL) or "0" gives 0, "1" or higher gives 1 (the highest this
 * library speaks). SR_ERR_PROTOCOL for anything else.
 */
int sr_negotiate_version(const char *value, size_t len, int *version,
    sr_error_t *err);

/*
 * Writes SR_RANDOM_ID_LEN characters and a NUL to out, from the kernel's
 * random source. SR_ERR_IO if it could not be read.
 */
int sr_random_id(char out[SR_RANDOM_ID_LEN + 1], sr_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_NEGOTIATE_H */
