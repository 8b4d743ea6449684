/*
 * Fuzzes the handshake as a server meets it: a request, then hub
 * messages in the protocol it picked. Also reads the input as a
 * server's response, as a client would.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <signalr/handshake.h>

#include "fuzz_common.h"


static void
fuzz_request(const uint8_t *data, size_t size)
{
    int                     rc;
    size_t                  consumed, again;
    sr_buf_t                out;
    sr_error_t              err;
    sr_handshake_request_t  req, back;

    sr_error_clear(&err);
    rc = sr_handshake_parse_request(data, size, 1024, &req, &consumed, &err);

    if (rc != SR_OK) {
        fuzz_check(rc == SR_AGAIN || err.str[0] != '\0');

        /* what is refused must be answerable to the client */
        if (rc == SR_ERR_UNSUPPORTED) {
            sr_buf_init(&out);
            fuzz_check(sr_handshake_write_response(&out, err.str) == SR_OK);
            sr_buf_free(&out);
        }

        return;
    }

    fuzz_check(consumed <= size && data[consumed - 1] == SR_RECORD_SEPARATOR);

    sr_buf_init(&out);
    fuzz_check(sr_handshake_write_request(&out, req.protocol) == SR_OK);
    fuzz_check(sr_handshake_parse_request(out.data, out.len, 1024, &back,
                                          &again, &err) == SR_OK);
    fuzz_check(back.protocol == req.protocol && again == out.len);
    sr_buf_free(&out);

    fuzz_stream(req.protocol, data + consumed, size - consumed, NULL);
}


static void
fuzz_response(const uint8_t *data, size_t size)
{
    int         rc;
    size_t      consumed;
    char       *server_error;
    sr_buf_t    out;
    sr_error_t  err;

    rc = sr_handshake_parse_response(data, size, &server_error, &consumed,
                                     &err);
    if (rc != SR_OK) {
        return;
    }

    /* a server's error read back is written out the same way */
    sr_buf_init(&out);
    fuzz_check(sr_handshake_write_response(&out, server_error) == SR_OK);
    sr_buf_free(&out);

    free(server_error);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_request(data, size);
    fuzz_response(data, size);

    return 0;
}
