/*
 * Fuzzes the JSON hub protocol decoder: the input as one unframed
 * message, then as a stream of framed ones. Whatever decodes must
 * survive re-encoding in both protocols unchanged.
 */

#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_error_t    err;
    sr_limits_t   limits = { 4096, 64, 16 };
    sr_message_t  msg;

    if (sr_message_decode_payload(SR_PROTOCOL_JSON, data, size, NULL, &msg,
                                  &err) == SR_OK)
    {
        fuzz_round_trip(&msg);
        sr_message_clear(&msg);
    }

    fuzz_stream(SR_PROTOCOL_JSON, data, size, &limits);

    return 0;
}
