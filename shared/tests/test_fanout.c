/*
 * Fan-out: one message sent to many connections is encoded at most once
 * per protocol, only when a connection of that protocol asks for it.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signalr/hub_message.h>


static void
make_stream_item(sr_message_t *msg)
{
    sr_message_init(msg, SR_MSG_STREAM_ITEM);
    msg->invocation_id = strdup("42");
    msg->item = json_pack("{s:s,s:b}", "text", "hello", "isFinal", 0);
    assert_non_null(msg->invocation_id);
    assert_non_null(msg->item);
}


static void
test_fanout_takes_the_message_and_leaves_it_cleared(void **state)
{
    sr_fanout_t   fanout;
    sr_message_t  msg;

    make_stream_item(&msg);
    sr_fanout_init(&fanout, &msg);

    assert_null(msg.invocation_id);
    assert_null(msg.item);
    assert_string_equal(fanout.msg.invocation_id, "42");

    sr_fanout_clear(&fanout);
}


static void
test_nothing_is_encoded_before_it_is_asked_for(void **state)
{
    sr_fanout_t   fanout;
    sr_message_t  msg;

    make_stream_item(&msg);
    sr_fanout_init(&fanout, &msg);

    assert_int_equal(fanout.framed[SR_PROTOCOL_JSON].len, 0);
    assert_int_equal(fanout.framed[SR_PROTOCOL_MSGPACK].len, 0);

    assert_non_null(sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, NULL));
    assert_int_equal(fanout.framed[SR_PROTOCOL_MSGPACK].len, 0);

    sr_fanout_clear(&fanout);
}


static void
test_each_protocol_is_encoded_once_and_shared(void **state)
{
    sr_buf_t         expected;
    sr_error_t       err;
    sr_fanout_t      fanout;
    sr_message_t     msg, copy;
    const sr_buf_t  *first, *again;
    int              p;

    for (p = 0; p < SR_PROTOCOL_COUNT; p++) {
        make_stream_item(&copy);
        sr_buf_init(&expected);
        assert_int_equal(sr_message_encode(p, &copy, &expected, &err), SR_OK);
        sr_message_clear(&copy);

        make_stream_item(&msg);
        sr_fanout_init(&fanout, &msg);

        first = sr_fanout_framed(&fanout, p, &err);
        assert_non_null(first);
        assert_int_equal(first->len, expected.len);
        assert_memory_equal(first->data, expected.data, expected.len);

        /* the same bytes, not a second encoding */
        again = sr_fanout_framed(&fanout, p, &err);
        assert_ptr_equal(again, first);
        assert_ptr_equal(again->data, first->data);

        sr_fanout_clear(&fanout);
        sr_buf_free(&expected);
    }
}


static void
test_encoded_input_is_copied_and_transcoded_on_demand(void **state)
{
    sr_buf_t         framed;
    sr_error_t       err;
    sr_fanout_t      fanout;
    sr_message_t     msg;
    const sr_buf_t  *json, *packed;

    static const char  expected_json[] =
        "{\"type\":2,\"invocationId\":\"42\",\"item\":"
        "{\"text\":\"hello\",\"isFinal\":false}}\x1e";

    make_stream_item(&msg);
    sr_buf_init(&framed);
    assert_int_equal(sr_message_encode(SR_PROTOCOL_MSGPACK, &msg, &framed,
                                       &err), SR_OK);
    sr_message_clear(&msg);

    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_MSGPACK,
                                            framed.data, framed.len, &err),
                     SR_OK);

    packed = sr_fanout_framed(&fanout, SR_PROTOCOL_MSGPACK, &err);
    assert_non_null(packed);
    assert_ptr_not_equal(packed->data, framed.data);
    assert_int_equal(packed->len, framed.len);
    assert_memory_equal(packed->data, framed.data, framed.len);
    assert_false(fanout.decoded);

    /* the input may go away: the fan-out holds its own copy */
    memset(framed.data, 0, framed.len);
    sr_buf_free(&framed);

    /* written from the MessagePack bytes, without decoding them */
    json = sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, &err);
    assert_non_null(json);
    assert_false(fanout.decoded);
    assert_int_equal(json->len, sizeof(expected_json) - 1);
    assert_memory_equal(json->data, expected_json, json->len);

    sr_fanout_clear(&fanout);
}


static void
test_an_unframed_payload_is_framed_once_into_the_fanout(void **state)
{
    sr_buf_t         framed;
    sr_error_t       err;
    sr_fanout_t      fanout;
    sr_message_t     msg;
    const sr_buf_t  *packed, *json;

    static const char  expected_json[] =
        "{\"type\":2,\"invocationId\":\"42\",\"item\":"
        "{\"text\":\"hello\",\"isFinal\":false}}\x1e";

    make_stream_item(&msg);
    sr_buf_init(&framed);
    assert_int_equal(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg,
                                               &framed, &err), SR_OK);
    sr_message_clear(&msg);

    assert_int_equal(sr_fanout_init_payload(&fanout, SR_PROTOCOL_MSGPACK,
                                            framed.data, framed.len, &err),
                     SR_OK);

    /* the varint length prefix, then the payload as it was */
    packed = sr_fanout_framed(&fanout, SR_PROTOCOL_MSGPACK, &err);
    assert_non_null(packed);
    assert_int_equal(packed->len, framed.len + 1);
    assert_int_equal(packed->data[0], framed.len);
    assert_memory_equal(packed->data + 1, framed.data, framed.len);

    json = sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, &err);
    assert_non_null(json);
    assert_int_equal(json->len, sizeof(expected_json) - 1);
    assert_memory_equal(json->data, expected_json, json->len);

    sr_fanout_clear(&fanout);

    assert_int_equal(sr_fanout_init_payload(&fanout, (sr_protocol_t) 7,
                                            framed.data, framed.len, &err),
                     SR_ERR_INVALID);
    sr_fanout_clear(&fanout);

    sr_buf_free(&framed);
}


static void
test_encoded_input_must_be_exactly_one_frame(void **state)
{
    sr_error_t   err;
    sr_fanout_t  fanout;

    static const unsigned char  two[] = "{\"type\":6}\x1e{\"type\":6}\x1e";

    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_JSON,
                                            (const unsigned char *)
                                            "{\"type\":6}", 10, &err),
                     SR_ERR_INVALID);
    sr_fanout_clear(&fanout);

    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_JSON, two,
                                            sizeof(two) - 1, &err),
                     SR_ERR_INVALID);
    sr_fanout_clear(&fanout);
}


static void
test_undecodable_input_fails_only_the_other_protocol(void **state)
{
    sr_error_t       err;
    sr_fanout_t      fanout;
    const sr_buf_t  *same;

    static const unsigned char  bad[] = "{\"type\":2}\x1e";

    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_JSON, bad,
                                            sizeof(bad) - 1, &err), SR_OK);

    same = sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, &err);
    assert_non_null(same);
    assert_int_equal(same->len, sizeof(bad) - 1);

    sr_error_clear(&err);
    assert_null(sr_fanout_framed(&fanout, SR_PROTOCOL_MSGPACK, &err));
    assert_int_equal(err.code, SR_ERR_PROTOCOL);
    assert_non_null(strstr(err.str, "invocationId"));

    sr_fanout_clear(&fanout);
}


static void
test_unknown_protocol_is_refused(void **state)
{
    sr_error_t    err;
    sr_fanout_t   fanout;
    sr_message_t  msg;

    sr_message_init(&msg, SR_MSG_PING);
    sr_fanout_init(&fanout, &msg);

    assert_null(sr_fanout_framed(&fanout, (sr_protocol_t) 5, &err));
    assert_int_equal(err.code, SR_ERR_INVALID);

    sr_fanout_clear(&fanout);
}


static void
test_unencodable_message_reports_why(void **state)
{
    sr_error_t    err;
    sr_fanout_t   fanout;
    sr_message_t  msg;

    sr_message_init(&msg, SR_MSG_COMPLETION);
    sr_fanout_init(&fanout, &msg);

    assert_null(sr_fanout_framed(&fanout, SR_PROTOCOL_MSGPACK, &err));
    assert_int_equal(err.code, SR_ERR_INVALID);
    assert_non_null(strstr(err.str, "invocation id"));

    sr_fanout_clear(&fanout);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_takes_the_message_and_leaves_it_cleared),
        cmocka_unit_test(test_nothing_is_encoded_before_it_is_asked_for),
        cmocka_unit_test(test_each_protocol_is_encoded_once_and_shared),
        cmocka_unit_test(
            test_encoded_input_is_copied_and_transcoded_on_demand),
        cmocka_unit_test(
            test_an_unframed_payload_is_framed_once_into_the_fanout),
        cmocka_unit_test(test_encoded_input_must_be_exactly_one_frame),
        cmocka_unit_test(
            test_undecodable_input_fails_only_the_other_protocol),
        cmocka_unit_test(test_unknown_protocol_is_refused),
        cmocka_unit_test(test_unencodable_message_reports_why),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
