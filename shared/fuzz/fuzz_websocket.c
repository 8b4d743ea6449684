/*
 * Fuzzes the WebSocket parser as a server meets client bytes. The
 * first two input bytes pick max_message (0: unbounded), the third
 * seeds the chunk sizes the rest is fed in, so that every frame is also
 * met split at random places. Each event must keep the parser's
 * promises: within the bound, UTF-8 text, a valid close code.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <signalr/websocket.h>


static void
fuzz_expect(int ok)
{
    if (!ok) {
        abort();
    }
}


static void
fuzz_check_event(const sr_ws_event_t *ev, size_t max_message)
{
    switch (ev->opcode) {
    case SR_WS_OP_TEXT:
        fuzz_expect(sr_utf8_valid(ev->data, ev->len));
        /* fall through */
    case SR_WS_OP_BINARY:
        fuzz_expect(max_message == 0 || ev->len <= max_message);
        break;

    case SR_WS_OP_CLOSE:
        fuzz_expect(ev->close_code == SR_WS_CLOSE_NO_STATUS
                    || (ev->close_code >= 1000 && ev->close_code <= 4999));
        fuzz_expect(ev->len <= 123);
        fuzz_expect(sr_utf8_valid(ev->data, ev->len));
        break;

    case SR_WS_OP_PING:
    case SR_WS_OP_PONG:
        fuzz_expect(ev->len <= 125);
        break;

    default:
        fuzz_expect(0);
    }
}


/* Feeds one chunk, held in an exact-size copy so over-reads show. */
static int
fuzz_feed(sr_ws_parser_t *p, const uint8_t *data, size_t len,
    size_t max_message)
{
    unsigned char  *piece;
    sr_ws_event_t   ev;
    sr_error_t      err;
    size_t          off, consumed;
    int             rc, close_code;

    piece = malloc(len);
    fuzz_expect(piece != NULL);
    memcpy(piece, data, len);

    off = 0;
    rc = SR_AGAIN;

    while (off < len) {
        rc = sr_ws_parser_feed(p, piece + off, len - off, &consumed, &ev,
                               &close_code, &err);
        fuzz_expect(consumed <= len - off);
        off += consumed;

        if (rc < 0) {
            fuzz_expect(close_code == SR_WS_CLOSE_PROTOCOL_ERROR
                        || close_code == SR_WS_CLOSE_INVALID_PAYLOAD
                        || close_code == SR_WS_CLOSE_TOO_BIG
                        || close_code == SR_WS_CLOSE_INTERNAL_ERROR);
            fuzz_expect(err.str[0] != '\0');
            break;
        }

        if (rc == SR_AGAIN) {
            fuzz_expect(off == len);
            break;
        }

        fuzz_expect(rc == SR_OK);
        fuzz_check_event(&ev, max_message);
    }

    free(piece);

    return rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_ws_parser_t  p;
    uint32_t        rng;
    size_t          max_message, pos, chunk;
    int             rc;

    if (size < 3) {
        return 0;
    }

    max_message = (size_t) data[0] << 8 | data[1];
    rng = data[2] * 2654435761u + 1;
    data += 3;
    size -= 3;

    sr_ws_parser_init(&p, SR_WS_ROLE_SERVER, max_message);

    pos = 0;
    rc = SR_AGAIN;

    while (pos < size && rc >= 0) {
        rng = rng * 1103515245u + 12345u;
        chunk = 1 + (rng >> 16) % 64;

        if (chunk > size - pos) {
            chunk = size - pos;
        }

        rc = fuzz_feed(&p, data + pos, chunk, max_message);
        pos += chunk;
    }

    sr_ws_parser_free(&p);

    return 0;
}
