/*
 * The one-pass MessagePack to JSON writer of hub messages
 * (shared/src/hub_transcode.c): what it writes must be what the full
 * codec writes (decode, then encode as JSON), and whatever it is not
 * sure of it leaves to the full codec, out untouched.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include <signalr/hub_message.h>

#include "../src/hub_transcode.h"


static int
pack_write(void *data, const char *buf, size_t len)
{
    return sr_buf_append(data, buf, len) == SR_OK ? 0 : -1;
}


/* the full codec's JSON for payload, or NULL when it refuses it */
static json_t *
full_codec_json(const sr_buf_t *payload)
{
    sr_buf_t      out;
    json_t       *json;
    sr_error_t    err;
    sr_message_t  msg;

    sr_buf_init(&out);

    if (sr_message_decode_payload(SR_PROTOCOL_MSGPACK, payload->data,
                                  payload->len, NULL, &msg, &err)
        != SR_OK)
    {
        return NULL;
    }

    if (sr_message_encode_payload(SR_PROTOCOL_JSON, &msg, &out, &err)
        != SR_OK)
    {
        sr_message_clear(&msg);
        sr_buf_free(&out);
        return NULL;
    }

    json = json_loadb((const char *) out.data, out.len, 0, NULL);

    sr_message_clear(&msg);
    sr_buf_free(&out);

    return json;
}


/* transcodes payload; it must succeed and agree with the full codec */
static json_t *
expect_same_as_full_codec(const sr_buf_t *payload)
{
    sr_buf_t     out;
    json_t      *fast, *full;
    sr_error_t   err;

    sr_buf_init(&out);
    assert_int_equal(sr_hub_transcode_msgpack_json(payload->data,
                                                   payload->len, &out, &err),
                     SR_OK);

    fast = json_loadb((const char *) out.data, out.len, 0, NULL);
    assert_non_null(fast);

    full = full_codec_json(payload);
    assert_non_null(full);

    if (!json_equal(fast, full)) {
        char  *a = json_dumps(fast, JSON_COMPACT);
        char  *b = json_dumps(full, JSON_COMPACT);

        print_message("transcoded: %s\nfull codec: %s\n", a, b);
        free(a);
        free(b);
        fail();
    }

    json_decref(full);
    sr_buf_free(&out);

    return fast;
}


static void
expect_declined(const sr_buf_t *payload)
{
    sr_buf_t    out;
    sr_error_t  err;

    sr_buf_init(&out);
    assert_int_equal(sr_buf_append(&out, "kept", 4), SR_OK);

    assert_int_equal(sr_hub_transcode_msgpack_json(payload->data,
                                                   payload->len, &out, &err),
                     SR_ERR_UNSUPPORTED);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "kept", 4);

    sr_buf_free(&out);
}


static void
pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}


/* [2, {}, "7", item]: a StreamItem whose item the caller packs */
static void
start_stream_item(sr_buf_t *b, msgpack_packer *pk)
{
    sr_buf_init(b);
    msgpack_packer_init(pk, b, pack_write);
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 2);
    msgpack_pack_map(pk, 0);
    pack_str(pk, "7");
}


static void
test_every_message_type_reads_as_the_full_codec_writes_it(void **state)
{
    size_t        i;
    sr_buf_t      framed;
    json_t       *fast;
    sr_error_t    err;
    sr_message_t  msg;
    sr_buf_t      payload;

    static const char  *messages[] = {
        "{\"type\":1,\"target\":\"Send\",\"arguments\":[1,\"a\",null]}",
        "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Send\","
            "\"arguments\":[],\"streamIds\":[\"s1\",\"s2\"]}",
        "{\"type\":1,\"headers\":{\"k\":\"v\",\"x\":\"\"},"
            "\"invocationId\":\"9\",\"target\":\"T\",\"arguments\":[{}]}",
        "{\"type\":2,\"invocationId\":\"42\",\"item\":{\"id\":\"0196\","
            "\"text\":\"caf\\u00e9 \\\"quoted\\\"\\n\",\"isFinal\":true}}",
        "{\"type\":2,\"invocationId\":\"\",\"item\":null}",
        "{\"type\":3,\"invocationId\":\"5\"}",
        "{\"type\":3,\"invocationId\":\"5\",\"result\":[1.5,-2,true]}",
        "{\"type\":3,\"invocationId\":\"5\",\"error\":\"no such method\"}",
        "{\"type\":4,\"invocationId\":\"3\",\"target\":\"Stream\","
            "\"arguments\":[\"c\",{\"lastMessageId\":null}]}",
        "{\"type\":5,\"invocationId\":\"3\"}",
        "{\"type\":6}",
        "{\"type\":7}",
        "{\"type\":7,\"error\":\"bye\",\"allowReconnect\":true}",
        "{\"type\":8,\"sequenceId\":12}",
        "{\"type\":9,\"sequenceId\":9223372036854775807}",
    };

    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        const unsigned char  *p;
        size_t                len, used;

        sr_buf_init(&framed);

        assert_int_equal(sr_message_decode_payload(SR_PROTOCOL_JSON,
                             (const unsigned char *) messages[i],
                             strlen(messages[i]), NULL, &msg, &err), SR_OK);
        assert_int_equal(sr_message_encode(SR_PROTOCOL_MSGPACK, &msg,
                                           &framed, &err), SR_OK);
        sr_message_clear(&msg);

        assert_int_equal(sr_frame_next(SR_PROTOCOL_MSGPACK, framed.data,
                                       framed.len, 0, &p, &len, &used, &err),
                         SR_OK);

        payload.data = (unsigned char *) p;
        payload.len = len;

        fast = expect_same_as_full_codec(&payload);
        json_decref(fast);

        sr_buf_free(&framed);
    }
}


static void
test_text_is_escaped_and_numbers_keep_their_kind(void **state)
{
    sr_buf_t        b, out;
    sr_error_t      err;
    msgpack_packer  pk;
    json_t         *fast;

    static const char  text[] = "a\"b\\c\x01\x1f\t/\xe2\x82\xac";
    static const char  expected[] =
        "{\"type\":2,\"invocationId\":\"7\",\"item\":"
        "[\"a\\\"b\\\\c\\u0001\\u001f\\t/\xe2\x82\xac\",1.0,-0.0,"
        "0.5,-1,-9223372036854775808,18,255,{\"k\":[]}]}";

    start_stream_item(&b, &pk);
    msgpack_pack_array(&pk, 9);
    msgpack_pack_str(&pk, sizeof(text) - 1);
    msgpack_pack_str_body(&pk, text, sizeof(text) - 1);
    msgpack_pack_double(&pk, 1.0);
    msgpack_pack_double(&pk, -0.0);
    msgpack_pack_float(&pk, 0.5f);
    msgpack_pack_int8(&pk, -1);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_int64(&pk, 18);          /* signed, yet not negative */
    msgpack_pack_uint16(&pk, 255);
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "k");
    msgpack_pack_array(&pk, 0);

    sr_buf_init(&out);
    assert_int_equal(sr_hub_transcode_msgpack_json(b.data, b.len, &out,
                                                   &err), SR_OK);
    assert_int_equal(out.len, sizeof(expected) - 1);
    assert_memory_equal(out.data, expected, out.len);

    fast = expect_same_as_full_codec(&b);
    assert_true(json_is_real(json_array_get(json_object_get(fast, "item"),
                                            1)));
    json_decref(fast);

    sr_buf_free(&out);
    sr_buf_free(&b);
}


static void
test_fields_a_newer_peer_adds_are_ignored(void **state)
{
    sr_buf_t        b;
    msgpack_packer  pk;
    json_t         *fast;

    sr_buf_init(&b);
    msgpack_packer_init(&pk, &b, pack_write);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_nil(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_bin(&pk, 2);              /* bin and ext are fine here */
    msgpack_pack_bin_body(&pk, "xy", 2);
    msgpack_pack_ext(&pk, 1, 1);
    msgpack_pack_ext_body(&pk, "z", 1);
    msgpack_pack_double(&pk, NAN);
    msgpack_pack_array(&pk, 0);

    fast = expect_same_as_full_codec(&b);
    assert_null(json_object_get(fast, "allowReconnect"));
    assert_int_equal(json_object_size(fast), 1);
    json_decref(fast);

    sr_buf_free(&b);
}


/* each builder packs one item into a StreamItem the pass must refuse */
static void
item_bin(msgpack_packer *pk)
{
    msgpack_pack_bin(pk, 1);
    msgpack_pack_bin_body(pk, "b", 1);
}

static void
item_ext(msgpack_packer *pk)
{
    msgpack_pack_ext(pk, 5, 2);
    msgpack_pack_ext_body(pk, "ab", 2);
}

static void
item_huge_unsigned(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, UINT64_MAX);
}

static void
item_nan(msgpack_packer *pk)
{
    msgpack_pack_double(pk, NAN);
}

static void
item_infinity(msgpack_packer *pk)
{
    msgpack_pack_float(pk, INFINITY);
}

static void
item_nul_text(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}

static void
item_bad_utf8(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 2);
    msgpack_pack_str_body(pk, "\xc3\x28", 2);
}

static void
item_integer_key(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
}


static void
test_values_json_cannot_carry_are_left_to_the_full_codec(void **state)
{
    size_t          i;
    sr_buf_t        b;
    msgpack_packer  pk;

    static void   (*items[])(msgpack_packer *) = {
        item_bin, item_ext, item_huge_unsigned, item_nan, item_infinity,
        item_nul_text, item_bad_utf8, item_integer_key
    };

    for (i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
        start_stream_item(&b, &pk);
        items[i](&pk);

        expect_declined(&b);
        assert_null(full_codec_json(&b));

        sr_buf_free(&b);
    }
}


static void
test_maps_it_cannot_check_cheaply_are_left_to_the_full_codec(void **state)
{
    int              i;
    char             key[8];
    sr_buf_t         b, framed;
    json_t          *full;
    sr_error_t       err;
    sr_fanout_t      fanout;
    msgpack_packer   pk;
    const sr_buf_t  *json;

    /*
     * a name twice, which the full codec refuses; the empty one too,
     * whose bytes may be no pointer at all
     */
    for (i = 0; i < 2; i++) {
        const char  *name = i == 0 ? "k" : "";

        start_stream_item(&b, &pk);
        msgpack_pack_map(&pk, 2);
        pack_str(&pk, name);
        msgpack_pack_int(&pk, 1);
        pack_str(&pk, name);
        msgpack_pack_int(&pk, 2);

        expect_declined(&b);
        assert_null(full_codec_json(&b));
        sr_buf_free(&b);
    }

    /* more entries than the duplicate check covers */
    start_stream_item(&b, &pk);
    msgpack_pack_map(&pk, 40);

    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        pack_str(&pk, key);
        msgpack_pack_int(&pk, i);
    }

    expect_declined(&b);

    /* and a fan-out still writes it, through the full codec */
    sr_buf_init(&framed);
    assert_int_equal(sr_frame_write(SR_PROTOCOL_MSGPACK, b.data, b.len,
                                    &framed, &err), SR_OK);
    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_MSGPACK,
                                            framed.data, framed.len, &err),
                     SR_OK);

    json = sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, &err);
    assert_non_null(json);
    assert_true(fanout.decoded);
    assert_int_equal(json->data[json->len - 1], 0x1e);

    full = json_loadb((const char *) json->data, json->len - 1, 0, NULL);
    assert_int_equal(json_object_size(json_object_get(full, "item")), 40);
    json_decref(full);

    sr_fanout_clear(&fanout);
    sr_buf_free(&framed);
    sr_buf_free(&b);
}


static void
test_malformed_envelopes_are_left_to_the_full_codec(void **state)
{
    size_t    i;
    sr_buf_t  b;

    static const struct {
        const char  *bytes;
        size_t       len;
    } inputs[] = {
        { "", 0 },
        { "\x91", 1 },                          /* truncated */
        { "\x91\x06\x06", 3 },                  /* bytes after the array */
        { "\x90", 1 },                          /* empty array */
        { "\x06", 1 },                          /* not an array */
        { "\x91\x0a", 2 },                      /* unknown type 10 */
        { "\x91\xff", 2 },                      /* negative type */
        { "\x93\x02\x80\xc0", 4 },              /* StreamItem too short */
        { "\x94\x02\x80\xc0\x01", 5 },          /* StreamItem without id */
        { "\x94\x02\x90\xa1x\x01", 6 },         /* headers not a map */
        { "\x94\x02\x81\xa1k\x01\xa1x\x01", 9 },  /* header not text */
        { "\x95\x01\x80\xc0\xa1T\x80", 7 },     /* arguments: a map */
        { "\x95\x01\x80\xc0\x01\x90", 6 },      /* target not a string */
        { "\x96\x01\x80\xc0\xa1T\x90\x91\x01", 9 },  /* stream id */
        { "\x94\x03\x80\xa1" "5\x01", 6 },      /* error kind, no error */
        { "\x95\x03\x80\xa1" "5\x04\xc0", 7 },  /* result kind 4 */
        { "\x92\x07\x01", 3 },                  /* Close error not text */
        { "\x93\x07\xc0\x01", 4 },              /* allowReconnect 1 */
        { "\x92\x08\xff", 3 },                  /* negative sequenceId */
        { "\x92\x09\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 11 },
        { "\x91\xc1", 2 },                      /* no format */
    };

    for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        b.data = (unsigned char *) inputs[i].bytes;
        b.len = inputs[i].len;

        expect_declined(&b);
        assert_null(full_codec_json(&b));
    }
}


static void
test_fanout_writes_json_without_decoding(void **state)
{
    sr_buf_t         framed;
    sr_error_t       err;
    sr_fanout_t      fanout;
    sr_message_t     msg;
    const sr_buf_t  *json;

    static const char  expected[] =
        "{\"type\":2,\"invocationId\":\"1\",\"item\":\"x\"}\x1e";

    sr_message_init(&msg, SR_MSG_STREAM_ITEM);
    msg.invocation_id = strdup("1");
    msg.item = json_string("x");

    sr_buf_init(&framed);
    assert_int_equal(sr_message_encode(SR_PROTOCOL_MSGPACK, &msg, &framed,
                                       &err), SR_OK);
    sr_message_clear(&msg);

    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_MSGPACK,
                                            framed.data, framed.len, &err),
                     SR_OK);

    json = sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, &err);
    assert_non_null(json);
    assert_false(fanout.decoded);
    assert_int_equal(json->len, sizeof(expected) - 1);
    assert_memory_equal(json->data, expected, json->len);

    sr_fanout_clear(&fanout);
    sr_buf_free(&framed);
}


static void
test_fanout_falls_back_to_the_full_codec_and_its_error(void **state)
{
    sr_buf_t         framed, payload;
    sr_error_t       err;
    sr_fanout_t      fanout;
    msgpack_packer   pk;

    start_stream_item(&payload, &pk);
    item_bin(&pk);

    sr_buf_init(&framed);
    assert_int_equal(sr_frame_write(SR_PROTOCOL_MSGPACK, payload.data,
                                    payload.len, &framed, &err), SR_OK);
    assert_int_equal(sr_fanout_init_encoded(&fanout, SR_PROTOCOL_MSGPACK,
                                            framed.data, framed.len, &err),
                     SR_OK);

    sr_error_clear(&err);
    assert_null(sr_fanout_framed(&fanout, SR_PROTOCOL_JSON, &err));
    assert_int_equal(err.code, SR_ERR_UNSUPPORTED);
    assert_int_equal(fanout.framed[SR_PROTOCOL_JSON].len, 0);

    sr_fanout_clear(&fanout);
    sr_buf_free(&framed);
    sr_buf_free(&payload);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(
            test_every_message_type_reads_as_the_full_codec_writes_it),
        cmocka_unit_test(test_text_is_escaped_and_numbers_keep_their_kind),
        cmocka_unit_test(test_fields_a_newer_peer_adds_are_ignored),
        cmocka_unit_test(
            test_values_json_cannot_carry_are_left_to_the_full_codec),
        cmocka_unit_test(
            test_maps_it_cannot_check_cheaply_are_left_to_the_full_codec),
        cmocka_unit_test(
            test_malformed_envelopes_are_left_to_the_full_codec),
        cmocka_unit_test(test_fanout_writes_json_without_decoding),
        cmocka_unit_test(
            test_fanout_falls_back_to_the_full_codec_and_its_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
