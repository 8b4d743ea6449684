/*
 * Fuzzes the MessagePack hub protocol decoder: the input as one
 * unframed message, then as a stream of varint-framed ones. Whatever
 * decodes must survive re-encoding in both protocols unchanged, and the
 * one-pass JSON writer (hub_transcode.c) must agree with the full
 * codec on every input it accepts.
 */

#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "../src/hub_transcode.h"


/* the one-pass JSON, when written, is the full codec's, value for value */
static void
fuzz_transcode(const uint8_t *data, size_t size, const sr_message_t *msg,
    int decoded)
{
    int         rc;
    json_t     *fast, *full;
    sr_buf_t    out, expected;
    sr_error_t  err;

    sr_buf_init(&out);
    sr_buf_init(&expected);

    rc = sr_hub_transcode_msgpack_json(data, size, &out, &err);
    fuzz_check(rc == SR_OK || rc == SR_ERR_UNSUPPORTED);

    if (rc != SR_OK) {
        fuzz_check(out.len == 0);
        sr_buf_free(&out);
        return;
    }

    fuzz_check(decoded);
    fuzz_check(sr_message_encode_payload(SR_PROTOCOL_JSON, msg, &expected,
                                         &err) == SR_OK);

    fast = json_loadb((const char *) out.data, out.len, 0, NULL);
    full = json_loadb((const char *) expected.data, expected.len, 0, NULL);

    fuzz_check(fast != NULL && full != NULL && json_equal(fast, full));

    json_decref(fast);
    json_decref(full);
    sr_buf_free(&out);
    sr_buf_free(&expected);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           decoded;
    sr_error_t    err;
    sr_limits_t   limits = { 4096, 64, 16 };
    sr_message_t  msg;

    decoded = sr_message_decode_payload(SR_PROTOCOL_MSGPACK, data, size,
                                        NULL, &msg, &err) == SR_OK;

    fuzz_transcode(data, size, &msg, decoded);

    if (decoded) {
        fuzz_round_trip(&msg);
        sr_message_clear(&msg);
    }

    fuzz_stream(SR_PROTOCOL_MSGPACK, data, size, &limits);

    return 0;
}
