/*
 * Internal: a MessagePack hub message turned into its JSON text in one
 * pass over its bytes, for sr_fanout_framed(). Not installed.
 */

#ifndef SIGNALR_HUB_TRANSCODE_H
#define SIGNALR_HUB_TRANSCODE_H

#include <stddef.h>

#include <signalr/buf.h>
#include <signalr/error.h>

/*
 * Appends the JSON payload (no record separator) of the one unframed
 * MessagePack hub message payload[0, len) to out. SR_OK; SR_ERR_NOMEM;
 * or SR_ERR_UNSUPPORTED when the message holds anything this pass
 * leaves to the full codec (sr_message_decode_payload() and
 * sr_message_encode()), which then gives the definitive answer: values
 * JSON cannot carry, text that is not valid UTF-8, malformed input. On
 * failure out is left as it was.
 */
int sr_hub_transcode_msgpack_json(const unsigned char *payload, size_t len,
    sr_buf_t *out, sr_error_t *err);

#endif /* SIGNALR_HUB_TRANSCODE_H */
