#include <stdlib.h>
#include <string.h>

#include <signalr/buf.h>
#include <signalr/error.h>


void
sr_buf_init(sr_buf_t *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}


void
sr_buf_free(sr_buf_t *buf)
{
    free(buf->data);
    sr_buf_init(buf);
}


void
sr_buf_reset(sr_buf_t *buf)
{
    buf->len = 0;
}


int
sr_buf_reserve(sr_buf_t *buf, size_t extra)
{
    size_t          cap;
    unsigned char  *data;

    if (extra <= buf->cap - buf->len) {
        return SR_OK;
    }

    if (extra > (size_t) -1 / 2 - buf->len) {
        return SR_ERR_NOMEM;
    }

    /* grow geometrically so that appending byte by byte stays linear */
    cap = buf->cap ? buf->cap : 64;

    while (cap - buf->len < extra) {
        cap *= 2;
    }

    data = realloc(buf->data, cap);
    if (data == NULL) {
        return SR_ERR_NOMEM;
    }

    buf->data = data;
    buf->cap = cap;

    return SR_OK;
}


int
sr_buf_append(sr_buf_t *buf, const void *data, size_t len)
{
    if (len == 0) {
        return SR_OK;
    }

    if (sr_buf_reserve(buf, len) != SR_OK) {
        return SR_ERR_NOMEM;
    }

    memcpy(buf->data + buf->len, data, len);
    buf->len += len;

    return SR_OK;
}


int
sr_buf_append_byte(sr_buf_t *buf, unsigned char byte)
{
    return sr_buf_append(buf, &byte, 1);
}


void
sr_buf_consume(sr_buf_t *buf, size_t n)
{
    if (n >= buf->len) {
        buf->len = 0;
        return;
    }

    memmove(buf->data, buf->data + n, buf->len - n);
    buf->len -= n;
}
