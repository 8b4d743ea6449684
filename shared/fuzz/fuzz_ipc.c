/*
 * Fuzzes the worker-daemon link as either peer reads it: a stream of
 * frames, each body handed to every decoder. The first input byte picks
 * a receive bound. What decodes must encode and decode back the same.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <signalr/ipc.h>


static void
fuzz_expect(int ok)
{
    if (!ok) {
        abort();
    }
}


static int
fuzz_same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL)
           || (a != NULL && b != NULL && strcmp(a, b) == 0);
}


static void
fuzz_hello(const unsigned char *body, size_t len)
{
    sr_ipc_hello_t  hello, back;
    sr_error_t      err;
    sr_buf_t        buf;

    if (sr_ipc_hello_decode(body, len, &hello, &err) != SR_OK) {
        fuzz_expect(err.str[0] != '\0' && hello.node == NULL);
        return;
    }

    sr_buf_init(&buf);
    fuzz_expect(sr_ipc_hello_encode(&hello, &buf, &err) == SR_OK);
    fuzz_expect(sr_ipc_hello_decode(buf.data, buf.len, &back, &err)
                == SR_OK);
    fuzz_expect(back.version == hello.version && back.pid == hello.pid
                && fuzz_same_string(back.node, hello.node));

    sr_ipc_hello_clear(&back);
    sr_ipc_hello_clear(&hello);
    sr_buf_free(&buf);
}


static void
fuzz_open(const unsigned char *body, size_t len)
{
    sr_ipc_open_t  open, back;
    sr_error_t     err;
    sr_buf_t       buf;

    if (sr_ipc_open_decode(body, len, &open, &err) != SR_OK) {
        fuzz_expect(err.str[0] != '\0' && open.hub == NULL);
        return;
    }

    sr_buf_init(&buf);
    fuzz_expect(sr_ipc_open_encode(&open, &buf, &err) == SR_OK);
    fuzz_expect(sr_ipc_open_decode(buf.data, buf.len, &back, &err)
                == SR_OK);
    fuzz_expect(fuzz_same_string(back.hub, open.hub)
                && fuzz_same_string(back.user, open.user)
                && fuzz_same_string(back.transport, open.transport)
                && back.protocol == open.protocol
                && (back.claims == NULL) == (open.claims == NULL)
                && (open.claims == NULL
                    || json_equal(back.claims, open.claims)));

    sr_ipc_open_clear(&back);
    sr_ipc_open_clear(&open);
    sr_buf_free(&buf);
}


static void
fuzz_close(const unsigned char *body, size_t len)
{
    sr_ipc_close_t  close, back;
    sr_error_t      err;
    sr_buf_t        buf;

    if (sr_ipc_close_decode(body, len, &close, &err) != SR_OK) {
        fuzz_expect(err.str[0] != '\0' && close.error == NULL);
        return;
    }

    sr_buf_init(&buf);
    fuzz_expect(sr_ipc_close_encode(&close, &buf, &err) == SR_OK);
    fuzz_expect(sr_ipc_close_decode(buf.data, buf.len, &back, &err)
                == SR_OK);
    fuzz_expect(fuzz_same_string(back.error, close.error)
                && back.allow_reconnect == close.allow_reconnect);

    sr_ipc_close_clear(&back);
    sr_ipc_close_clear(&close);
    sr_buf_free(&buf);
}


static void
fuzz_multicast(const unsigned char *body, size_t len)
{
    const unsigned char  *message;
    sr_ipc_id_iter_t      ids;
    const char           *id;
    sr_error_t            err;
    size_t                id_len, message_len, count;

    if (sr_ipc_multicast_parse(body, len, &ids, &message, &message_len,
                               &err) != SR_OK)
    {
        return;
    }

    fuzz_expect(message > body && message + message_len == body + len);

    count = ids.left;

    while (sr_ipc_multicast_next(&ids, &id, &id_len)) {
        fuzz_expect(id_len > 0 && (const unsigned char *) id + id_len
                                  <= message);
        count--;
    }

    fuzz_expect(count == 0);
}


static int
fuzz_same_bytes(const sr_ipc_bytes_t *a, const sr_ipc_bytes_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}


static void
fuzz_detach(const unsigned char *body, size_t len)
{
    sr_ipc_detach_t  detach, back;
    sr_error_t       err;
    sr_buf_t         buf;

    if (sr_ipc_detach_decode(body, len, &detach, &err) != SR_OK) {
        fuzz_expect(err.str[0] != '\0');
        return;
    }

    sr_buf_init(&buf);
    fuzz_expect(sr_ipc_detach_encode(&detach, &buf, &err) == SR_OK);
    fuzz_expect(sr_ipc_detach_decode(buf.data, buf.len, &back, &err)
                == SR_OK);
    fuzz_expect(back.window_ms == detach.window_ms
                && back.buffer_bytes == detach.buffer_bytes);

    sr_buf_free(&buf);
}


static int
fuzz_same_state(const sr_ipc_state_t *a, const sr_ipc_state_t *b)
{
    size_t  i;

    if (!fuzz_same_string(a->token, b->token)
        || !fuzz_same_string(a->who.hub, b->who.hub)
        || !fuzz_same_string(a->who.user, b->who.user)
        || a->who.protocol != b->who.protocol
        || a->received != b->received || a->first != b->first
        || a->buffer_count != b->buffer_count
        || a->buffer_size != b->buffer_size
        || a->pending_count != b->pending_count
        || a->has_exp != b->has_exp || (a->has_exp && a->exp != b->exp)
        || !fuzz_same_bytes(&a->ext, &b->ext))
    {
        return 0;
    }

    for (i = 0; i < a->buffer_count; i++) {
        if (!fuzz_same_bytes(&a->buffer[i], &b->buffer[i])) {
            return 0;
        }
    }

    for (i = 0; i < a->pending_count; i++) {
        if (strcmp(a->pending[i], b->pending[i]) != 0) {
            return 0;
        }
    }

    return 1;
}


static void
fuzz_state(const unsigned char *body, size_t len)
{
    sr_ipc_state_t  state, back;
    sr_error_t      err;
    sr_buf_t        buf;

    if (sr_ipc_state_decode(body, len, &state, &err) != SR_OK) {
        fuzz_expect(err.str[0] != '\0' && state.token == NULL
                    && state.buffer == NULL && state.pending == NULL);
        return;
    }

    sr_buf_init(&buf);
    fuzz_expect(sr_ipc_state_encode(&state, &buf, &err) == SR_OK);
    fuzz_expect(sr_ipc_state_decode(buf.data, buf.len, &back, &err)
                == SR_OK);
    fuzz_expect(fuzz_same_state(&state, &back));

    sr_ipc_state_clear(&back);
    sr_ipc_state_clear(&state);
    sr_buf_free(&buf);
}


static void
fuzz_resume(const unsigned char *body, size_t len)
{
    sr_ipc_resume_t         resume, back;
    sr_ipc_resume_failed_t  failed, failed_back;
    sr_error_t              err;
    sr_buf_t                buf;

    sr_buf_init(&buf);

    if (sr_ipc_resume_decode(body, len, &resume, &err) == SR_OK) {
        fuzz_expect(sr_ipc_resume_encode(&resume, &buf, &err) == SR_OK);
        fuzz_expect(sr_ipc_resume_decode(buf.data, buf.len, &back, &err)
                    == SR_OK);
        fuzz_expect(back.ref == resume.ref
                    && fuzz_same_string(back.token, resume.token));
        sr_ipc_resume_clear(&back);
        sr_ipc_resume_clear(&resume);

    } else {
        fuzz_expect(err.str[0] != '\0' && resume.token == NULL);
    }

    sr_buf_reset(&buf);

    if (sr_ipc_resume_failed_decode(body, len, &failed, &err) == SR_OK) {
        fuzz_expect(sr_ipc_resume_failed_encode(&failed, &buf, &err)
                    == SR_OK);
        fuzz_expect(sr_ipc_resume_failed_decode(buf.data, buf.len,
                                                &failed_back, &err)
                    == SR_OK);
        fuzz_expect(failed_back.ref == failed.ref
                    && fuzz_same_string(failed_back.reason, failed.reason));
        sr_ipc_resume_failed_clear(&failed_back);
        sr_ipc_resume_failed_clear(&failed);
    }

    sr_buf_free(&buf);
}


/* An adopted state is decoded in turn, as the worker does. */

static void
fuzz_adopt(const unsigned char *body, size_t len)
{
    sr_ipc_adopt_t  adopt, back;
    sr_error_t      err;
    sr_buf_t        buf;
    size_t          i;

    if (sr_ipc_adopt_decode(body, len, &adopt, &err) != SR_OK) {
        fuzz_expect(err.str[0] != '\0' && adopt.appended == NULL);
        return;
    }

    fuzz_state(adopt.state.data, adopt.state.len);

    for (i = 0; i < adopt.appended_count; i++) {
        fuzz_expect(adopt.appended[i].data >= body
                    && adopt.appended[i].data + adopt.appended[i].len
                       <= body + len);
    }

    sr_buf_init(&buf);

    if (adopt.state.len > 0) {
        fuzz_expect(sr_ipc_adopt_encode(&adopt, &buf, &err) == SR_OK);
        fuzz_expect(sr_ipc_adopt_decode(buf.data, buf.len, &back, &err)
                    == SR_OK);
        fuzz_expect(back.ref == adopt.ref
                    && fuzz_same_bytes(&back.state, &adopt.state)
                    && back.appended_count == adopt.appended_count);
        sr_ipc_adopt_clear(&back);
    }

    sr_ipc_adopt_clear(&adopt);
    sr_buf_free(&buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_ipc_frame_t  frame;
    unsigned char  *copy;
    sr_error_t      err;
    size_t          max_frame, consumed, pos;
    int             rc;

    if (size < 2) {
        return 0;
    }

    max_frame = (data[0] & 0x80) ? 0 : (size_t) data[0] * 64;

    /* an exact-size copy, so that any over-read is caught */
    copy = malloc(size - 1);
    fuzz_expect(copy != NULL);
    memcpy(copy, data + 1, size - 1);

    for (pos = 0; pos < size - 1; pos += consumed) {
        rc = sr_ipc_parse(copy + pos, size - 1 - pos, max_frame, &frame,
                          &consumed, &err);
        if (rc != SR_OK) {
            fuzz_expect(rc == SR_AGAIN || err.str[0] != '\0');
            break;
        }

        fuzz_expect(consumed >= SR_IPC_HEADER_SIZE
                    && consumed <= size - 1 - pos);
        fuzz_expect(frame.conn_id_len <= SR_IPC_MAX_CONN_ID);

        fuzz_hello(frame.body, frame.body_len);
        fuzz_open(frame.body, frame.body_len);
        fuzz_close(frame.body, frame.body_len);
        fuzz_multicast(frame.body, frame.body_len);
        fuzz_detach(frame.body, frame.body_len);
        fuzz_state(frame.body, frame.body_len);
        fuzz_resume(frame.body, frame.body_len);
        fuzz_adopt(frame.body, frame.body_len);
    }

    free(copy);

    return 0;
}
