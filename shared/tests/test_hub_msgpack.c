/*
 * The MessagePack hub protocol: the examples of HubProtocol.md byte for
 * byte, the varint framing, what the official clients send, and every
 * kind of malformed input.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signalr/hub_message.h>

#include "../src/hub_codec_internal.h"


#define BYTES(...)  ((const unsigned char []) { __VA_ARGS__ }), \
                    sizeof((const unsigned char []) { __VA_ARGS__ })


/* The payloads of HubProtocol.md's MessagePack examples, as printed. */

static const unsigned char spec_invocation[] = {
    0x96, 0x01, 0x80, 0xa3, 0x78, 0x79, 0x7a, 0xa6, 0x6d, 0x65, 0x74, 0x68,
    0x6f, 0x64, 0x91, 0x2a, 0x90
};

static const unsigned char spec_non_blocking[] = {
    0x96, 0x01, 0x80, 0xc0, 0xa6, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x91,
    0x2a, 0x90
};

static const unsigned char spec_stream_invocation[] = {
    0x96, 0x04, 0x80, 0xa3, 0x78, 0x79, 0x7a, 0xa6, 0x6d, 0x65, 0x74, 0x68,
    0x6f, 0x64, 0x91, 0x2a, 0x90
};

static const unsigned char spec_stream_item[] = {
    0x94, 0x02, 0x80, 0xa3, 0x78, 0x79, 0x7a, 0x2a
};

static const unsigned char spec_completion_error[] = {
    0x95, 0x03, 0x80, 0xa3, 0x78, 0x79, 0x7a, 0x01, 0xa5, 0x45, 0x72, 0x72,
    0x6f, 0x72
};

static const unsigned char spec_completion_void[] = {
    0x94, 0x03, 0x80, 0xa3, 0x78, 0x79, 0x7a, 0x02
};

static const unsigned char spec_completion_result[] = {
    0x95, 0x03, 0x80, 0xa3, 0x78, 0x79, 0x7a, 0x03, 0x2a
};

static const unsigned char spec_cancel[] = {
    0x93, 0x05, 0x80, 0xa3, 0x78, 0x79, 0x7a
};

static const unsigned char spec_ping[] = { 0x91, 0x06 };

static const unsigned char spec_close[] = {
    0x92, 0x07, 0xa3, 0x78, 0x79, 0x7a
};

static const unsigned char spec_close_reconnect[] = {
    0x93, 0x07, 0xa3, 0x78, 0x79, 0x7a, 0xc3
};

static const unsigned char spec_ack[] = { 0x92, 0x08, 0xcc, 0x24 };

static const unsigned char spec_sequence[] = { 0x92, 0x09, 0xcc, 0x13 };

static const unsigned char spec_headers[] = {
    0x96, 0x01, 0x82, 0xa1, 0x78, 0xa1, 0x79, 0xa1, 0x7a, 0xa1, 0x7a, 0xa3,
    0x78, 0x79, 0x7a, 0xa6, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x91, 0x2a,
    0x90
};


typedef struct {
    const char           *name;
    const unsigned char  *bytes;
    size_t                len;
    int                   reencodes_exactly;
} spec_example_t;

#define EXAMPLE(name, exact)  { #name, name, sizeof(name), exact }

static const spec_example_t spec_examples[] = {
    EXAMPLE(spec_invocation, 1),
    EXAMPLE(spec_non_blocking, 1),
    EXAMPLE(spec_stream_invocation, 1),
    EXAMPLE(spec_stream_item, 1),
    EXAMPLE(spec_completion_error, 1),
    EXAMPLE(spec_completion_void, 1),
    EXAMPLE(spec_completion_result, 1),
    EXAMPLE(spec_cancel, 1),
    EXAMPLE(spec_ping, 1),
    EXAMPLE(spec_close, 1),
    EXAMPLE(spec_close_reconnect, 1),
    /* the spec writes 36 and 19 as uint8; the encoder uses fixints */
    EXAMPLE(spec_ack, 0),
    EXAMPLE(spec_sequence, 0),
    EXAMPLE(spec_headers, 1),
};


static void
expect_bytes(const unsigned char *actual, const unsigned char *expected,
    size_t len)
{
    assert_memory_equal(actual, expected, len);
}


static void
decode_ok(const unsigned char *bytes, size_t len, sr_message_t *msg)
{
    int         rc;
    sr_error_t  err;

    sr_error_clear(&err);

    rc = sr_message_decode_payload(SR_PROTOCOL_MSGPACK, bytes, len, NULL, msg,
                                   &err);
    if (rc != SR_OK) {
        fail_msg("decoding failed with %d: %s", rc, err.str);
    }
}


static void
assert_cleared(const sr_message_t *msg)
{
    assert_null(msg->headers);
    assert_null(msg->invocation_id);
    assert_null(msg->target);
    assert_null(msg->arguments);
    assert_null(msg->stream_ids);
    assert_null(msg->item);
    assert_null(msg->result);
    assert_null(msg->error);
}


static void
expect_rejected_with_limits(const unsigned char *bytes, size_t len,
    const sr_limits_t *limits, int code, const char *reason)
{
    int           rc;
    sr_error_t    err;
    sr_message_t  msg;

    sr_error_clear(&err);

    rc = sr_message_decode_payload(SR_PROTOCOL_MSGPACK, bytes, len, limits,
                                   &msg, &err);
    if (rc != code) {
        fail_msg("expected code %d, got %d (%s)", code, rc, err.str);
    }

    if (strstr(err.str, reason) == NULL) {
        fail_msg("reason \"%s\" does not mention \"%s\"", err.str, reason);
    }

    assert_cleared(&msg);
}


static void
expect_rejected(const unsigned char *bytes, size_t len, int code,
    const char *reason)
{
    expect_rejected_with_limits(bytes, len, NULL, code, reason);
}


static void
assert_args_are_42(const sr_message_t *msg)
{
    assert_true(json_is_array(msg->arguments));
    assert_int_equal(json_array_size(msg->arguments), 1);
    assert_int_equal(json_integer_value(json_array_get(msg->arguments, 0)),
                     42);
}


static void
test_invocation_example_decodes(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_invocation, sizeof(spec_invocation), &msg);

    assert_int_equal(msg.type, SR_MSG_INVOCATION);
    assert_null(msg.headers);
    assert_string_equal(msg.invocation_id, "xyz");
    assert_string_equal(msg.target, "method");
    assert_args_are_42(&msg);
    assert_null(msg.stream_ids);

    sr_message_clear(&msg);
}


static void
test_non_blocking_invocation_has_no_invocation_id(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_non_blocking, sizeof(spec_non_blocking), &msg);

    assert_int_equal(msg.type, SR_MSG_INVOCATION);
    assert_null(msg.invocation_id);
    assert_string_equal(msg.target, "method");
    assert_args_are_42(&msg);

    sr_message_clear(&msg);
}


static void
test_stream_invocation_example_decodes(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_stream_invocation, sizeof(spec_stream_invocation), &msg);

    assert_int_equal(msg.type, SR_MSG_STREAM_INVOCATION);
    assert_string_equal(msg.invocation_id, "xyz");
    assert_string_equal(msg.target, "method");
    assert_args_are_42(&msg);

    sr_message_clear(&msg);
}


static void
test_stream_item_example_decodes(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_stream_item, sizeof(spec_stream_item), &msg);

    assert_int_equal(msg.type, SR_MSG_STREAM_ITEM);
    assert_string_equal(msg.invocation_id, "xyz");
    assert_int_equal(json_integer_value(msg.item), 42);

    sr_message_clear(&msg);
}


static void
test_completion_examples_decode_by_result_kind(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_completion_error, sizeof(spec_completion_error), &msg);
    assert_int_equal(msg.type, SR_MSG_COMPLETION);
    assert_string_equal(msg.invocation_id, "xyz");
    assert_string_equal(msg.error, "Error");
    assert_null(msg.result);
    sr_message_clear(&msg);

    decode_ok(spec_completion_void, sizeof(spec_completion_void), &msg);
    assert_string_equal(msg.invocation_id, "xyz");
    assert_null(msg.error);
    assert_null(msg.result);
    sr_message_clear(&msg);

    decode_ok(spec_completion_result, sizeof(spec_completion_result), &msg);
    assert_null(msg.error);
    assert_int_equal(json_integer_value(msg.result), 42);
    sr_message_clear(&msg);
}


static void
test_completion_with_nil_result_is_a_present_null(void **state)
{
    sr_message_t  msg;

    decode_ok(BYTES(0x95, 0x03, 0x80, 0xa1, 0x31, 0x03, 0xc0), &msg);

    assert_non_null(msg.result);
    assert_true(json_is_null(msg.result));

    sr_message_clear(&msg);
}


static void
test_cancel_ping_and_close_examples_decode(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_cancel, sizeof(spec_cancel), &msg);
    assert_int_equal(msg.type, SR_MSG_CANCEL_INVOCATION);
    assert_string_equal(msg.invocation_id, "xyz");
    sr_message_clear(&msg);

    decode_ok(spec_ping, sizeof(spec_ping), &msg);
    assert_int_equal(msg.type, SR_MSG_PING);
    sr_message_clear(&msg);

    decode_ok(spec_close, sizeof(spec_close), &msg);
    assert_int_equal(msg.type, SR_MSG_CLOSE);
    assert_string_equal(msg.error, "xyz");
    assert_false(msg.allow_reconnect);
    sr_message_clear(&msg);

    decode_ok(spec_close_reconnect, sizeof(spec_close_reconnect), &msg);
    assert_string_equal(msg.error, "xyz");
    assert_true(msg.allow_reconnect);
    sr_message_clear(&msg);
}


static void
test_ack_and_sequence_examples_carry_their_ids(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_ack, sizeof(spec_ack), &msg);
    assert_int_equal(msg.type, SR_MSG_ACK);
    assert_int_equal(msg.sequence_id, 36);
    sr_message_clear(&msg);

    decode_ok(spec_sequence, sizeof(spec_sequence), &msg);
    assert_int_equal(msg.type, SR_MSG_SEQUENCE);
    assert_int_equal(msg.sequence_id, 19);
    sr_message_clear(&msg);

    /* "any unsigned int size is fine" */
    decode_ok(BYTES(0x92, 0x08, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0), &msg);
    assert_int_equal(msg.sequence_id, 1ULL << 32);
    sr_message_clear(&msg);
}


static void
test_headers_example_decodes_both_headers(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_headers, sizeof(spec_headers), &msg);

    assert_int_equal(json_object_size(msg.headers), 2);
    assert_string_equal(json_string_value(json_object_get(msg.headers, "x")),
                        "y");
    assert_string_equal(json_string_value(json_object_get(msg.headers, "z")),
                        "z");
    assert_string_equal(msg.target, "method");

    sr_message_clear(&msg);
}


static void
test_examples_reencode_to_the_spec_bytes(void **state)
{
    size_t        i;
    sr_buf_t      out;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&out);

    for (i = 0; i < sizeof(spec_examples) / sizeof(spec_examples[0]); i++) {
        decode_ok(spec_examples[i].bytes, spec_examples[i].len, &msg);

        sr_buf_reset(&out);
        assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg,
                                                   &out, &err), SR_OK);

        if (spec_examples[i].reencodes_exactly
            && (out.len != spec_examples[i].len
                || memcmp(out.data, spec_examples[i].bytes, out.len) != 0))
        {
            fail_msg("%s does not re-encode to the spec's bytes",
                     spec_examples[i].name);
        }

        sr_message_clear(&msg);
    }

    sr_buf_free(&out);
}


static void
test_ack_encodes_its_id_in_the_shortest_form(void **state)
{
    sr_buf_t      out;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&out);
    sr_message_init(&msg, SR_MSG_ACK);
    msg.sequence_id = 36;

    assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg,
                                               &out, &err), SR_OK);
    assert_int_equal(out.len, 3);
    expect_bytes(out.data, BYTES(0x92, 0x08, 0x24));

    sr_buf_free(&out);
}


static void
test_examples_survive_msgpack_json_msgpack(void **state)
{
    size_t        i;
    sr_buf_t      json, again;
    sr_error_t    err;
    sr_message_t  first, second;

    sr_buf_init(&json);
    sr_buf_init(&again);

    for (i = 0; i < sizeof(spec_examples) / sizeof(spec_examples[0]); i++) {
        decode_ok(spec_examples[i].bytes, spec_examples[i].len, &first);

        sr_buf_reset(&json);
        assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_JSON, &first,
                                                   &json, &err), SR_OK);
        assert_int_equal(sr_message_decode_payload(SR_PROTOCOL_JSON,
                                                   json.data, json.len, NULL,
                                                   &second, &err), SR_OK);

        if (!sr_hub_message_equal(&first, &second)) {
            fail_msg("%s changed on its way through JSON",
                     spec_examples[i].name);
        }

        sr_buf_reset(&again);
        assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_MSGPACK,
                                                   &second, &again, &err),
                         SR_OK);

        if (spec_examples[i].reencodes_exactly
            && (again.len != spec_examples[i].len
                || memcmp(again.data, spec_examples[i].bytes, again.len)))
        {
            fail_msg("%s bytes changed on the way back",
                     spec_examples[i].name);
        }

        sr_message_clear(&first);
        sr_message_clear(&second);
    }

    sr_buf_free(&json);
    sr_buf_free(&again);
}


static void
test_official_client_shapes_are_accepted(void **state)
{
    sr_message_t  msg;

    /* Invocation without streamIds: 5 elements */
    decode_ok(BYTES(0x95, 0x01, 0x80, 0xa1, 0x31, 0xa1, 0x6d, 0x90), &msg);
    assert_string_equal(msg.target, "m");
    assert_int_equal(json_array_size(msg.arguments), 0);
    sr_message_clear(&msg);

    /* StreamInvocation with one stream id */
    decode_ok(BYTES(0x96, 0x04, 0x80, 0xa1, 0x31, 0xa1, 0x6d, 0x90, 0x91,
                    0xa1, 0x32), &msg);
    assert_int_equal(json_array_size(msg.stream_ids), 1);
    assert_string_equal(json_string_value(json_array_get(msg.stream_ids, 0)),
                        "2");
    sr_message_clear(&msg);

    /* the client's Close: [7, nil] */
    decode_ok(BYTES(0x92, 0x07, 0xc0), &msg);
    assert_int_equal(msg.type, SR_MSG_CLOSE);
    assert_null(msg.error);
    sr_message_clear(&msg);
}


static void
test_empty_strings_decode_everywhere(void **state)
{
    sr_message_t  msg;

    /* id "", target "", headers {"": ""}, arguments ["", {"": ""}] */
    decode_ok(BYTES(0x95, 0x01, 0x81, 0xa0, 0xa0, 0xa0, 0xa0, 0x92, 0xa0,
                    0x81, 0xa0, 0xa0), &msg);

    assert_string_equal(msg.invocation_id, "");
    assert_string_equal(msg.target, "");
    assert_string_equal(json_string_value(json_object_get(msg.headers, "")),
                        "");
    assert_string_equal(json_string_value(json_array_get(msg.arguments, 0)),
                        "");
    assert_int_equal(json_object_size(json_array_get(msg.arguments, 1)), 1);

    sr_message_clear(&msg);
}


static void
test_trailing_elements_a_newer_peer_adds_are_ignored(void **state)
{
    sr_message_t  msg;

    decode_ok(BYTES(0x95, 0x05, 0x80, 0xa1, 0x31, 0xa3, 0x6e, 0x65, 0x77,
                    0x2a), &msg);
    assert_int_equal(msg.type, SR_MSG_CANCEL_INVOCATION);
    assert_string_equal(msg.invocation_id, "1");
    sr_message_clear(&msg);

    decode_ok(BYTES(0x92, 0x06, 0x01), &msg);
    assert_int_equal(msg.type, SR_MSG_PING);
    sr_message_clear(&msg);
}


static void
test_varint_examples_of_the_spec_frame_correctly(void **state)
{
    int                   rc;
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;
    unsigned char         big[2 + 5248];

    /* "Hello\nWorld" then 0x01 0x02, as the spec frames them */
    static const unsigned char two[] = {
        0x0b, 'H', 'e', 'l', 'l', 'o', '\n', 'W', 'o', 'r', 'l', 'd',
        0x02, 0x01, 0x02
    };

    rc = sr_frame_next(SR_PROTOCOL_MSGPACK, two, sizeof(two), 0, &payload,
                       &len, &used, &err);
    assert_int_equal(rc, SR_OK);
    assert_int_equal(len, 11);
    assert_memory_equal(payload, "Hello\nWorld", 11);
    assert_int_equal(used, 12);

    rc = sr_frame_next(SR_PROTOCOL_MSGPACK, two + used, sizeof(two) - used,
                       0, &payload, &len, &used, &err);
    assert_int_equal(rc, SR_OK);
    assert_int_equal(len, 2);
    expect_bytes(payload, BYTES(0x01, 0x02));

    memset(big, 0, sizeof(big));
    big[0] = 0x80;
    big[1] = 0x29;

    rc = sr_frame_next(SR_PROTOCOL_MSGPACK, big, sizeof(big), 0, &payload,
                       &len, &used, &err);
    assert_int_equal(rc, SR_OK);
    assert_int_equal(len, 5248);
    assert_ptr_equal(payload, big + 2);
}


static void
test_frame_write_uses_the_shortest_varint(void **state)
{
    sr_buf_t        out;
    sr_error_t      err;
    unsigned char  *payload;

    payload = calloc(1, 5248);
    assert_non_null(payload);
    sr_buf_init(&out);

    assert_int_equal(sr_frame_write(SR_PROTOCOL_MSGPACK, payload, 53, &out,
                                    &err), SR_OK);
    assert_int_equal(out.len, 54);
    assert_int_equal(out.data[0], 0x35);

    sr_buf_reset(&out);
    assert_int_equal(sr_frame_write(SR_PROTOCOL_MSGPACK, payload, 5248, &out,
                                    &err), SR_OK);
    assert_int_equal(out.len, 5250);
    expect_bytes(out.data, BYTES(0x80, 0x29));

    sr_buf_free(&out);
    free(payload);
}


static void
test_overlong_varint_is_accepted(void **state)
{
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;

    /* 2 written in three bytes */
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK,
                                   BYTES(0x82, 0x80, 0x00, 0x91, 0x06), 1024,
                                   &payload, &len, &used, &err), SR_OK);
    assert_int_equal(len, 2);
    assert_int_equal(used, 5);
}


static void
test_truncated_varint_asks_for_more(void **state)
{
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;

    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, BYTES(0x80), 0,
                                   &payload, &len, &used, &err), SR_AGAIN);
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK,
                                   BYTES(0xff, 0xff, 0xff, 0xff), 0,
                                   &payload, &len, &used, &err), SR_AGAIN);
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, (unsigned char *) "",
                                   0, 0, &payload, &len, &used, &err),
                     SR_AGAIN);
}


static void
test_varint_longer_than_five_bytes_is_rejected(void **state)
{
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;

    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK,
                                   BYTES(0x80, 0x80, 0x80, 0x80, 0x80, 0x01),
                                   0, &payload, &len, &used, &err),
                     SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "5 bytes"));
}


static void
test_varint_above_two_gibibytes_is_rejected(void **state)
{
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;

    /* 0xff 0xff 0xff 0xff 0x07 is the largest allowed: 2^31 - 1 */
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK,
                                   BYTES(0xff, 0xff, 0xff, 0xff, 0x07), 0,
                                   &payload, &len, &used, &err), SR_AGAIN);

    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK,
                                   BYTES(0x80, 0x80, 0x80, 0x80, 0x08), 0,
                                   &payload, &len, &used, &err),
                     SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "2 GiB"));
}


static void
test_oversized_frame_is_refused_before_it_is_complete(void **state)
{
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;

    /* declares 5248 bytes against a bound of 1024, none present yet */
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, BYTES(0x80, 0x29),
                                   1024, &payload, &len, &used, &err),
                     SR_ERR_TOO_LARGE);

    /* the bits read so far already exceed the bound */
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, BYTES(0x80, 0x7f),
                                   1024, &payload, &len, &used, &err),
                     SR_ERR_TOO_LARGE);
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK,
                                   BYTES(0x80, 0x80, 0x01), 1024, &payload,
                                   &len, &used, &err), SR_ERR_TOO_LARGE);

    /* exactly at the bound is fine */
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, BYTES(0x80, 0x08),
                                   1024, &payload, &len, &used, &err),
                     SR_AGAIN);
}


static void
test_input_fed_byte_by_byte_yields_one_message(void **state)
{
    int           rc;
    size_t        i, used, messages;
    sr_buf_t      in;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&in);
    messages = 0;

    /* a frame whose payload is spec_headers */
    for (i = 0; i <= sizeof(spec_headers); i++) {
        assert_int_equal(sr_buf_append_byte(&in, i ? spec_headers[i - 1]
                                                   : sizeof(spec_headers)),
                         SR_OK);

        rc = sr_message_decode(SR_PROTOCOL_MSGPACK, in.data, in.len, NULL,
                               &msg, &used, &err);

        if (i < sizeof(spec_headers)) {
            assert_int_equal(rc, SR_AGAIN);
            continue;
        }

        assert_int_equal(rc, SR_OK);
        assert_int_equal(used, in.len);
        assert_string_equal(msg.target, "method");
        sr_message_clear(&msg);
        sr_buf_consume(&in, used);
        messages++;
    }

    assert_int_equal(messages, 1);
    assert_int_equal(in.len, 0);

    sr_buf_free(&in);
}


static void
test_several_messages_in_one_buffer_decode_in_order(void **state)
{
    size_t        used, off;
    sr_buf_t      in;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&in);
    sr_frame_write(SR_PROTOCOL_MSGPACK, spec_ping, sizeof(spec_ping), &in,
                   &err);
    sr_frame_write(SR_PROTOCOL_MSGPACK, spec_stream_item,
                   sizeof(spec_stream_item), &in, &err);
    sr_frame_write(SR_PROTOCOL_MSGPACK, spec_completion_void,
                   sizeof(spec_completion_void), &in, &err);

    off = 0;

    assert_int_equal(sr_message_decode(SR_PROTOCOL_MSGPACK, in.data, in.len,
                                       NULL, &msg, &used, &err), SR_OK);
    assert_int_equal(msg.type, SR_MSG_PING);
    sr_message_clear(&msg);
    off += used;

    assert_int_equal(sr_message_decode(SR_PROTOCOL_MSGPACK, in.data + off,
                                       in.len - off, NULL, &msg, &used,
                                       &err), SR_OK);
    assert_int_equal(msg.type, SR_MSG_STREAM_ITEM);
    sr_message_clear(&msg);
    off += used;

    assert_int_equal(sr_message_decode(SR_PROTOCOL_MSGPACK, in.data + off,
                                       in.len - off, NULL, &msg, &used,
                                       &err), SR_OK);
    assert_int_equal(msg.type, SR_MSG_COMPLETION);
    sr_message_clear(&msg);
    off += used;

    assert_int_equal(off, in.len);
    assert_int_equal(sr_message_decode(SR_PROTOCOL_MSGPACK, in.data + off, 0,
                                       NULL, &msg, &used, &err), SR_AGAIN);

    sr_buf_free(&in);
}


static void
test_arrays_shorter_than_the_type_needs_are_rejected(void **state)
{
    expect_rejected(BYTES(0x94, 0x01, 0x80, 0xc0, 0xa1, 0x6d),
                    SR_ERR_PROTOCOL, "Invocation message has 4 elements");
    expect_rejected(BYTES(0x93, 0x02, 0x80, 0xa1, 0x31),
                    SR_ERR_PROTOCOL, "StreamItem message has 3 elements");
    expect_rejected(BYTES(0x93, 0x03, 0x80, 0xa1, 0x31),
                    SR_ERR_PROTOCOL, "Completion message has 3 elements");
    expect_rejected(BYTES(0x94, 0x04, 0x80, 0xa1, 0x31, 0xa1, 0x6d),
                    SR_ERR_PROTOCOL, "StreamInvocation message has 4");
    expect_rejected(BYTES(0x92, 0x05, 0x80),
                    SR_ERR_PROTOCOL, "CancelInvocation message has 2");
    expect_rejected(BYTES(0x91, 0x07), SR_ERR_PROTOCOL,
                    "Close message has 1");
    expect_rejected(BYTES(0x91, 0x08), SR_ERR_PROTOCOL, "Ack message has 1");
    expect_rejected(BYTES(0x91, 0x09), SR_ERR_PROTOCOL,
                    "Sequence message has 1");
    expect_rejected(BYTES(0x90), SR_ERR_PROTOCOL, "non-empty");
    expect_rejected(BYTES(0x94, 0x03, 0x80, 0xa1, 0x31, 0x01),
                    SR_ERR_PROTOCOL, "lacks its value");
    expect_rejected(BYTES(0x94, 0x03, 0x80, 0xa1, 0x31, 0x03),
                    SR_ERR_PROTOCOL, "lacks its value");
}


static void
test_wrong_element_types_are_rejected(void **state)
{
    expect_rejected(BYTES(0x81, 0xa1, 0x31, 0x01), SR_ERR_PROTOCOL,
                    "not a non-empty MessagePack array");
    expect_rejected(BYTES(0x91, 0xa1, 0x31), SR_ERR_PROTOCOL,
                    "type is not an integer");
    expect_rejected(BYTES(0x95, 0x01, 0xc0, 0xc0, 0xa1, 0x6d, 0x90),
                    SR_ERR_PROTOCOL, "headers that are not a map");
    expect_rejected(BYTES(0x95, 0x01, 0x81, 0xa1, 0x78, 0x01, 0xc0, 0xa1,
                          0x6d, 0x90),
                    SR_ERR_PROTOCOL, "strings to strings");
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0x01, 0xa1, 0x6d, 0x90),
                    SR_ERR_PROTOCOL, "'invocationId' that is not a string");
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0x01, 0x90),
                    SR_ERR_PROTOCOL, "'target' that is not a string");
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xc0, 0x90),
                    SR_ERR_PROTOCOL, "missing 'target'");
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa1, 0x6d, 0x80),
                    SR_ERR_PROTOCOL, "arguments that are not an array");
    expect_rejected(BYTES(0x96, 0x01, 0x80, 0xc0, 0xa1, 0x6d, 0x90, 0x91,
                          0x01),
                    SR_ERR_PROTOCOL, "stream id that is not a string");
    expect_rejected(BYTES(0x95, 0x04, 0x80, 0xc0, 0xa1, 0x6d, 0x90),
                    SR_ERR_PROTOCOL,
                    "StreamInvocation message is missing 'invocationId'");
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xc0, 0x2a), SR_ERR_PROTOCOL,
                    "StreamItem message is missing 'invocationId'");
    expect_rejected(BYTES(0x95, 0x03, 0x80, 0xa1, 0x31, 0x04, 0x2a),
                    SR_ERR_PROTOCOL, "result kind");
    expect_rejected(BYTES(0x95, 0x03, 0x80, 0xa1, 0x31, 0x01, 0x2a),
                    SR_ERR_PROTOCOL, "'error' that is not a string");
    expect_rejected(BYTES(0x93, 0x07, 0xc0, 0x01), SR_ERR_PROTOCOL,
                    "allowReconnect that is not a boolean");
    expect_rejected(BYTES(0x92, 0x07, 0x2a), SR_ERR_PROTOCOL,
                    "'error' that is not a string");
    expect_rejected(BYTES(0x92, 0x08, 0xff), SR_ERR_PROTOCOL,
                    "sequenceId that is not an integer");
    expect_rejected(BYTES(0x92, 0x09, 0xa1, 0x31), SR_ERR_PROTOCOL,
                    "sequenceId that is not an integer");
    expect_rejected(BYTES(0x92, 0x08, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0),
                    SR_ERR_PROTOCOL, "2^63 - 1");
}


static void
test_unknown_message_types_are_unsupported(void **state)
{
    expect_rejected(BYTES(0x91, 0x0a), SR_ERR_UNSUPPORTED,
                    "unknown message type 10");
    expect_rejected(BYTES(0x91, 0x00), SR_ERR_UNSUPPORTED,
                    "unknown message type 0");
    expect_rejected(BYTES(0x91, 0xff), SR_ERR_UNSUPPORTED,
                    "unknown message type -1");
}


static void
test_unknown_type_frame_can_be_skipped(void **state)
{
    size_t        used;
    sr_error_t    err;
    sr_message_t  msg;

    assert_int_equal(sr_message_decode(SR_PROTOCOL_MSGPACK,
                                       BYTES(0x02, 0x91, 0x63, 0x02, 0x91,
                                             0x06),
                                       NULL, &msg, &used, &err),
                     SR_ERR_UNSUPPORTED);
    assert_int_equal(used, 3);
}


static void
test_malformed_msgpack_is_rejected(void **state)
{
    expect_rejected((const unsigned char *) "", 0, SR_ERR_PROTOCOL,
                    "empty");
    expect_rejected(BYTES(0x92, 0x06), SR_ERR_PROTOCOL,
                    "declares 2 elements but only 1 bytes follow");
    expect_rejected(BYTES(0x92, 0x91, 0x06), SR_ERR_PROTOCOL, "truncated");
    expect_rejected(BYTES(0x91, 0xc1), SR_ERR_PROTOCOL, "0xc1");
    expect_rejected(BYTES(0x92, 0x08, 0xcd, 0x01), SR_ERR_PROTOCOL,
                    "declares 2 bytes but only 1 follow");
    expect_rejected(BYTES(0x91, 0x06, 0x06), SR_ERR_PROTOCOL,
                    "1 bytes after its array");
    expect_rejected(BYTES(0x93, 0x05, 0x80, 0xa5, 0x31), SR_ERR_PROTOCOL,
                    "declares 5 bytes");
}


static void
test_huge_declared_lengths_are_refused_without_allocating(void **state)
{
    /* array32 of 4294967295 elements */
    expect_rejected(BYTES(0xdd, 0xff, 0xff, 0xff, 0xff, 0x06),
                    SR_ERR_PROTOCOL, "declares 4294967295 elements");

    /* map32 of 2^32 - 1 pairs in the headers position */
    expect_rejected(BYTES(0x93, 0x05, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1),
                    SR_ERR_PROTOCOL, "declares 8589934590 elements");

    /* str32 of 4 GiB as a target */
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xdb, 0xff, 0xff, 0xff,
                          0xff, 0x90),
                    SR_ERR_PROTOCOL, "declares 4294967295 bytes");

    /* bin32 and ext32 likewise */
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xa1, 0x31, 0xc6, 0xff, 0xff,
                          0xff, 0xff),
                    SR_ERR_PROTOCOL, "declares 4294967295 bytes");
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xa1, 0x31, 0xc9, 0xff, 0xff,
                          0xff, 0xff, 0x01),
                    SR_ERR_PROTOCOL, "declares 4294967295 bytes");
}


static void
test_invalid_text_in_strings_is_rejected(void **state)
{
    /* target "\xc3\x28": a broken two-byte sequence */
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa2, 0xc3, 0x28, 0x90),
                    SR_ERR_PROTOCOL, "'target' that is not valid UTF-8");

    /* an encoded surrogate, U+D800, as the invocation id */
    expect_rejected(BYTES(0x93, 0x05, 0x80, 0xa3, 0xed, 0xa0, 0x80),
                    SR_ERR_PROTOCOL, "not valid UTF-8");

    /* overlong '/' inside an argument */
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa1, 0x6d, 0x91, 0xa2,
                          0xc0, 0xaf),
                    SR_ERR_PROTOCOL, "not valid UTF-8");

    /* a NUL inside the target */
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa2, 0x6d, 0x00, 0x90),
                    SR_ERR_PROTOCOL, "not valid UTF-8");

    /* a NUL inside an argument */
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa1, 0x6d, 0x91, 0xa2,
                          0x61, 0x00),
                    SR_ERR_PROTOCOL, "NUL");
}


static void
test_values_without_a_json_form_are_unsupported(void **state)
{
    /* bin8 argument */
    expect_rejected(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa1, 0x6d, 0x91, 0xc4,
                          0x01, 0x00),
                    SR_ERR_UNSUPPORTED, "binary");

    /* fixext1 (timestamp-like) item */
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xa1, 0x31, 0xd4, 0xff, 0x00),
                    SR_ERR_UNSUPPORTED, "extension");

    /* uint64 above INT64_MAX as a result */
    expect_rejected(BYTES(0x95, 0x03, 0x80, 0xa1, 0x31, 0x03, 0xcf, 0xff,
                          0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
                    SR_ERR_UNSUPPORTED, "2^63 - 1");

    /* NaN as a float64 item */
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xa1, 0x31, 0xcb, 0x7f, 0xf8,
                          0, 0, 0, 0, 0, 0),
                    SR_ERR_UNSUPPORTED, "NaN");

    /* a map with an integer key */
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xa1, 0x31, 0x81, 0x01, 0x02),
                    SR_ERR_UNSUPPORTED, "map key");
}


static void
test_duplicate_map_keys_are_rejected(void **state)
{
    expect_rejected(BYTES(0x94, 0x02, 0x80, 0xa1, 0x31, 0x82, 0xa1, 0x6b,
                          0x01, 0xa1, 0x6b, 0x02),
                    SR_ERR_PROTOCOL, "duplicate key");
}


static void
test_nesting_deeper_than_32_levels_is_too_large(void **state)
{
    size_t         i;
    unsigned char  deep[64];

    /* StreamItem at level 1, item arrays from level 2 on */
    memcpy(deep, BYTES(0x94, 0x02, 0x80, 0xa1, 0x31));

    for (i = 5; i < 5 + 31; i++) {
        deep[i] = 0x91;
    }

    deep[i] = 0x2a;

    /* levels 1 to 32: accepted */
    {
        sr_message_t  msg;

        decode_ok(deep, i + 1, &msg);
        sr_message_clear(&msg);
    }

    deep[i++] = 0x91;
    deep[i] = 0x2a;

    expect_rejected(deep, i + 1, SR_ERR_TOO_LARGE, "deeper than 32");
}


static void
test_limits_are_too_large_errors(void **state)
{
    sr_limits_t  limits;

    memset(&limits, 0, sizeof(limits));

    limits.max_message_size = sizeof(spec_invocation) - 1;
    expect_rejected_with_limits(spec_invocation, sizeof(spec_invocation),
                                &limits, SR_ERR_TOO_LARGE, "exceeds 16");

    limits.max_message_size = 0;
    limits.max_invocation_id = 2;
    expect_rejected_with_limits(spec_invocation, sizeof(spec_invocation),
                                &limits, SR_ERR_TOO_LARGE,
                                "invocationId longer than 2");

    limits.max_invocation_id = 0;
    limits.max_arguments = 1;
    expect_rejected_with_limits(BYTES(0x95, 0x01, 0x80, 0xc0, 0xa1, 0x6d,
                                      0x92, 0x01, 0x02),
                                &limits, SR_ERR_TOO_LARGE,
                                "2 arguments, more than 1");

    limits.max_arguments = 0;
    limits.max_invocation_id = 3;
    expect_rejected_with_limits(BYTES(0x96, 0x01, 0x80, 0xc0, 0xa1, 0x6d,
                                      0x90, 0x91, 0xa4, 0x31, 0x32, 0x33,
                                      0x34),
                                &limits, SR_ERR_TOO_LARGE,
                                "stream id longer than 3");
}


static void
test_limits_at_the_bound_are_accepted(void **state)
{
    sr_error_t    err;
    sr_limits_t   limits;
    sr_message_t  msg;

    limits.max_message_size = sizeof(spec_invocation);
    limits.max_invocation_id = 3;
    limits.max_arguments = 1;

    assert_int_equal(sr_message_decode_payload(SR_PROTOCOL_MSGPACK,
                                               spec_invocation,
                                               sizeof(spec_invocation),
                                               &limits, &msg, &err), SR_OK);
    sr_message_clear(&msg);
}


static void
test_framed_encode_matches_payload_and_frame(void **state)
{
    size_t        i, len, used;
    sr_buf_t      framed;
    sr_error_t    err;
    sr_message_t  msg;
    const unsigned char  *payload;

    sr_buf_init(&framed);

    for (i = 0; i < sizeof(spec_examples) / sizeof(spec_examples[0]); i++) {
        if (!spec_examples[i].reencodes_exactly) {
            continue;
        }

        decode_ok(spec_examples[i].bytes, spec_examples[i].len, &msg);

        sr_buf_reset(&framed);
        assert_int_equal(sr_message_encode(SR_PROTOCOL_MSGPACK, &msg,
                                           &framed, &err), SR_OK);
        assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, framed.data,
                                       framed.len, 0, &payload, &len, &used,
                                       &err), SR_OK);
        assert_int_equal(used, framed.len);
        assert_int_equal(len, spec_examples[i].len);
        assert_memory_equal(payload, spec_examples[i].bytes, len);

        sr_message_clear(&msg);
    }

    sr_buf_free(&framed);
}


static void
test_large_message_gets_a_multi_byte_prefix(void **state)
{
    size_t        len, used;
    char          text[300];
    sr_buf_t      out;
    sr_error_t    err;
    sr_message_t  msg, back;
    const unsigned char  *payload;

    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';

    sr_message_init(&msg, SR_MSG_STREAM_ITEM);
    msg.invocation_id = strdup("1");
    msg.item = json_string(text);
    sr_buf_init(&out);

    assert_int_equal(sr_message_encode(SR_PROTOCOL_MSGPACK, &msg, &out,
                                       &err), SR_OK);
    assert_true(out.data[0] & 0x80);
    assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, out.data, out.len, 0,
                                   &payload, &len, &used, &err), SR_OK);
    assert_int_equal(used, out.len);

    assert_int_equal(sr_message_decode_payload(SR_PROTOCOL_MSGPACK, payload,
                                               len, NULL, &back, &err),
                     SR_OK);
    assert_true(sr_hub_message_equal(&msg, &back));

    sr_message_clear(&back);
    sr_message_clear(&msg);
    sr_buf_free(&out);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invocation_example_decodes),
        cmocka_unit_test(test_non_blocking_invocation_has_no_invocation_id),
        cmocka_unit_test(test_stream_invocation_example_decodes),
        cmocka_unit_test(test_stream_item_example_decodes),
        cmocka_unit_test(test_completion_examples_decode_by_result_kind),
        cmocka_unit_test(test_completion_with_nil_result_is_a_present_null),
        cmocka_unit_test(test_cancel_ping_and_close_examples_decode),
        cmocka_unit_test(test_ack_and_sequence_examples_carry_their_ids),
        cmocka_unit_test(test_headers_example_decodes_both_headers),
        cmocka_unit_test(test_examples_reencode_to_the_spec_bytes),
        cmocka_unit_test(test_ack_encodes_its_id_in_the_shortest_form),
        cmocka_unit_test(test_examples_survive_msgpack_json_msgpack),
        cmocka_unit_test(test_official_client_shapes_are_accepted),
        cmocka_unit_test(test_empty_strings_decode_everywhere),
        cmocka_unit_test(test_trailing_elements_a_newer_peer_adds_are_ignored),
        cmocka_unit_test(test_varint_examples_of_the_spec_frame_correctly),
        cmocka_unit_test(test_frame_write_uses_the_shortest_varint),
        cmocka_unit_test(test_overlong_varint_is_accepted),
        cmocka_unit_test(test_truncated_varint_asks_for_more),
        cmocka_unit_test(test_varint_longer_than_five_bytes_is_rejected),
        cmocka_unit_test(test_varint_above_two_gibibytes_is_rejected),
        cmocka_unit_test(test_oversized_frame_is_refused_before_it_is_complete),
        cmocka_unit_test(test_input_fed_byte_by_byte_yields_one_message),
        cmocka_unit_test(test_several_messages_in_one_buffer_decode_in_order),
        cmocka_unit_test(test_arrays_shorter_than_the_type_needs_are_rejected),
        cmocka_unit_test(test_wrong_element_types_are_rejected),
        cmocka_unit_test(test_unknown_message_types_are_unsupported),
        cmocka_unit_test(test_unknown_type_frame_can_be_skipped),
        cmocka_unit_test(test_malformed_msgpack_is_rejected),
        cmocka_unit_test(
            test_huge_declared_lengths_are_refused_without_allocating),
        cmocka_unit_test(test_invalid_text_in_strings_is_rejected),
        cmocka_unit_test(test_values_without_a_json_form_are_unsupported),
        cmocka_unit_test(test_duplicate_map_keys_are_rejected),
        cmocka_unit_test(test_nesting_deeper_than_32_levels_is_too_large),
        cmocka_unit_test(test_limits_are_too_large_errors),
        cmocka_unit_test(test_limits_at_the_bound_are_accepted),
        cmocka_unit_test(test_framed_encode_matches_payload_and_frame),
        cmocka_unit_test(test_large_message_gets_a_multi_byte_prefix),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
