/*
 * What every hub codec fuzzer checks once a message decoded: it must
 * encode in both protocols, and each encoding must decode back to the
 * same envelope and values. A broken promise aborts, which libFuzzer
 * reports as a crash with the input kept.
 */

#ifndef SIGNALR_FUZZ_COMMON_H
#define SIGNALR_FUZZ_COMMON_H

#include <stdlib.h>

#include <signalr/hub_message.h>

#include "../src/hub_codec_internal.h"


static void
fuzz_check(int ok)
{
    if (!ok) {
        abort();
    }
}


/* Encodes msg framed in protocol and decodes it back into out. */
static void
fuzz_reencode(sr_protocol_t protocol, const sr_message_t *msg,
    sr_message_t *out)
{
    size_t      used;
    sr_buf_t    buf;
    sr_error_t  err;

    sr_buf_init(&buf);

    fuzz_check(sr_message_encode(protocol, msg, &buf, &err) == SR_OK);
    fuzz_check(sr_message_decode(protocol, buf.data, buf.len, NULL, out,
                                 &used, &err) == SR_OK);
    fuzz_check(used == buf.len);

    sr_buf_free(&buf);
}


static void
fuzz_round_trip(const sr_message_t *msg)
{
    int           p;
    sr_message_t  once, twice;

    for (p = 0; p < SR_PROTOCOL_COUNT; p++) {
        fuzz_reencode(p, msg, &once);
        fuzz_check(sr_hub_message_equal(msg, &once));

        /* and on through the other protocol */
        fuzz_reencode(!p, &once, &twice);
        fuzz_check(sr_hub_message_equal(msg, &twice));

        sr_message_clear(&once);
        sr_message_clear(&twice);
    }
}


/*
 * Decodes data as a stream of framed messages in protocol, as a
 * connection would, checking each message that decodes.
 */
static void
fuzz_stream(sr_protocol_t protocol, const unsigned char *data, size_t size,
    const sr_limits_t *limits)
{
    int           rc;
    size_t        used;
    sr_error_t    err;
    sr_message_t  msg;

    for ( ;; ) {
        used = 0;
        sr_error_clear(&err);

        rc = sr_message_decode(protocol, data, size, limits, &msg, &used,
                               &err);

        if (rc == SR_OK) {
            fuzz_round_trip(&msg);
            sr_message_clear(&msg);

        } else {
            /* refused input comes with a reason */
            fuzz_check(rc == SR_AGAIN || err.str[0] != '\0');
        }

        if (used == 0 || used > size) {
            fuzz_check(used <= size);
            return;
        }

        data += used;
        size -= used;
    }
}

#endif /* SIGNALR_FUZZ_COMMON_H */
