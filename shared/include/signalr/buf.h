/*
 * A growable byte buffer, the output type of every encoder.
 *
 * Encoders append; they never truncate what the caller already holds.
 * On SR_ERR_NOMEM the buffer keeps its previous contents.
 */

#ifndef SIGNALR_BUF_H
#define SIGNALR_BUF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    unsigned char  *data;
    size_t          len;
    size_t          cap;
} sr_buf_t;

void sr_buf_init(sr_buf_t *buf);
void sr_buf_free(sr_buf_t *buf);

/* Sets len to 0 and keeps the allocation for reuse. */
void sr_buf_reset(sr_buf_t *buf);

/* Makes room for extra more bytes. SR_OK or SR_ERR_NOMEM. */
int sr_buf_reserve(sr_buf_t *buf, size_t extra);

int sr_buf_append(sr_buf_t *buf, const void *data, size_t len);
int sr_buf_append_byte(sr_buf_t *buf, unsigned char byte);

/* Drops the first n bytes (all of them when n >= len). */
void sr_buf_consume(sr_buf_t *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* SIGNALR_BUF_H */
