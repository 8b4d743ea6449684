/*
 * The hub handshake: what the official clients send, what the server
 * answers, and how bad requests are refused.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signalr/handshake.h>


#define MAX_HANDSHAKE  4096

/* out holds exactly the bytes of the string literal s */
#define assert_buf_is(out, s)                                              \
    do {                                                                   \
        assert_int_equal((out)->len, sizeof(s) - 1);                       \
        assert_memory_equal((out)->data, s, sizeof(s) - 1);                \
    } while (0)


static int
parse(const char *text, sr_handshake_request_t *req, size_t *consumed,
    sr_error_t *err)
{
    sr_error_clear(err);

    return sr_handshake_parse_request((const unsigned char *) text,
                                      strlen(text), MAX_HANDSHAKE, req,
                                      consumed, err);
}


static void
expect_refused(const char *text, int code, const char *reason)
{
    int                     rc;
    size_t                  consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    rc = parse(text, &req, &consumed, &err);
    if (rc != code) {
        fail_msg("%s: expected %d, got %d (%s)", text, code, rc, err.str);
    }

    if (strstr(err.str, reason) == NULL) {
        fail_msg("%s: reason \"%s\" does not mention \"%s\"", text, err.str,
                 reason);
    }
}


static void
test_json_request_is_accepted(void **state)
{
    size_t                  consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    assert_int_equal(parse("{\"protocol\":\"json\",\"version\":1}\x1e", &req,
                           &consumed, &err), SR_OK);
    assert_int_equal(req.protocol, SR_PROTOCOL_JSON);
    assert_int_equal(req.version, 1);
    assert_int_equal(consumed, 32);
}


static void
test_messagepack_request_of_the_spec_is_accepted(void **state)
{
    size_t                  consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    assert_int_equal(parse("{\n    \"protocol\": \"messagepack\",\n"
                           "    \"version\": 1\n}\x1e", &req, &consumed,
                           &err), SR_OK);
    assert_int_equal(req.protocol, SR_PROTOCOL_MSGPACK);
    assert_int_equal(req.version, 1);
}


static void
test_version_two_of_stateful_reconnect_clients_is_accepted(void **state)
{
    size_t                  consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    assert_int_equal(parse("{\"protocol\":\"messagepack\",\"version\":2}\x1e",
                           &req, &consumed, &err), SR_OK);
    assert_int_equal(req.version, 2);
}


static void
test_bytes_after_the_request_are_left_for_messages(void **state)
{
    size_t                  consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    static const char  text[] =
        "{\"protocol\":\"json\",\"version\":1}\x1e{\"type\":6}\x1e";

    assert_int_equal(parse(text, &req, &consumed, &err), SR_OK);
    assert_int_equal(consumed, 32);
    assert_string_equal(text + consumed, "{\"type\":6}\x1e");
}


static void
test_partial_request_asks_for_more(void **state)
{
    size_t                  i, consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    static const char  text[] = "{\"protocol\":\"json\",\"version\":1}\x1e";

    for (i = 0; i < sizeof(text) - 2; i++) {
        assert_int_equal(sr_handshake_parse_request(
                             (const unsigned char *) text, i, MAX_HANDSHAKE,
                             &req, &consumed, &err), SR_AGAIN);
    }

    assert_int_equal(sr_handshake_parse_request((const unsigned char *) text,
                                                sizeof(text) - 1,
                                                MAX_HANDSHAKE, &req,
                                                &consumed, &err), SR_OK);
}


static void
test_request_without_separator_within_bound_is_too_large(void **state)
{
    size_t                  consumed;
    sr_error_t              err;
    sr_handshake_request_t  req;

    static const char  text[] = "{\"protocol\":\"json\",\"version\":1}\x1e";

    assert_int_equal(sr_handshake_parse_request((const unsigned char *) text,
                                                16, 16, &req, &consumed,
                                                &err), SR_ERR_TOO_LARGE);

    /* the separator lies beyond the bound: still too large */
    assert_int_equal(sr_handshake_parse_request((const unsigned char *) text,
                                                sizeof(text) - 1, 16, &req,
                                                &consumed, &err),
                     SR_ERR_TOO_LARGE);
}


static void
test_unknown_protocol_is_unsupported_with_a_client_text(void **state)
{
    expect_refused("{\"protocol\":\"xml\",\"version\":1}\x1e",
                   SR_ERR_UNSUPPORTED, "Protocol 'xml' is not supported.");
    expect_refused("{\"protocol\":\"JSON\",\"version\":1}\x1e",
                   SR_ERR_UNSUPPORTED, "'JSON'");
}


static void
test_odd_protocol_names_are_not_echoed(void **state)
{
    expect_refused("{\"protocol\":\"\\u00e9t\\u00e9\",\"version\":1}\x1e",
                   SR_ERR_UNSUPPORTED,
                   "The requested protocol is not supported.");
    expect_refused("{\"protocol\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                   "aaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"version\":1}\x1e",
                   SR_ERR_UNSUPPORTED,
                   "The requested protocol is not supported.");
    expect_refused("{\"protocol\":\"\",\"version\":1}\x1e",
                   SR_ERR_UNSUPPORTED,
                   "The requested protocol is not supported.");
}


static void
test_unknown_version_is_unsupported(void **state)
{
    expect_refused("{\"protocol\":\"json\",\"version\":3}\x1e",
                   SR_ERR_UNSUPPORTED,
                   "Version 3 of protocol 'json' is not supported.");
    expect_refused("{\"protocol\":\"messagepack\",\"version\":0}\x1e",
                   SR_ERR_UNSUPPORTED, "Version 0");
}


static void
test_malformed_requests_are_protocol_errors(void **state)
{
    expect_refused("{\"version\":1}\x1e", SR_ERR_PROTOCOL, "'protocol'");
    expect_refused("{\"protocol\":1,\"version\":1}\x1e", SR_ERR_PROTOCOL,
                   "'protocol'");
    expect_refused("{\"protocol\":\"json\"}\x1e", SR_ERR_PROTOCOL,
                   "'version'");
    expect_refused("{\"protocol\":\"json\",\"version\":\"1\"}\x1e",
                   SR_ERR_PROTOCOL, "'version'");
    expect_refused("{\"protocol\":\"json\",\"version\":1.0}\x1e",
                   SR_ERR_PROTOCOL, "'version'");
    expect_refused("not json\x1e", SR_ERR_PROTOCOL, "not valid JSON");
    expect_refused("[\"json\",1]\x1e", SR_ERR_PROTOCOL, "not a JSON object");
    expect_refused("\x1e", SR_ERR_PROTOCOL, "not valid JSON");
    expect_refused("{\"protocol\":\"json\",\"version\":1,"
                   "\"protocol\":\"json\"}\x1e",
                   SR_ERR_PROTOCOL, "duplicate");
}


static void
test_request_the_client_sends_parses_back(void **state)
{
    size_t                  consumed;
    sr_buf_t                out;
    sr_error_t              err;
    sr_handshake_request_t  req;

    sr_buf_init(&out);

    assert_int_equal(sr_handshake_write_request(&out, SR_PROTOCOL_MSGPACK),
                     SR_OK);
    assert_buf_is(&out, "{\"protocol\":\"messagepack\",\"version\":1}\x1e");

    assert_int_equal(sr_handshake_parse_request(out.data, out.len,
                                                MAX_HANDSHAKE, &req,
                                                &consumed, &err), SR_OK);
    assert_int_equal(req.protocol, SR_PROTOCOL_MSGPACK);
    assert_int_equal(consumed, out.len);

    sr_buf_free(&out);
}


static void
test_success_response_is_an_empty_object(void **state)
{
    sr_buf_t  out;

    sr_buf_init(&out);

    assert_int_equal(sr_handshake_write_response(&out, NULL), SR_OK);
    assert_buf_is(&out, "{}\x1e");

    sr_buf_free(&out);
}


static void
test_error_response_escapes_the_text(void **state)
{
    size_t      consumed;
    char       *server_error;
    sr_buf_t    out;
    sr_error_t  err;

    sr_buf_init(&out);

    assert_int_equal(sr_handshake_write_response(&out, "Bad \"x\"\n"), SR_OK);
    assert_buf_is(&out, "{\"error\":\"Bad \\\"x\\\"\\n\"}\x1e");

    assert_int_equal(sr_handshake_parse_response(out.data, out.len,
                                                 &server_error, &consumed,
                                                 &err), SR_OK);
    assert_string_equal(server_error, "Bad \"x\"\n");
    assert_int_equal(consumed, out.len);

    free(server_error);
    sr_buf_free(&out);
}


static void
test_error_response_refuses_invalid_utf8(void **state)
{
    sr_buf_t  out;

    sr_buf_init(&out);

    assert_int_equal(sr_handshake_write_response(&out, "\xff"),
                     SR_ERR_INVALID);
    assert_int_equal(out.len, 0);

    sr_buf_free(&out);
}


static void
test_client_reads_success_and_leaves_messages(void **state)
{
    size_t      consumed;
    char       *server_error;
    sr_error_t  err;

    static const char  text[] = "{}\x1e{\"type\":6}\x1e";

    assert_int_equal(sr_handshake_parse_response(
                         (const unsigned char *) text, sizeof(text) - 1,
                         &server_error, &consumed, &err), SR_OK);
    assert_null(server_error);
    assert_int_equal(consumed, 3);

    assert_int_equal(sr_handshake_parse_response(
                         (const unsigned char *) text, 2, &server_error,
                         &consumed, &err), SR_AGAIN);
}


static void
test_client_reads_the_spec_error_response(void **state)
{
    size_t      consumed;
    char       *server_error;
    sr_error_t  err;

    static const char  text[] =
        "{\n    \"error\": \"Requested protocol 'messagepack' is not "
        "available.\"\n}\x1e";

    assert_int_equal(sr_handshake_parse_response(
                         (const unsigned char *) text, sizeof(text) - 1,
                         &server_error, &consumed, &err), SR_OK);
    assert_string_equal(server_error,
                        "Requested protocol 'messagepack' is not available.");
    assert_int_equal(consumed, sizeof(text) - 1);

    free(server_error);
}


static void
test_client_refuses_a_message_instead_of_a_response(void **state)
{
    size_t      consumed;
    char       *server_error;
    sr_error_t  err;

    assert_int_equal(sr_handshake_parse_response(
                         (const unsigned char *) "{\"type\":6}\x1e", 11,
                         &server_error, &consumed, &err), SR_ERR_PROTOCOL);
    assert_null(server_error);

    assert_int_equal(sr_handshake_parse_response(
                         (const unsigned char *) "{\"error\":1}\x1e", 12,
                         &server_error, &consumed, &err), SR_ERR_PROTOCOL);
    assert_int_equal(sr_handshake_parse_response(
                         (const unsigned char *) "oops\x1e", 5,
                         &server_error, &consumed, &err), SR_ERR_PROTOCOL);
}


static void
test_protocol_names_match_the_handshake(void **state)
{
    assert_string_equal(sr_protocol_name(SR_PROTOCOL_JSON), "json");
    assert_string_equal(sr_protocol_name(SR_PROTOCOL_MSGPACK),
                        "messagepack");
    assert_string_equal(sr_protocol_name((sr_protocol_t) 7), "unknown");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_request_is_accepted),
        cmocka_unit_test(test_messagepack_request_of_the_spec_is_accepted),
        cmocka_unit_test(
            test_version_two_of_stateful_reconnect_clients_is_accepted),
        cmocka_unit_test(test_bytes_after_the_request_are_left_for_messages),
        cmocka_unit_test(test_partial_request_asks_for_more),
        cmocka_unit_test(
            test_request_without_separator_within_bound_is_too_large),
        cmocka_unit_test(
            test_unknown_protocol_is_unsupported_with_a_client_text),
        cmocka_unit_test(test_odd_protocol_names_are_not_echoed),
        cmocka_unit_test(test_unknown_version_is_unsupported),
        cmocka_unit_test(test_malformed_requests_are_protocol_errors),
        cmocka_unit_test(test_request_the_client_sends_parses_back),
        cmocka_unit_test(test_success_response_is_an_empty_object),
        cmocka_unit_test(test_error_response_escapes_the_text),
        cmocka_unit_test(test_error_response_refuses_invalid_utf8),
        cmocka_unit_test(test_client_reads_success_and_leaves_messages),
        cmocka_unit_test(test_client_reads_the_spec_error_response),
        cmocka_unit_test(test_client_refuses_a_message_instead_of_a_response),
        cmocka_unit_test(test_protocol_names_match_the_handshake),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
