/*
 * The JSON hub protocol: the examples of HubProtocol.md, strict
 * validation with readable reasons, limits, framing by the record
 * separator, and round trips through MessagePack.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signalr/hub_message.h>

#include "../src/hub_codec_internal.h"


/* The JSON examples of HubProtocol.md, whitespace kept. */
static const char *spec_examples[] = {
    "{\n    \"type\": 1,\n    \"invocationId\": \"123\",\n"
    "    \"target\": \"Send\",\n    \"arguments\": [\n        42,\n"
    "        \"Test Message\"\n    ]\n}",

    "{\n    \"type\": 1,\n    \"target\": \"Send\",\n    \"arguments\": [\n"
    "        42,\n        \"Test Message\"\n    ]\n}",

    "{\n    \"type\": 1,\n    \"invocationId\": \"123\",\n"
    "    \"target\": \"Send\",\n    \"arguments\": [\n        42\n    ],\n"
    "    \"streamIds\": [\n        \"1\"\n    ]\n}",

    "{\n    \"type\": 4,\n    \"invocationId\": \"123\",\n"
    "    \"target\": \"Send\",\n    \"arguments\": [\n        42,\n"
    "        \"Test Message\"\n    ]\n}",

    "{\n    \"type\": 2,\n    \"invocationId\": \"123\",\n"
    "    \"item\": 42\n}",

    "{\n    \"type\": 3,\n    \"invocationId\": \"123\"\n}",

    "{\n    \"type\": 3,\n    \"invocationId\": \"123\",\n"
    "    \"result\": 42\n}",

    "{\n    \"type\": 3,\n    \"invocationId\": \"123\",\n"
    "    \"error\": \"It didn't work!\"\n}",

    "{\n    \"type\": 5,\n    \"invocationId\": \"123\"\n}",

    "{\n    \"type\": 6\n}",

    "{\n    \"type\": 7\n}",

    "{\n    \"type\": 7,\n"
    "    \"error\": \"Connection closed because of an error!\"\n}",

    "{\n    \"type\": 7,\n"
    "    \"error\": \"Connection closed because of an error!\",\n"
    "    \"allowReconnect\": true\n}",

    "{\n    \"type\": 8,\n    \"sequenceId\": 1394\n}",

    "{\n    \"type\": 9,\n    \"sequenceId\": 1234\n}",

    "{\n    \"type\": 1,\n    \"headers\": {\n        \"Foo\": \"Bar\"\n"
    "    },\n    \"invocationId\": \"123\",\n    \"target\": \"Send\",\n"
    "    \"arguments\": [\n        42,\n        \"Test Message\"\n    ]\n}",
};

/* What the encoder writes for each example, in the same order. */
static const char *spec_compact[] = {
    "{\"type\":1,\"invocationId\":\"123\",\"target\":\"Send\","
    "\"arguments\":[42,\"Test Message\"]}",
    "{\"type\":1,\"target\":\"Send\",\"arguments\":[42,\"Test Message\"]}",
    "{\"type\":1,\"invocationId\":\"123\",\"target\":\"Send\","
    "\"arguments\":[42],\"streamIds\":[\"1\"]}",
    "{\"type\":4,\"invocationId\":\"123\",\"target\":\"Send\","
    "\"arguments\":[42,\"Test Message\"]}",
    "{\"type\":2,\"invocationId\":\"123\",\"item\":42}",
    "{\"type\":3,\"invocationId\":\"123\"}",
    "{\"type\":3,\"invocationId\":\"123\",\"result\":42}",
    "{\"type\":3,\"invocationId\":\"123\",\"error\":\"It didn't work!\"}",
    "{\"type\":5,\"invocationId\":\"123\"}",
    "{\"type\":6}",
    "{\"type\":7}",
    "{\"type\":7,\"error\":\"Connection closed because of an error!\"}",
    "{\"type\":7,\"error\":\"Connection closed because of an error!\","
    "\"allowReconnect\":true}",
    "{\"type\":8,\"sequenceId\":1394}",
    "{\"type\":9,\"sequenceId\":1234}",
    "{\"type\":1,\"headers\":{\"Foo\":\"Bar\"},\"invocationId\":\"123\","
    "\"target\":\"Send\",\"arguments\":[42,\"Test Message\"]}",
};

#define EXAMPLE_COUNT  (sizeof(spec_examples) / sizeof(spec_examples[0]))


static int
decode(const char *text, const sr_limits_t *limits, sr_message_t *msg,
    sr_error_t *err)
{
    sr_error_clear(err);

    return sr_message_decode_payload(SR_PROTOCOL_JSON,
                                     (const unsigned char *) text,
                                     strlen(text), limits, msg, err);
}


static void
decode_ok(const char *text, sr_message_t *msg)
{
    int         rc;
    sr_error_t  err;

    rc = decode(text, NULL, msg, &err);
    if (rc != SR_OK) {
        fail_msg("decoding %s failed with %d: %s", text, rc, err.str);
    }
}


static void
expect_rejected_with_limits(const char *text, const sr_limits_t *limits,
    int code, const char *reason)
{
    int           rc;
    sr_error_t    err;
    sr_message_t  msg;

    rc = decode(text, limits, &msg, &err);
    if (rc != code) {
        fail_msg("%s: expected code %d, got %d (%s)", text, code, rc,
                 err.str);
    }

    if (strstr(err.str, reason) == NULL) {
        fail_msg("%s: reason \"%s\" does not mention \"%s\"", text, err.str,
                 reason);
    }

    assert_null(msg.invocation_id);
    assert_null(msg.target);
    assert_null(msg.arguments);
    assert_null(msg.result);
    assert_null(msg.error);
}


static void
expect_rejected(const char *text, int code, const char *reason)
{
    expect_rejected_with_limits(text, NULL, code, reason);
}


static void
encode_json(const sr_message_t *msg, sr_buf_t *out)
{
    int         rc;
    sr_error_t  err;

    sr_buf_reset(out);

    rc = sr_message_encode_payload(SR_PROTOCOL_JSON, msg, out, &err);
    if (rc != SR_OK) {
        fail_msg("encoding failed with %d: %s", rc, err.str);
    }

    /* a NUL so that the text can be compared as a string */
    sr_buf_append_byte(out, '\0');
    out->len--;
}


static void
test_invocation_examples_decode(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_examples[0], &msg);
    assert_int_equal(msg.type, SR_MSG_INVOCATION);
    assert_string_equal(msg.invocation_id, "123");
    assert_string_equal(msg.target, "Send");
    assert_int_equal(json_array_size(msg.arguments), 2);
    assert_int_equal(json_integer_value(json_array_get(msg.arguments, 0)),
                     42);
    assert_string_equal(json_string_value(json_array_get(msg.arguments, 1)),
                        "Test Message");
    assert_null(msg.stream_ids);
    sr_message_clear(&msg);

    decode_ok(spec_examples[1], &msg);
    assert_null(msg.invocation_id);
    assert_string_equal(msg.target, "Send");
    sr_message_clear(&msg);

    decode_ok(spec_examples[2], &msg);
    assert_int_equal(json_array_size(msg.stream_ids), 1);
    assert_string_equal(json_string_value(json_array_get(msg.stream_ids, 0)),
                        "1");
    sr_message_clear(&msg);

    decode_ok(spec_examples[3], &msg);
    assert_int_equal(msg.type, SR_MSG_STREAM_INVOCATION);
    assert_string_equal(msg.invocation_id, "123");
    sr_message_clear(&msg);
}


static void
test_stream_item_and_completion_examples_decode(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_examples[4], &msg);
    assert_int_equal(msg.type, SR_MSG_STREAM_ITEM);
    assert_int_equal(json_integer_value(msg.item), 42);
    sr_message_clear(&msg);

    decode_ok(spec_examples[5], &msg);
    assert_int_equal(msg.type, SR_MSG_COMPLETION);
    assert_null(msg.result);
    assert_null(msg.error);
    sr_message_clear(&msg);

    decode_ok(spec_examples[6], &msg);
    assert_int_equal(json_integer_value(msg.result), 42);
    assert_null(msg.error);
    sr_message_clear(&msg);

    decode_ok(spec_examples[7], &msg);
    assert_null(msg.result);
    assert_string_equal(msg.error, "It didn't work!");
    sr_message_clear(&msg);
}


static void
test_other_examples_decode(void **state)
{
    sr_message_t  msg;

    decode_ok(spec_examples[8], &msg);
    assert_int_equal(msg.type, SR_MSG_CANCEL_INVOCATION);
    assert_string_equal(msg.invocation_id, "123");
    sr_message_clear(&msg);

    decode_ok(spec_examples[9], &msg);
    assert_int_equal(msg.type, SR_MSG_PING);
    sr_message_clear(&msg);

    decode_ok(spec_examples[10], &msg);
    assert_int_equal(msg.type, SR_MSG_CLOSE);
    assert_null(msg.error);
    assert_false(msg.allow_reconnect);
    sr_message_clear(&msg);

    decode_ok(spec_examples[12], &msg);
    assert_string_equal(msg.error, "Connection closed because of an error!");
    assert_true(msg.allow_reconnect);
    sr_message_clear(&msg);

    decode_ok(spec_examples[13], &msg);
    assert_int_equal(msg.type, SR_MSG_ACK);
    assert_int_equal(msg.sequence_id, 1394);
    sr_message_clear(&msg);

    decode_ok(spec_examples[14], &msg);
    assert_int_equal(msg.type, SR_MSG_SEQUENCE);
    assert_int_equal(msg.sequence_id, 1234);
    sr_message_clear(&msg);

    decode_ok(spec_examples[15], &msg);
    assert_string_equal(json_string_value(json_object_get(msg.headers,
                                                          "Foo")), "Bar");
    sr_message_clear(&msg);
}


static void
test_examples_encode_to_compact_json(void **state)
{
    size_t        i;
    sr_buf_t      out;
    sr_message_t  msg;

    sr_buf_init(&out);

    for (i = 0; i < EXAMPLE_COUNT; i++) {
        decode_ok(spec_examples[i], &msg);
        encode_json(&msg, &out);
        assert_string_equal((char *) out.data, spec_compact[i]);
        sr_message_clear(&msg);
    }

    sr_buf_free(&out);
}


static void
test_examples_survive_json_msgpack_json(void **state)
{
    size_t        i;
    sr_buf_t      first, packed, last;
    sr_error_t    err;
    sr_message_t  a, b;

    sr_buf_init(&first);
    sr_buf_init(&packed);
    sr_buf_init(&last);

    for (i = 0; i < EXAMPLE_COUNT; i++) {
        decode_ok(spec_examples[i], &a);
        encode_json(&a, &first);

        sr_buf_reset(&packed);
        assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &a,
                                                   &packed, &err), SR_OK);
        assert_int_equal(sr_message_decode_payload(SR_PROTOCOL_MSGPACK,
                                                   packed.data, packed.len,
                                                   NULL, &b, &err), SR_OK);

        if (!sr_hub_message_equal(&a, &b)) {
            fail_msg("example %zu changed through MessagePack", i);
        }

        encode_json(&b, &last);
        assert_string_equal((char *) last.data, (char *) first.data);

        sr_message_clear(&a);
        sr_message_clear(&b);
    }

    sr_buf_free(&first);
    sr_buf_free(&packed);
    sr_buf_free(&last);
}


static void
test_rich_values_survive_json_msgpack_json(void **state)
{
    sr_buf_t      first, packed, last;
    sr_error_t    err;
    sr_message_t  a, b;

    static const char  *text =
        "{\"type\":3,\"headers\":{\"a\":\"\\u00e9\"},\"invocationId\":\"7\","
        "\"result\":{\"n\":null,\"t\":true,\"f\":false,\"i\":-9007199254740993,"
        "\"r\":0.1,\"big\":1e300,\"s\":\"\\ud83d\\ude00\",\"l\":[[],{}]}}";

    sr_buf_init(&first);
    sr_buf_init(&packed);
    sr_buf_init(&last);

    decode_ok(text, &a);
    encode_json(&a, &first);

    assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &a,
                                               &packed, &err), SR_OK);
    assert_int_equal(sr_message_decode_payload(SR_PROTOCOL_MSGPACK,
                                               packed.data, packed.len, NULL,
                                               &b, &err), SR_OK);
    assert_true(sr_hub_message_equal(&a, &b));

    encode_json(&b, &last);
    assert_string_equal((char *) last.data, (char *) first.data);

    sr_message_clear(&a);
    sr_message_clear(&b);
    sr_buf_free(&first);
    sr_buf_free(&packed);
    sr_buf_free(&last);
}


static void
test_completion_with_result_and_error_is_rejected(void **state)
{
    expect_rejected("{\"type\":3,\"invocationId\":\"123\",\"result\":42,"
                    "\"error\":\"It didn't work!\"}",
                    SR_ERR_PROTOCOL,
                    "Completion message has both 'result' and 'error'");
}


static void
test_completion_with_null_result_keeps_the_null(void **state)
{
    sr_message_t  msg;

    decode_ok("{\"type\":3,\"invocationId\":\"1\",\"result\":null}", &msg);
    assert_non_null(msg.result);
    assert_true(json_is_null(msg.result));
    sr_message_clear(&msg);

    /* a null error is no error, so a result may stand beside it */
    decode_ok("{\"type\":3,\"invocationId\":\"1\",\"result\":1,"
              "\"error\":null}", &msg);
    assert_null(msg.error);
    assert_int_equal(json_integer_value(msg.result), 1);
    sr_message_clear(&msg);
}


static void
test_unknown_properties_are_ignored(void **state)
{
    sr_message_t  msg;

    decode_ok("{\"type\":6,\"future\":{\"x\":[1,2]},\"headers\":7}", &msg);
    assert_int_equal(msg.type, SR_MSG_PING);
    sr_message_clear(&msg);

    decode_ok("{\"extra\":1,\"type\":5,\"invocationId\":\"9\",\"target\":3}",
              &msg);
    assert_int_equal(msg.type, SR_MSG_CANCEL_INVOCATION);
    assert_null(msg.target);
    sr_message_clear(&msg);
}


static void
test_missing_required_fields_are_rejected(void **state)
{
    expect_rejected("{\"target\":\"a\",\"arguments\":[]}", SR_ERR_PROTOCOL,
                    "message is missing 'type'");
    expect_rejected("{\"type\":1,\"arguments\":[]}", SR_ERR_PROTOCOL,
                    "Invocation message is missing 'target'");
    expect_rejected("{\"type\":1,\"target\":\"a\"}", SR_ERR_PROTOCOL,
                    "Invocation message is missing 'arguments'");
    expect_rejected("{\"type\":4,\"target\":\"a\",\"arguments\":[]}",
                    SR_ERR_PROTOCOL,
                    "StreamInvocation message is missing 'invocationId'");
    expect_rejected("{\"type\":2,\"invocationId\":\"1\"}", SR_ERR_PROTOCOL,
                    "StreamItem message is missing 'item'");
    expect_rejected("{\"type\":2,\"item\":1}", SR_ERR_PROTOCOL,
                    "StreamItem message is missing 'invocationId'");
    expect_rejected("{\"type\":3}", SR_ERR_PROTOCOL,
                    "Completion message is missing 'invocationId'");
    expect_rejected("{\"type\":5}", SR_ERR_PROTOCOL,
                    "CancelInvocation message is missing 'invocationId'");
    expect_rejected("{\"type\":8}", SR_ERR_PROTOCOL,
                    "Ack message is missing 'sequenceId'");
    expect_rejected("{\"type\":9}", SR_ERR_PROTOCOL,
                    "Sequence message is missing 'sequenceId'");
    expect_rejected("{\"type\":5,\"invocationId\":null}", SR_ERR_PROTOCOL,
                    "'invocationId' that is not a string");
}


static void
test_wrong_field_types_are_rejected(void **state)
{
    expect_rejected("{\"type\":\"1\"}", SR_ERR_PROTOCOL,
                    "'type' is not an integer");
    expect_rejected("{\"type\":1.0}", SR_ERR_PROTOCOL,
                    "'type' is not an integer");
    expect_rejected("{\"type\":1,\"invocationId\":5,\"target\":\"a\","
                    "\"arguments\":[]}",
                    SR_ERR_PROTOCOL, "'invocationId' that is not a string");
    expect_rejected("{\"type\":1,\"target\":[],\"arguments\":[]}",
                    SR_ERR_PROTOCOL, "'target' that is not a string");
    expect_rejected("{\"type\":1,\"target\":\"a\",\"arguments\":{}}",
                    SR_ERR_PROTOCOL, "'arguments' that are not an array");
    expect_rejected("{\"type\":1,\"target\":\"a\",\"arguments\":[],"
                    "\"streamIds\":\"1\"}",
                    SR_ERR_PROTOCOL, "'streamIds' that are not an array");
    expect_rejected("{\"type\":1,\"target\":\"a\",\"arguments\":[],"
                    "\"streamIds\":[1]}",
                    SR_ERR_PROTOCOL, "stream id that is not a string");
    expect_rejected("{\"type\":1,\"target\":\"a\",\"arguments\":[],"
                    "\"headers\":[]}",
                    SR_ERR_PROTOCOL, "'headers' that are not an object");
    expect_rejected("{\"type\":1,\"target\":\"a\",\"arguments\":[],"
                    "\"headers\":{\"a\":1}}",
                    SR_ERR_PROTOCOL, "header whose value is not a string");
    expect_rejected("{\"type\":3,\"invocationId\":\"1\",\"error\":{}}",
                    SR_ERR_PROTOCOL, "'error' that is not a string");
    expect_rejected("{\"type\":7,\"error\":1}", SR_ERR_PROTOCOL,
                    "'error' that is not a string");
    expect_rejected("{\"type\":7,\"allowReconnect\":\"yes\"}",
                    SR_ERR_PROTOCOL, "'allowReconnect' that is not a boolean");
    expect_rejected("{\"type\":8,\"sequenceId\":-1}", SR_ERR_PROTOCOL,
                    "'sequenceId' that is not a non-negative integer");
    expect_rejected("{\"type\":9,\"sequenceId\":1.5}", SR_ERR_PROTOCOL,
                    "'sequenceId' that is not a non-negative integer");
}


static void
test_unknown_type_is_unsupported(void **state)
{
    expect_rejected("{\"type\":10}", SR_ERR_UNSUPPORTED,
                    "unknown message type 10");
    expect_rejected("{\"type\":0}", SR_ERR_UNSUPPORTED,
                    "unknown message type 0");
    expect_rejected("{\"type\":-3}", SR_ERR_UNSUPPORTED,
                    "unknown message type -3");
}


static void
test_malformed_json_is_rejected(void **state)
{
    expect_rejected("", SR_ERR_PROTOCOL, "not valid JSON");
    expect_rejected("{\"type\":1", SR_ERR_PROTOCOL, "not valid JSON");
    expect_rejected("{\"type\":6} {\"type\":6}", SR_ERR_PROTOCOL,
                    "not valid JSON");
    expect_rejected("[6]", SR_ERR_PROTOCOL, "not a JSON object");
    expect_rejected("\"ping\"", SR_ERR_PROTOCOL, "not valid JSON");
    expect_rejected("{\"type\":6,\"type\":6}", SR_ERR_PROTOCOL,
                    "not valid JSON");
    expect_rejected("{\"type\":8,\"sequenceId\":99999999999999999999}",
                    SR_ERR_PROTOCOL, "not valid JSON");
}


static void
test_invalid_utf8_is_rejected(void **state)
{
    expect_rejected("{\"type\":5,\"invocationId\":\"\xc3\x28\"}",
                    SR_ERR_PROTOCOL, "not valid JSON");
    expect_rejected("{\"type\":5,\"invocationId\":\"\xed\xa0\x80\"}",
                    SR_ERR_PROTOCOL, "not valid JSON");
    expect_rejected("{\"type\":5,\"invocationId\":\"a\\u0000b\"}",
                    SR_ERR_PROTOCOL, "not valid JSON");
}


static void
test_raw_nul_byte_is_rejected(void **state)
{
    int           rc;
    sr_error_t    err;
    sr_message_t  msg;

    static const unsigned char  text[] = "{\"type\":6}\0";

    rc = sr_message_decode_payload(SR_PROTOCOL_JSON, text, sizeof(text) - 1,
                                   NULL, &msg, &err);
    assert_int_equal(rc, SR_ERR_PROTOCOL);
}


static void
test_nesting_deeper_than_32_levels_is_too_large(void **state)
{
    int           i, depth;
    char          text[256];
    size_t        n;
    sr_message_t  msg;

    for (depth = 32; depth <= 33; depth++) {
        /* the object is level 1, "item" holds levels 2 to depth */
        n = (size_t) snprintf(text, sizeof(text),
                              "{\"type\":2,\"invocationId\":\"1\",\"item\":");

        for (i = 2; i <= depth; i++) {
            text[n++] = '[';
        }

        for (i = 2; i <= depth; i++) {
            text[n++] = ']';
        }

        text[n++] = '}';
        text[n] = '\0';

        if (depth == 32) {
            decode_ok(text, &msg);
            sr_message_clear(&msg);

        } else {
            expect_rejected(text, SR_ERR_TOO_LARGE, "deeper than 32");
        }
    }
}


static void
test_limits_are_too_large_errors(void **state)
{
    sr_limits_t  limits;

    memset(&limits, 0, sizeof(limits));

    limits.max_message_size = strlen(spec_compact[0]) - 1;
    expect_rejected_with_limits(spec_compact[0], &limits, SR_ERR_TOO_LARGE,
                                "exceeds");

    limits.max_message_size = 0;
    limits.max_invocation_id = 2;
    expect_rejected_with_limits(spec_compact[0], &limits, SR_ERR_TOO_LARGE,
                                "invocationId longer than 2 bytes");
    expect_rejected_with_limits(spec_compact[8], &limits, SR_ERR_TOO_LARGE,
                                "CancelInvocation message has an "
                                "invocationId longer");

    limits.max_invocation_id = 0;
    limits.max_arguments = 1;
    expect_rejected_with_limits(spec_compact[0], &limits, SR_ERR_TOO_LARGE,
                                "2 arguments, more than 1");
}


static void
test_limits_at_the_bound_are_accepted(void **state)
{
    sr_error_t    err;
    sr_limits_t   limits;
    sr_message_t  msg;

    limits.max_message_size = strlen(spec_compact[0]);
    limits.max_invocation_id = 3;
    limits.max_arguments = 2;

    assert_int_equal(decode(spec_compact[0], &limits, &msg, &err), SR_OK);
    sr_message_clear(&msg);
}


static void
test_input_fed_byte_by_byte_yields_one_message(void **state)
{
    int           rc;
    size_t        i, len, used, messages;
    sr_buf_t      in;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&in);
    len = strlen(spec_compact[2]);
    messages = 0;

    for (i = 0; i <= len; i++) {
        sr_buf_append_byte(&in, i < len ? spec_compact[2][i]
                                        : SR_RECORD_SEPARATOR);

        rc = sr_message_decode(SR_PROTOCOL_JSON, in.data, in.len, NULL, &msg,
                               &used, &err);

        if (i < len) {
            assert_int_equal(rc, SR_AGAIN);
            continue;
        }

        assert_int_equal(rc, SR_OK);
        assert_int_equal(used, len + 1);
        assert_string_equal(msg.target, "Send");
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
    int           types[3];
    size_t        i, used, off;
    sr_error_t    err;
    sr_message_t  msg;

    static const char  text[] =
        "{\"type\":6}\x1e{\"type\":5,\"invocationId\":\"1\"}\x1e"
        "{\"type\":7}\x1e{\"type\":";

    off = 0;

    for (i = 0; i < 3; i++) {
        assert_int_equal(sr_message_decode(SR_PROTOCOL_JSON,
                                           (const unsigned char *) text + off,
                                           sizeof(text) - 1 - off, NULL,
                                           &msg, &used, &err), SR_OK);
        types[i] = msg.type;
        sr_message_clear(&msg);
        off += used;
    }

    assert_int_equal(types[0], SR_MSG_PING);
    assert_int_equal(types[1], SR_MSG_CANCEL_INVOCATION);
    assert_int_equal(types[2], SR_MSG_CLOSE);

    /* the fourth is incomplete */
    assert_int_equal(sr_message_decode(SR_PROTOCOL_JSON,
                                       (const unsigned char *) text + off,
                                       sizeof(text) - 1 - off, NULL, &msg,
                                       &used, &err), SR_AGAIN);
}


static void
test_oversized_frame_is_refused_before_its_separator(void **state)
{
    size_t                len, used;
    sr_error_t            err;
    const unsigned char  *payload;

    static const unsigned char  partial[] = "{\"type\":1,\"target\":\"";

    assert_int_equal(sr_frame_next(SR_PROTOCOL_JSON, partial,
                                   sizeof(partial) - 1, 8, &payload, &len,
                                   &used, &err), SR_ERR_TOO_LARGE);

    assert_int_equal(sr_frame_next(SR_PROTOCOL_JSON,
                                   (const unsigned char *) "{\"type\":6}\x1e",
                                   11, 10, &payload, &len, &used, &err),
                     SR_OK);
    assert_int_equal(len, 10);
    assert_int_equal(used, 11);
}


static void
test_empty_frame_is_a_protocol_error(void **state)
{
    size_t        used;
    sr_error_t    err;
    sr_message_t  msg;

    assert_int_equal(sr_message_decode(SR_PROTOCOL_JSON,
                                       (const unsigned char *) "\x1e", 1,
                                       NULL, &msg, &used, &err),
                     SR_ERR_PROTOCOL);
}


static void
test_encoding_a_message_missing_required_fields_is_invalid(void **state)
{
    sr_buf_t      out;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&out);

    sr_message_init(&msg, SR_MSG_INVOCATION);
    assert_int_equal(sr_message_encode(SR_PROTOCOL_JSON, &msg, &out, &err),
                     SR_ERR_INVALID);
    assert_non_null(strstr(err.str, "target"));

    sr_message_init(&msg, SR_MSG_STREAM_ITEM);
    msg.invocation_id = strdup("1");
    assert_int_equal(sr_message_encode(SR_PROTOCOL_MSGPACK, &msg, &out,
                                       &err), SR_ERR_INVALID);
    assert_non_null(strstr(err.str, "item"));

    msg.type = SR_MSG_COMPLETION;
    msg.result = json_integer(1);
    msg.error = strdup("boom");
    assert_int_equal(sr_message_encode(SR_PROTOCOL_JSON, &msg, &out, &err),
                     SR_ERR_INVALID);
    assert_non_null(strstr(err.str, "both"));
    sr_message_clear(&msg);

    sr_message_init(&msg, 12);
    assert_int_equal(sr_message_encode(SR_PROTOCOL_JSON, &msg, &out, &err),
                     SR_ERR_INVALID);

    /* nothing was appended by any failed call */
    assert_int_equal(out.len, 0);

    sr_buf_free(&out);
}


static void
test_encoding_keeps_what_the_buffer_held(void **state)
{
    sr_buf_t      out;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&out);
    sr_buf_append(&out, "abc", 3);

    sr_message_init(&msg, SR_MSG_PING);
    assert_int_equal(sr_message_encode(SR_PROTOCOL_JSON, &msg, &out, &err),
                     SR_OK);
    assert_int_equal(out.len, 3 + 11);
    assert_memory_equal(out.data, "abc{\"type\":6}\x1e", 14);

    sr_buf_free(&out);
}


static void
test_type_names_follow_the_spec(void **state)
{
    assert_string_equal(sr_message_type_name(SR_MSG_INVOCATION),
                        "Invocation");
    assert_string_equal(sr_message_type_name(SR_MSG_STREAM_INVOCATION),
                        "StreamInvocation");
    assert_string_equal(sr_message_type_name(SR_MSG_SEQUENCE), "Sequence");
    assert_string_equal(sr_message_type_name(0), "unknown");
    assert_string_equal(sr_message_type_name(42), "unknown");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invocation_examples_decode),
        cmocka_unit_test(test_stream_item_and_completion_examples_decode),
        cmocka_unit_test(test_other_examples_decode),
        cmocka_unit_test(test_examples_encode_to_compact_json),
        cmocka_unit_test(test_examples_survive_json_msgpack_json),
        cmocka_unit_test(test_rich_values_survive_json_msgpack_json),
        cmocka_unit_test(test_completion_with_result_and_error_is_rejected),
        cmocka_unit_test(test_completion_with_null_result_keeps_the_null),
        cmocka_unit_test(test_unknown_properties_are_ignored),
        cmocka_unit_test(test_missing_required_fields_are_rejected),
        cmocka_unit_test(test_wrong_field_types_are_rejected),
        cmocka_unit_test(test_unknown_type_is_unsupported),
        cmocka_unit_test(test_malformed_json_is_rejected),
        cmocka_unit_test(test_invalid_utf8_is_rejected),
        cmocka_unit_test(test_raw_nul_byte_is_rejected),
        cmocka_unit_test(test_nesting_deeper_than_32_levels_is_too_large),
        cmocka_unit_test(test_limits_are_too_large_errors),
        cmocka_unit_test(test_limits_at_the_bound_are_accepted),
        cmocka_unit_test(test_input_fed_byte_by_byte_yields_one_message),
        cmocka_unit_test(test_several_messages_in_one_buffer_decode_in_order),
        cmocka_unit_test(test_oversized_frame_is_refused_before_its_separator),
        cmocka_unit_test(test_empty_frame_is_a_protocol_error),
        cmocka_unit_test(
            test_encoding_a_message_missing_required_fields_is_invalid),
        cmocka_unit_test(test_encoding_keeps_what_the_buffer_held),
        cmocka_unit_test(test_type_names_follow_the_spec),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
