/*
 * The worker-daemon frame format: round trips of every frame type and
 * body, partial input, lying lengths and oversize frames.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include <signalr/ipc.h>


/* Parses the only frame of buf, expecting it whole. */
static void
parse_one(const sr_buf_t *buf, sr_ipc_frame_t *frame)
{
    sr_error_t  err;
    size_t      consumed;

    assert_int_equal(sr_ipc_parse(buf->data, buf->len, 0, frame, &consumed,
                                  &err), SR_OK);
    assert_int_equal(consumed, buf->len);
}


static void
test_every_frame_type_round_trips(void **state)
{
    sr_ipc_frame_t  frame;
    sr_error_t      err;
    sr_buf_t        buf;
    int             type;

    for (type = SR_IPC_HELLO; type <= SR_IPC_SUSPEND; type++) {
        sr_buf_init(&buf);

        assert_int_equal(sr_ipc_write(&buf, (sr_ipc_type_t) type,
                                      "conn-1", 6, "body", 4, &err), SR_OK);
        assert_int_equal(buf.len, SR_IPC_HEADER_SIZE + 6 + 4);

        parse_one(&buf, &frame);
        assert_int_equal(frame.type, type);
        assert_int_equal(frame.flags, 0);
        assert_int_equal(frame.conn_id_len, 6);
        assert_memory_equal(frame.conn_id, "conn-1", 6);
        assert_int_equal(frame.body_len, 4);
        assert_memory_equal(frame.body, "body", 4);

        sr_buf_free(&buf);
    }
}


static void
test_link_frame_layout_matches_the_spec(void **state)
{
    static const unsigned char  expected[] = {
        0x00, 0x00, 0x00, 0x04, SR_IPC_PING, 0x00, 0x00, 0x00
    };
    sr_ipc_frame_t              frame;
    sr_error_t                  err;
    sr_buf_t                    buf;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_write(&buf, SR_IPC_PING, NULL, 0, NULL, 0, &err),
                     SR_OK);
    assert_int_equal(buf.len, sizeof(expected));
    assert_memory_equal(buf.data, expected, sizeof(expected));

    parse_one(&buf, &frame);
    assert_int_equal(frame.conn_id_len, 0);
    assert_int_equal(frame.body_len, 0);
    sr_buf_free(&buf);
}


static void
test_partial_frames_ask_for_more(void **state)
{
    sr_ipc_frame_t  frame;
    sr_error_t      err;
    sr_buf_t        buf;
    size_t          cut, consumed, first;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_write(&buf, SR_IPC_INVOKE, "c", 1, "xyz", 3,
                                  &err), SR_OK);
    first = buf.len;
    assert_int_equal(sr_ipc_write(&buf, SR_IPC_CLOSED, "d", 1, NULL, 0,
                                  &err), SR_OK);

    for (cut = 0; cut < first; cut++) {
        assert_int_equal(sr_ipc_parse(buf.data, cut, 0, &frame, &consumed,
                                      &err), SR_AGAIN);
    }

    /* two frames back to back come out one at a time */
    assert_int_equal(sr_ipc_parse(buf.data, buf.len, 0, &frame, &consumed,
                                  &err), SR_OK);
    assert_int_equal(consumed, first);
    assert_int_equal(frame.type, SR_IPC_INVOKE);

    assert_int_equal(sr_ipc_parse(buf.data + first, buf.len - first, 0,
                                  &frame, &consumed, &err), SR_OK);
    assert_int_equal(frame.type, SR_IPC_CLOSED);
    assert_memory_equal(frame.conn_id, "d", 1);
    assert_int_equal(frame.body_len, 0);

    sr_buf_free(&buf);
}


static void
test_lying_lengths_are_refused_early(void **state)
{
    static const unsigned char  short_len[] = { 0, 0, 0, 3, 4, 0, 0, 0 };
    static const unsigned char  conn_over[] = { 0, 0, 0, 9, 4, 0, 0, 6 };
    static const unsigned char  conn_big[] = {
        0, 0, 0x01, 0x40, 4, 0, 0x01, 0x00     /* 256-byte id */
    };
    static const unsigned char  huge[] = { 0x7f, 0xff, 0xff, 0xff };
    static const unsigned char  unprintable[] = {
        0, 0, 0, 6, 4, 0, 0, 2, 'a', '\n'
    };
    sr_ipc_frame_t              frame;
    sr_error_t                  err;
    size_t                      consumed;

    assert_int_equal(sr_ipc_parse(short_len, sizeof(short_len), 0, &frame,
                                  &consumed, &err), SR_ERR_PROTOCOL);

    /* the id cannot fit the declared length: no need to wait for it */
    assert_int_equal(sr_ipc_parse(conn_over, sizeof(conn_over), 0, &frame,
                                  &consumed, &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_parse(conn_big, sizeof(conn_big), 0, &frame,
                                  &consumed, &err), SR_ERR_PROTOCOL);

    /* over the bound from the length field alone */
    assert_int_equal(sr_ipc_parse(huge, sizeof(huge), 0, &frame, &consumed,
                                  &err), SR_ERR_TOO_LARGE);
    assert_int_equal(err.code, SR_ERR_TOO_LARGE);
    assert_int_equal(sr_ipc_parse(conn_over, 4, 8, &frame, &consumed, &err),
                     SR_ERR_TOO_LARGE);

    assert_int_equal(sr_ipc_parse(unprintable, sizeof(unprintable), 0,
                                  &frame, &consumed, &err), SR_ERR_PROTOCOL);
}


static void
test_writer_refuses_bad_ids_and_oversize(void **state)
{
    char        id[SR_IPC_MAX_CONN_ID + 1];
    sr_error_t  err;
    sr_buf_t    buf;
    size_t      offset;

    memset(id, 'i', sizeof(id));
    sr_buf_init(&buf);

    assert_int_equal(sr_ipc_write(&buf, SR_IPC_SEND, id, sizeof(id), "x", 1,
                                  &err), SR_ERR_INVALID);
    assert_int_equal(sr_ipc_write(&buf, SR_IPC_SEND, "a b", 3, "x", 1,
                                  &err), SR_ERR_INVALID);
    assert_int_equal(buf.len, 0);

    assert_int_equal(sr_ipc_write(&buf, SR_IPC_SEND, id, SR_IPC_MAX_CONN_ID,
                                  "x", 1, &err), SR_OK);
    sr_buf_reset(&buf);

    /* a frame over the receive bound is taken back, not sent */
    assert_int_equal(sr_ipc_begin(&buf, SR_IPC_SEND, "c", 1, &offset, &err),
                     SR_OK);
    assert_int_equal(sr_buf_reserve(&buf, SR_IPC_MAX_FRAME), SR_OK);
    memset(buf.data + buf.len, 0, SR_IPC_MAX_FRAME);
    buf.len += SR_IPC_MAX_FRAME;
    assert_int_equal(sr_ipc_end(&buf, offset, &err), SR_ERR_TOO_LARGE);
    assert_int_equal(buf.len, offset);

    assert_int_equal(sr_ipc_end(&buf, buf.len + 1, &err), SR_ERR_INVALID);

    sr_buf_free(&buf);
}


static void
test_begin_end_builds_in_place(void **state)
{
    sr_ipc_frame_t  frame;
    sr_error_t      err;
    sr_buf_t        buf;
    size_t          offset;

    sr_buf_init(&buf);
    assert_int_equal(sr_buf_append(&buf, "xx", 2), SR_OK);  /* kept */

    assert_int_equal(sr_ipc_begin(&buf, SR_IPC_SEND, "conn", 4, &offset,
                                  &err), SR_OK);
    assert_int_equal(offset, 2);
    assert_int_equal(sr_buf_append(&buf, "hello", 5), SR_OK);
    assert_int_equal(sr_ipc_end(&buf, offset, &err), SR_OK);

    assert_memory_equal(buf.data, "xx", 2);
    assert_int_equal(sr_ipc_parse(buf.data + 2, buf.len - 2, 0, &frame,
                                  &offset, &err), SR_OK);
    assert_int_equal(frame.type, SR_IPC_SEND);
    assert_int_equal(frame.body_len, 5);
    assert_memory_equal(frame.body, "hello", 5);

    sr_buf_free(&buf);
}


static void
test_hello_round_trip(void **state)
{
    sr_ipc_hello_t  in, out;
    sr_error_t      err;
    sr_buf_t        buf;

    sr_buf_init(&buf);

    in.version = SR_IPC_VERSION;
    in.pid = 4242;
    in.node = "edge-1";
    assert_int_equal(sr_ipc_hello_encode(&in, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_hello_decode(buf.data, buf.len, &out, &err),
                     SR_OK);
    assert_int_equal(out.version, SR_IPC_VERSION);
    assert_int_equal(out.pid, 4242);
    assert_string_equal(out.node, "edge-1");
    sr_ipc_hello_clear(&out);
    assert_null(out.node);

    sr_buf_reset(&buf);
    in.node = NULL;
    in.pid = -1;
    assert_int_equal(sr_ipc_hello_encode(&in, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_hello_decode(buf.data, buf.len, &out, &err),
                     SR_OK);
    assert_null(out.node);
    assert_int_equal(out.pid, -1);
    sr_ipc_hello_clear(&out);

    sr_buf_free(&buf);
}


/* Packs a map of n pairs whose keys and values the caller packs next. */
static void
packer_start(msgpack_sbuffer *sb, msgpack_packer *pk, size_t n)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, n);
}


static void
pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
}


static void
test_hello_unknown_keys_ignored_wrong_types_refused(void **state)
{
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_ipc_hello_t   hello;
    sr_error_t       err;

    packer_start(&sb, &pk, 3);
    pack_key(&pk, "future");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_true(&pk);
    pack_key(&pk, "version");
    msgpack_pack_uint32(&pk, 7);
    pack_key(&pk, "node");
    msgpack_pack_str_with_body(&pk, "n", 1);
    assert_int_equal(sr_ipc_hello_decode((unsigned char *) sb.data, sb.size,
                                         &hello, &err), SR_OK);
    assert_int_equal(hello.version, 7);
    sr_ipc_hello_clear(&hello);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "version");
    msgpack_pack_str_with_body(&pk, "1", 1);
    assert_int_equal(sr_ipc_hello_decode((unsigned char *) sb.data, sb.size,
                                         &hello, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "version"));
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 2);
    pack_key(&pk, "version");
    msgpack_pack_uint32(&pk, 1);
    pack_key(&pk, "node");
    msgpack_pack_int(&pk, 3);
    assert_int_equal(sr_ipc_hello_decode((unsigned char *) sb.data, sb.size,
                                         &hello, &err), SR_ERR_PROTOCOL);
    assert_null(hello.node);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "pid");
    msgpack_pack_int(&pk, 3);
    assert_int_equal(sr_ipc_hello_decode((unsigned char *) sb.data, sb.size,
                                         &hello, &err), SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);
}


static void
test_bodies_that_are_not_one_map_are_refused(void **state)
{
    static const unsigned char  array[] = { 0x91, 0x01 };
    static const unsigned char  trailing[] = { 0x80, 0x00 };
    static const unsigned char  truncated[] = { 0x81, 0xa7, 'v', 'e' };
    static const unsigned char  lying[] = { 0xdf, 0x7f, 0xff, 0xff, 0xff };
    sr_ipc_hello_t              hello;
    sr_ipc_close_t              close;
    sr_ipc_open_t               open;
    sr_error_t                  err;

    assert_int_equal(sr_ipc_hello_decode(array, sizeof(array), &hello,
                                         &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_close_decode(trailing, sizeof(trailing), &close,
                                         &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_open_decode(truncated, sizeof(truncated), &open,
                                        &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_open_decode(lying, sizeof(lying), &open, &err),
                     SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_close_decode(NULL, 0, &close, &err),
                     SR_ERR_PROTOCOL);
}


static void
test_open_round_trip_with_claims(void **state)
{
    sr_ipc_open_t  in, out;
    json_error_t   jerr;
    sr_error_t     err;
    sr_buf_t       buf;

    sr_buf_init(&buf);

    in.hub = "ChatStreamHub";
    in.user = "alice";
    in.protocol = SR_PROTOCOL_MSGPACK;
    in.transport = "WebSockets";
    in.claims = json_loads("{\"sub\":\"alice\",\"role\":[\"user\",\"admin\"],"
                           "\"exp\":1700000000,\"n\":{\"x\":true}}",
                           0, &jerr);
    assert_non_null(in.claims);

    assert_int_equal(sr_ipc_open_encode(&in, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_open_decode(buf.data, buf.len, &out, &err),
                     SR_OK);
    assert_string_equal(out.hub, "ChatStreamHub");
    assert_string_equal(out.user, "alice");
    assert_int_equal(out.protocol, SR_PROTOCOL_MSGPACK);
    assert_string_equal(out.transport, "WebSockets");
    assert_true(json_equal(out.claims, in.claims));
    sr_ipc_open_clear(&out);

    /* anonymous, JSON, no claims */
    sr_buf_reset(&buf);
    json_decref(in.claims);
    in.claims = NULL;
    in.user = NULL;
    in.protocol = SR_PROTOCOL_JSON;
    assert_int_equal(sr_ipc_open_encode(&in, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_open_decode(buf.data, buf.len, &out, &err),
                     SR_OK);
    assert_null(out.user);
    assert_null(out.claims);
    assert_int_equal(out.protocol, SR_PROTOCOL_JSON);
    sr_ipc_open_clear(&out);

    in.hub = NULL;
    assert_int_equal(sr_ipc_open_encode(&in, &buf, &err), SR_ERR_INVALID);

    sr_buf_free(&buf);
}


static void
test_open_refuses_wrong_types_and_missing_fields(void **state)
{
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_ipc_open_t    open;
    sr_error_t       err;

    packer_start(&sb, &pk, 2);
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "h", 1);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "xml", 3);
    assert_int_equal(sr_ipc_open_decode((unsigned char *) sb.data, sb.size,
                                        &open, &err), SR_ERR_PROTOCOL);
    assert_null(open.hub);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "json", 4);
    assert_int_equal(sr_ipc_open_decode((unsigned char *) sb.data, sb.size,
                                        &open, &err), SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 2);
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "a\0b", 3);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "json", 4);
    assert_int_equal(sr_ipc_open_decode((unsigned char *) sb.data, sb.size,
                                        &open, &err), SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 3);
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "h", 1);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "json", 4);
    pack_key(&pk, "claims");
    msgpack_pack_array(&pk, 0);
    assert_int_equal(sr_ipc_open_decode((unsigned char *) sb.data, sb.size,
                                        &open, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "claims"));
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);
    msgpack_pack_int(&pk, 1);               /* a key that is no string */
    msgpack_pack_int(&pk, 2);
    assert_int_equal(sr_ipc_open_decode((unsigned char *) sb.data, sb.size,
                                        &open, &err), SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);
}


static void
test_close_round_trip(void **state)
{
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_ipc_close_t   in, out;
    sr_error_t       err;
    sr_buf_t         buf;

    sr_buf_init(&buf);

    in.error = "Server is shutting down.";
    in.allow_reconnect = 1;
    assert_int_equal(sr_ipc_close_encode(&in, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_close_decode(buf.data, buf.len, &out, &err),
                     SR_OK);
    assert_string_equal(out.error, "Server is shutting down.");
    assert_int_equal(out.allow_reconnect, 1);
    sr_ipc_close_clear(&out);

    sr_buf_reset(&buf);
    in.error = NULL;
    in.allow_reconnect = 0;
    assert_int_equal(sr_ipc_close_encode(&in, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_close_decode(buf.data, buf.len, &out, &err),
                     SR_OK);
    assert_null(out.error);
    assert_int_equal(out.allow_reconnect, 0);
    sr_ipc_close_clear(&out);
    sr_buf_free(&buf);

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "allowReconnect");
    msgpack_pack_int(&pk, 1);
    assert_int_equal(sr_ipc_close_decode((unsigned char *) sb.data, sb.size,
                                         &out, &err), SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);
}


static void
test_multicast_round_trip(void **state)
{
    const char *const     ids[] = { "a1", "conn-22", "z" };
    const size_t          lens[] = { 2, 7, 1 };
    const char           *id;
    const unsigned char  *message;
    sr_ipc_id_iter_t      iter;
    sr_ipc_frame_t        frame;
    sr_error_t            err;
    sr_buf_t              buf;
    size_t                offset, id_len, message_len, i;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_multicast_begin(&buf, ids, lens, 3, &offset,
                                            &err), SR_OK);
    assert_int_equal(sr_buf_append(&buf, "\x93\x01\x02\x03", 4), SR_OK);
    assert_int_equal(sr_ipc_end(&buf, offset, &err), SR_OK);

    parse_one(&buf, &frame);
    assert_int_equal(frame.type, SR_IPC_MULTICAST);
    assert_int_equal(frame.conn_id_len, 0);

    assert_int_equal(sr_ipc_multicast_parse(frame.body, frame.body_len,
                                            &iter, &message, &message_len,
                                            &err), SR_OK);
    assert_int_equal(message_len, 4);
    assert_memory_equal(message, "\x93\x01\x02\x03", 4);

    for (i = 0; i < 3; i++) {
        assert_int_equal(sr_ipc_multicast_next(&iter, &id, &id_len), 1);
        assert_int_equal(id_len, lens[i]);
        assert_memory_equal(id, ids[i], lens[i]);
    }

    assert_int_equal(sr_ipc_multicast_next(&iter, &id, &id_len), 0);
    sr_buf_free(&buf);
}


static void
test_multicast_lying_lists_are_refused(void **state)
{
    static const unsigned char  no_count[] = { 0x00 };
    static const unsigned char  short_list[] = { 0x00, 0x02, 0x01, 'a' };
    static const unsigned char  long_id[] = { 0x00, 0x01, 0x05, 'a', 'b' };
    static const unsigned char  empty_id[] = { 0x00, 0x01, 0x00, 0x90 };
    static const unsigned char  no_message[] = { 0x00, 0x01, 0x01, 'a' };
    const char *const           bad_ids[] = { "ok", "" };
    const size_t                bad_lens[] = { 2, 0 };
    const unsigned char        *message;
    sr_ipc_id_iter_t            iter;
    sr_error_t                  err;
    sr_buf_t                    buf;
    size_t                      message_len, offset;

    assert_int_equal(sr_ipc_multicast_parse(no_count, sizeof(no_count),
                                            &iter, &message, &message_len,
                                            &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_multicast_parse(short_list, sizeof(short_list),
                                            &iter, &message, &message_len,
                                            &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_multicast_parse(long_id, sizeof(long_id),
                                            &iter, &message, &message_len,
                                            &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_multicast_parse(empty_id, sizeof(empty_id),
                                            &iter, &message, &message_len,
                                            &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_ipc_multicast_parse(no_message, sizeof(no_message),
                                            &iter, &message, &message_len,
                                            &err), SR_ERR_PROTOCOL);

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_multicast_begin(&buf, bad_ids, bad_lens, 2,
                                            &offset, &err), SR_ERR_INVALID);
    assert_int_equal(buf.len, 0);
    sr_buf_free(&buf);
}


static void
test_relay_round_trip_keeps_every_field(void **state)
{
    sr_ipc_relay_t  in, out;
    sr_ipc_frame_t  frame;
    sr_error_t      err;
    sr_buf_t        buf;

    in.pid = 0x01020304;
    in.seq = 0xfffffffe;
    in.code = 404;
    in.flags = SR_IPC_FORWARDED_BINARY;
    in.data = (const unsigned char *) "\x1e{}";
    in.data_len = 3;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_relay_write(&buf, SR_IPC_FORWARDED, "c9", 2, &in,
                                        &err), SR_OK);
    assert_int_equal(buf.len, SR_IPC_HEADER_SIZE + 2
                              + SR_IPC_RELAY_HEADER + 3);

    parse_one(&buf, &frame);
    assert_int_equal(frame.type, SR_IPC_FORWARDED);
    assert_memory_equal(frame.conn_id, "c9", 2);

    /* the layout of docs/ipc.md: pid, seq, code, flags, data */
    assert_memory_equal(frame.body, "\x01\x02\x03\x04\xff\xff\xff\xfe"
                                    "\x01\x94\x01", SR_IPC_RELAY_HEADER);

    assert_int_equal(sr_ipc_relay_parse(frame.body, frame.body_len, &out,
                                        &err), SR_OK);
    assert_int_equal(out.pid, in.pid);
    assert_int_equal(out.seq, in.seq);
    assert_int_equal(out.code, 404);
    assert_int_equal(out.flags, SR_IPC_FORWARDED_BINARY);
    assert_int_equal(out.data_len, 3);
    assert_memory_equal(out.data, "\x1e{}", 3);

    sr_buf_free(&buf);
}


static void
test_relay_refuses_short_bodies_and_misuse(void **state)
{
    static const unsigned char  short_body[] = { 0, 0, 0, 1, 0, 0, 0, 2, 0 };
    sr_ipc_relay_t              relay;
    sr_error_t                  err;
    sr_buf_t                    buf;

    assert_int_equal(sr_ipc_relay_parse(short_body, sizeof(short_body),
                                        &relay, &err), SR_ERR_PROTOCOL);

    memset(&relay, 0, sizeof(relay));
    relay.code = SR_IPC_FORWARD_POLL;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_relay_write(&buf, SR_IPC_SEND, "c1", 2, &relay,
                                        &err), SR_ERR_INVALID);
    assert_int_equal(sr_ipc_relay_write(&buf, SR_IPC_FORWARD, NULL, 0,
                                        &relay, &err), SR_ERR_INVALID);
    assert_int_equal(buf.len, 0);

    /* an empty body after the header is a valid poll */
    assert_int_equal(sr_ipc_relay_write(&buf, SR_IPC_FORWARD, "c1", 2,
                                        &relay, &err), SR_OK);
    assert_int_equal(sr_ipc_relay_parse(buf.data + SR_IPC_HEADER_SIZE + 2,
                                        buf.len - SR_IPC_HEADER_SIZE - 2,
                                        &relay, &err), SR_OK);
    assert_int_equal(relay.code, SR_IPC_FORWARD_POLL);
    assert_int_equal(relay.data_len, 0);
    sr_buf_free(&buf);
}


static void
test_open_with_a_token_still_decodes(void **state)
{
    sr_ipc_open_t  open, back;
    sr_error_t     err;
    sr_buf_t       buf;

    memset(&open, 0, sizeof(open));
    open.hub = "ChatStreamHub";
    open.protocol = SR_PROTOCOL_JSON;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_open_encode_token(&open, "tok-9", &buf, &err),
                     SR_OK);

    /* a sixth key, and the token in it, as the daemon reads it */
    assert_int_equal(buf.data[0], 0x86);
    assert_memory_equal(buf.data + 1, "\xa5token\xa5tok-9", 12);

    assert_int_equal(sr_ipc_open_decode(buf.data, buf.len, &back, &err),
                     SR_OK);
    assert_string_equal(back.hub, "ChatStreamHub");
    sr_ipc_open_clear(&back);
    sr_buf_free(&buf);
}


static void
test_detach_round_trip_and_both_bounds_required(void **state)
{
    sr_ipc_detach_t  detach, back;
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_error_t       err;
    sr_buf_t         buf;

    detach.window_ms = 30000;
    detach.buffer_bytes = 100000;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_detach_encode(&detach, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_detach_decode(buf.data, buf.len, &back, &err),
                     SR_OK);
    assert_int_equal(back.window_ms, 30000);
    assert_int_equal(back.buffer_bytes, 100000);
    sr_buf_free(&buf);

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "window_ms");
    msgpack_pack_uint64(&pk, 5);
    assert_int_equal(sr_ipc_detach_decode((unsigned char *) sb.data,
                                          sb.size, &back, &err),
                     SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 2);
    pack_key(&pk, "window_ms");
    msgpack_pack_int(&pk, -1);
    pack_key(&pk, "buffer_bytes");
    msgpack_pack_uint64(&pk, 5);
    assert_int_equal(sr_ipc_detach_decode((unsigned char *) sb.data,
                                          sb.size, &back, &err),
                     SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "window_ms"));
    msgpack_sbuffer_destroy(&sb);
}


/* A state with two buffered messages, one pending id and claims. */
static void
make_state(sr_ipc_state_t *st, sr_ipc_bytes_t *msgs, char **pending)
{
    memset(st, 0, sizeof(*st));

    msgs[0].data = (const unsigned char *) "\x93\x01\x02\x03";
    msgs[0].len = 4;
    msgs[1].data = (const unsigned char *) "\x91\xc0";
    msgs[1].len = 2;
    pending[0] = "inv-7";

    st->token = "secret-token";
    st->who.hub = "ChatStreamHub";
    st->who.user = "alice";
    st->who.protocol = SR_PROTOCOL_MSGPACK;
    st->who.transport = "WebSockets";
    st->who.claims = json_pack("{s:s}", "sub", "alice");
    st->received = 9;
    st->first = 41;
    st->buffer = msgs;
    st->buffer_count = 2;
    st->buffer_size = 6;
    st->window_ms = 30000;
    st->buffer_bytes = 100000;
    st->pending = pending;
    st->pending_count = 1;
    st->has_exp = 1;
    st->exp = 1900000000;
    st->ext.data = (const unsigned char *) "x";
    st->ext.len = 1;
}


static void
test_state_round_trip_keeps_every_field(void **state)
{
    sr_ipc_state_t   st, back;
    sr_ipc_bytes_t   msgs[2];
    char            *pending[1];
    sr_error_t       err;
    sr_buf_t         buf;

    make_state(&st, msgs, pending);

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_state_encode(&st, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_state_decode(buf.data, buf.len, &back, &err),
                     SR_OK);

    assert_string_equal(back.token, "secret-token");
    assert_string_equal(back.who.hub, "ChatStreamHub");
    assert_string_equal(back.who.user, "alice");
    assert_string_equal(back.who.transport, "WebSockets");
    assert_int_equal(back.who.protocol, SR_PROTOCOL_MSGPACK);
    assert_true(json_equal(back.who.claims, st.who.claims));
    assert_int_equal(back.received, 9);
    assert_int_equal(back.first, 41);
    assert_int_equal(back.buffer_count, 2);
    assert_int_equal(back.buffer[0].len, 4);
    assert_memory_equal(back.buffer[0].data, msgs[0].data, 4);
    assert_int_equal(back.buffer[1].len, 2);
    assert_memory_equal(back.buffer[1].data, msgs[1].data, 2);

    /* the buffer is read in place, not copied */
    assert_true(back.buffer[0].data > buf.data
                && back.buffer[0].data < buf.data + buf.len);

    assert_int_equal(back.buffer_size, 6);
    assert_int_equal(back.window_ms, 30000);
    assert_int_equal(back.buffer_bytes, 100000);
    assert_int_equal(back.pending_count, 1);
    assert_string_equal(back.pending[0], "inv-7");
    assert_true(back.has_exp);
    assert_int_equal(back.exp, 1900000000);
    assert_int_equal(back.ext.len, 1);
    assert_memory_equal(back.ext.data, "x", 1);

    sr_ipc_state_clear(&back);
    assert_null(back.token);
    json_decref(st.who.claims);
    sr_buf_free(&buf);
}


static void
test_state_empty_buffer_and_no_expiry(void **state)
{
    sr_ipc_state_t  st, back;
    sr_error_t      err;
    sr_buf_t        buf;

    memset(&st, 0, sizeof(st));
    st.token = "t";
    st.who.hub = "h";
    st.who.protocol = SR_PROTOCOL_JSON;
    st.first = 1;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_state_encode(&st, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_state_decode(buf.data, buf.len, &back, &err),
                     SR_OK);
    assert_int_equal(back.buffer_count, 0);
    assert_null(back.buffer);
    assert_int_equal(back.pending_count, 0);
    assert_false(back.has_exp);
    assert_null(back.ext.data);
    assert_null(back.who.user);
    assert_null(back.who.claims);
    sr_ipc_state_clear(&back);
    sr_buf_free(&buf);
}


static void
test_state_encoder_refuses_an_inconsistent_state(void **state)
{
    sr_ipc_state_t   st;
    sr_ipc_bytes_t   msgs[2];
    char            *pending[1];
    sr_error_t       err;
    sr_buf_t         buf;

    sr_buf_init(&buf);

    make_state(&st, msgs, pending);
    st.buffer_size = 7;
    assert_int_equal(sr_ipc_state_encode(&st, &buf, &err), SR_ERR_INVALID);

    st.buffer_size = 6;
    st.token = NULL;
    assert_int_equal(sr_ipc_state_encode(&st, &buf, &err), SR_ERR_INVALID);

    st.token = "t";
    pending[0] = NULL;
    assert_int_equal(sr_ipc_state_encode(&st, &buf, &err), SR_ERR_INVALID);

    assert_int_equal(buf.len, 0);
    json_decref(st.who.claims);
    sr_buf_free(&buf);
}


/* The minimum keys a state needs, then one more pair from the caller. */
static void
pack_state_start(msgpack_sbuffer *sb, msgpack_packer *pk, size_t extra)
{
    packer_start(sb, pk, 5 + extra);
    pack_key(pk, "token");
    msgpack_pack_str_with_body(pk, "t", 1);
    pack_key(pk, "hub");
    msgpack_pack_str_with_body(pk, "h", 1);
    pack_key(pk, "protocol");
    msgpack_pack_str_with_body(pk, "json", 4);
    pack_key(pk, "first");
    msgpack_pack_uint64(pk, 1);
    pack_key(pk, "buffer_size");
    msgpack_pack_uint64(pk, 0);
}


static int
decode_state(msgpack_sbuffer *sb, sr_error_t *err)
{
    sr_ipc_state_t  st;
    int             rc;

    rc = sr_ipc_state_decode((unsigned char *) sb->data, sb->size, &st, err);

    if (rc == SR_OK) {
        sr_ipc_state_clear(&st);

    } else {
        assert_null(st.token);
        assert_null(st.buffer);
        assert_null(st.pending);
    }

    msgpack_sbuffer_destroy(sb);

    return rc;
}


static void
test_state_decoder_refuses_malformed_bodies(void **state)
{
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_error_t       err;

    pack_state_start(&sb, &pk, 1);
    pack_key(&pk, "future_key");
    msgpack_pack_true(&pk);
    assert_int_equal(decode_state(&sb, &err), SR_OK);

    packer_start(&sb, &pk, 2);              /* no token, no first */
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "h", 1);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "json", 4);
    assert_int_equal(decode_state(&sb, &err), SR_ERR_PROTOCOL);

    pack_state_start(&sb, &pk, 1);          /* a str where bin goes */
    pack_key(&pk, "buffer");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str_with_body(&pk, "ab", 2);
    assert_int_equal(decode_state(&sb, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "buffer"));

    pack_state_start(&sb, &pk, 1);          /* lengths not the size */
    pack_key(&pk, "buffer");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "ab", 2);
    assert_int_equal(decode_state(&sb, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "buffer_size"));

    pack_state_start(&sb, &pk, 1);
    pack_key(&pk, "pending");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_int(&pk, 3);
    assert_int_equal(decode_state(&sb, &err), SR_ERR_PROTOCOL);

    pack_state_start(&sb, &pk, 1);
    pack_key(&pk, "exp");
    msgpack_pack_str_with_body(&pk, "soon", 4);
    assert_int_equal(decode_state(&sb, &err), SR_ERR_PROTOCOL);

    pack_state_start(&sb, &pk, 1);
    pack_key(&pk, "received");
    msgpack_pack_int(&pk, -2);
    assert_int_equal(decode_state(&sb, &err), SR_ERR_PROTOCOL);
}


static void
test_resume_and_resume_failed_round_trip(void **state)
{
    sr_ipc_resume_failed_t  failed, failed_back;
    sr_ipc_resume_t         resume, back;
    msgpack_sbuffer         sb;
    msgpack_packer          pk;
    sr_error_t              err;
    sr_buf_t                buf;

    resume.token = "tok";
    resume.ref = 77;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_resume_encode(&resume, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_resume_decode(buf.data, buf.len, &back, &err),
                     SR_OK);
    assert_string_equal(back.token, "tok");
    assert_int_equal(back.ref, 77);
    sr_ipc_resume_clear(&back);

    resume.token = NULL;
    assert_int_equal(sr_ipc_resume_encode(&resume, &buf, &err),
                     SR_ERR_INVALID);

    sr_buf_reset(&buf);
    failed.ref = 78;
    failed.reason = "no such connection";
    assert_int_equal(sr_ipc_resume_failed_encode(&failed, &buf, &err),
                     SR_OK);
    assert_int_equal(sr_ipc_resume_failed_decode(buf.data, buf.len,
                                                 &failed_back, &err),
                     SR_OK);
    assert_int_equal(failed_back.ref, 78);
    assert_string_equal(failed_back.reason, "no such connection");
    sr_ipc_resume_failed_clear(&failed_back);
    sr_buf_free(&buf);

    packer_start(&sb, &pk, 1);              /* a resume without a ref */
    pack_key(&pk, "token");
    msgpack_pack_str_with_body(&pk, "tok", 3);
    assert_int_equal(sr_ipc_resume_decode((unsigned char *) sb.data,
                                          sb.size, &back, &err),
                     SR_ERR_PROTOCOL);
    assert_null(back.token);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "reason");
    msgpack_pack_str_with_body(&pk, "x", 1);
    assert_int_equal(sr_ipc_resume_failed_decode((unsigned char *) sb.data,
                                                 sb.size, &failed_back,
                                                 &err),
                     SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);
}


static void
test_adopt_carries_the_state_and_appended_verbatim(void **state)
{
    sr_ipc_adopt_t   adopt, back;
    sr_ipc_bytes_t   appended[2];
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_error_t       err;
    sr_buf_t         buf;

    appended[0].data = (const unsigned char *) "\x95\x01";
    appended[0].len = 2;
    appended[1].data = (const unsigned char *) "\x94\x02\x03";
    appended[1].len = 3;

    adopt.ref = 5;
    adopt.state.data = (const unsigned char *) "\x81\xa1k\x01";
    adopt.state.len = 4;
    adopt.appended = appended;
    adopt.appended_count = 2;

    sr_buf_init(&buf);
    assert_int_equal(sr_ipc_adopt_encode(&adopt, &buf, &err), SR_OK);
    assert_int_equal(sr_ipc_adopt_decode(buf.data, buf.len, &back, &err),
                     SR_OK);
    assert_int_equal(back.ref, 5);
    assert_int_equal(back.state.len, 4);
    assert_memory_equal(back.state.data, adopt.state.data, 4);
    assert_int_equal(back.appended_count, 2);
    assert_int_equal(back.appended[1].len, 3);
    assert_memory_equal(back.appended[1].data, "\x94\x02\x03", 3);
    sr_ipc_adopt_clear(&back);
    assert_null(back.appended);

    adopt.state.len = 0;
    sr_buf_reset(&buf);
    assert_int_equal(sr_ipc_adopt_encode(&adopt, &buf, &err),
                     SR_ERR_INVALID);
    sr_buf_free(&buf);

    packer_start(&sb, &pk, 2);              /* appended items not bin */
    pack_key(&pk, "ref");
    msgpack_pack_uint64(&pk, 1);
    pack_key(&pk, "appended");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 1);
    assert_int_equal(sr_ipc_adopt_decode((unsigned char *) sb.data, sb.size,
                                         &back, &err), SR_ERR_PROTOCOL);
    assert_null(back.appended);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);              /* no state */
    pack_key(&pk, "ref");
    msgpack_pack_uint64(&pk, 1);
    assert_int_equal(sr_ipc_adopt_decode((unsigned char *) sb.data, sb.size,
                                         &back, &err), SR_ERR_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);
}


/* A refused body is named, and so is the key that made it fail. */
static void
test_decoders_name_the_body_and_the_key(void **state)
{
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_ipc_close_t   close;
    sr_ipc_state_t   park;
    sr_ipc_hello_t   hello;
    sr_error_t       err;

    packer_start(&sb, &pk, 1);
    pack_key(&pk, "allowReconnect");
    msgpack_pack_str_with_body(&pk, "yes", 3);
    assert_int_equal(sr_ipc_close_decode((unsigned char *) sb.data, sb.size,
                                         &close, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "close"));
    assert_non_null(strstr(err.str, "\"allowReconnect\""));
    assert_non_null(strstr(err.str, "boolean"));
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 3);              /* token and hub, no protocol */
    pack_key(&pk, "token");
    msgpack_pack_str_with_body(&pk, "t", 1);
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "h", 1);
    pack_key(&pk, "first");
    msgpack_pack_uint64(&pk, 1);
    assert_int_equal(sr_ipc_state_decode((unsigned char *) sb.data, sb.size,
                                         &park, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "park"));
    assert_non_null(strstr(err.str, "\"protocol\""));
    assert_null(park.token);
    assert_null(park.who.hub);
    msgpack_sbuffer_destroy(&sb);

    packer_start(&sb, &pk, 1);
    msgpack_pack_int(&pk, 1);               /* a key that is no string */
    msgpack_pack_int(&pk, 2);
    assert_int_equal(sr_ipc_hello_decode((unsigned char *) sb.data, sb.size,
                                         &hello, &err), SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "hello"));
    assert_non_null(strstr(err.str, "not a string"));
    msgpack_sbuffer_destroy(&sb);
}


/* A key given twice keeps its last value; the first one is freed. */
static void
test_a_repeated_key_keeps_its_last_value(void **state)
{
    msgpack_sbuffer  sb;
    msgpack_packer   pk;
    sr_ipc_open_t    open;
    sr_ipc_state_t   park;
    sr_error_t       err;

    packer_start(&sb, &pk, 4);
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "first", 5);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "json", 4);
    pack_key(&pk, "hub");
    msgpack_pack_str_with_body(&pk, "second", 6);
    pack_key(&pk, "protocol");
    msgpack_pack_str_with_body(&pk, "messagepack", 11);
    assert_int_equal(sr_ipc_open_decode((unsigned char *) sb.data, sb.size,
                                        &open, &err), SR_OK);
    assert_string_equal(open.hub, "second");
    assert_int_equal(open.protocol, SR_PROTOCOL_MSGPACK);
    sr_ipc_open_clear(&open);
    msgpack_sbuffer_destroy(&sb);

    pack_state_start(&sb, &pk, 2);          /* pending twice */
    pack_key(&pk, "pending");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "b", 1);
    pack_key(&pk, "pending");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str_with_body(&pk, "c", 1);
    assert_int_equal(sr_ipc_state_decode((unsigned char *) sb.data, sb.size,
                                         &park, &err), SR_OK);
    assert_int_equal(park.pending_count, 1);
    assert_string_equal(park.pending[0], "c");
    sr_ipc_state_clear(&park);
    msgpack_sbuffer_destroy(&sb);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_every_frame_type_round_trips),
        cmocka_unit_test(test_link_frame_layout_matches_the_spec),
        cmocka_unit_test(test_partial_frames_ask_for_more),
        cmocka_unit_test(test_lying_lengths_are_refused_early),
        cmocka_unit_test(test_writer_refuses_bad_ids_and_oversize),
        cmocka_unit_test(test_begin_end_builds_in_place),
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_hello_unknown_keys_ignored_wrong_types_refused),
        cmocka_unit_test(test_bodies_that_are_not_one_map_are_refused),
        cmocka_unit_test(test_open_round_trip_with_claims),
        cmocka_unit_test(test_open_refuses_wrong_types_and_missing_fields),
        cmocka_unit_test(test_close_round_trip),
        cmocka_unit_test(test_multicast_round_trip),
        cmocka_unit_test(test_multicast_lying_lists_are_refused),
        cmocka_unit_test(test_relay_round_trip_keeps_every_field),
        cmocka_unit_test(test_relay_refuses_short_bodies_and_misuse),
        cmocka_unit_test(test_open_with_a_token_still_decodes),
        cmocka_unit_test(test_detach_round_trip_and_both_bounds_required),
        cmocka_unit_test(test_state_round_trip_keeps_every_field),
        cmocka_unit_test(test_state_empty_buffer_and_no_expiry),
        cmocka_unit_test(test_state_encoder_refuses_an_inconsistent_state),
        cmocka_unit_test(test_state_decoder_refuses_malformed_bodies),
        cmocka_unit_test(test_resume_and_resume_failed_round_trip),
        cmocka_unit_test(test_adopt_carries_the_state_and_appended_verbatim),
        cmocka_unit_test(test_decoders_name_the_body_and_the_key),
        cmocka_unit_test(test_a_repeated_key_keeps_its_last_value),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
