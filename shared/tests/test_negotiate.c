/*
 * The negotiate response as TransportProtocols.md shows it, the
 * negotiateVersion query value, and random connection ids.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signalr/negotiate.h>


#define ALL_TRANSPORTS  (SR_TRANSPORT_WEBSOCKETS | SR_TRANSPORT_SSE \
                         | SR_TRANSPORT_LONG_POLLING)

#define SPEC_TRANSPORTS                                                     \
    "\"availableTransports\":["                                             \
    "{\"transport\":\"WebSockets\","                                        \
    "\"transferFormats\":[\"Text\",\"Binary\"]},"                           \
    "{\"transport\":\"ServerSentEvents\",\"transferFormats\":[\"Text\"]},"  \
    "{\"transport\":\"LongPolling\","                                       \
    "\"transferFormats\":[\"Text\",\"Binary\"]}]"


static const char *base64url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


static void
expect_body(const sr_negotiate_response_t *res, const char *expected)
{
    int         rc;
    sr_buf_t    out;
    sr_error_t  err;

    sr_buf_init(&out);

    rc = sr_negotiate_write(res, &out, &err);
    if (rc != SR_OK) {
        fail_msg("writing failed with %d: %s", rc, err.str);
    }

    sr_buf_append_byte(&out, '\0');
    assert_string_equal((char *) out.data, expected);

    sr_buf_free(&out);
}


static void
test_version_one_body_matches_the_spec_example(void **state)
{
    sr_negotiate_response_t  res = {
        .version = 1,
        .connection_id = "807809a5-31bf-470d-9e23-afaee35d8a0d",
        .connection_token = "05265228-1e2c-46c5-82a1-6a5bcc3f0143",
        .transports = ALL_TRANSPORTS,
    };

    expect_body(&res,
                "{\"connectionToken\":\"05265228-1e2c-46c5-82a1-6a5bcc3f0143\","
                "\"connectionId\":\"807809a5-31bf-470d-9e23-afaee35d8a0d\","
                "\"negotiateVersion\":1," SPEC_TRANSPORTS "}");
}


static void
test_version_zero_body_has_no_connection_token(void **state)
{
    sr_negotiate_response_t  res = {
        .version = 0,
        .connection_id = "807809a5-31bf-470d-9e23-afaee35d8a0d",
        .connection_token = "secret-that-must-not-appear",
        .transports = ALL_TRANSPORTS,
    };

    expect_body(&res,
                "{\"connectionId\":\"807809a5-31bf-470d-9e23-afaee35d8a0d\","
                "\"negotiateVersion\":0," SPEC_TRANSPORTS "}");
}


static void
test_stateful_reconnect_is_announced_only_when_enabled(void **state)
{
    sr_negotiate_response_t  res = {
        .version = 1,
        .connection_id = "a",
        .connection_token = "b",
        .transports = SR_TRANSPORT_WEBSOCKETS,
        .stateful_reconnect = 1,
    };

    expect_body(&res,
                "{\"connectionToken\":\"b\",\"connectionId\":\"a\","
                "\"negotiateVersion\":1,\"availableTransports\":["
                "{\"transport\":\"WebSockets\","
                "\"transferFormats\":[\"Text\",\"Binary\"]}],"
                "\"useStatefulReconnect\":true}");
}


static void
test_server_sent_events_offer_text_only(void **state)
{
    sr_negotiate_response_t  res = {
        .version = 0,
        .connection_id = "a",
        .transports = SR_TRANSPORT_SSE,
    };

    expect_body(&res,
                "{\"connectionId\":\"a\",\"negotiateVersion\":0,"
                "\"availableTransports\":[{\"transport\":\"ServerSentEvents\","
                "\"transferFormats\":[\"Text\"]}]}");
}


static void
test_ids_are_escaped_as_json(void **state)
{
    sr_negotiate_response_t  res = {
        .version = 0,
        .connection_id = "a\"b",
        .transports = SR_TRANSPORT_LONG_POLLING,
    };

    expect_body(&res,
                "{\"connectionId\":\"a\\\"b\",\"negotiateVersion\":0,"
                "\"availableTransports\":[{\"transport\":\"LongPolling\","
                "\"transferFormats\":[\"Text\",\"Binary\"]}]}");
}


static void
test_unusable_responses_are_invalid(void **state)
{
    sr_buf_t    out;
    sr_error_t  err;

    sr_negotiate_response_t  res = {
        .version = 2,
        .connection_id = "a",
        .connection_token = "b",
        .transports = ALL_TRANSPORTS,
    };

    sr_buf_init(&out);

    assert_int_equal(sr_negotiate_write(&res, &out, &err), SR_ERR_INVALID);

    res.version = 1;
    res.transports = 0;
    assert_int_equal(sr_negotiate_write(&res, &out, &err), SR_ERR_INVALID);
    assert_non_null(strstr(err.str, "no transport"));

    res.transports = SR_TRANSPORT_SSE;
    res.connection_token = NULL;
    assert_int_equal(sr_negotiate_write(&res, &out, &err), SR_ERR_INVALID);

    assert_int_equal(out.len, 0);

    sr_buf_free(&out);
}


static void
expect_version(const char *value, int expected)
{
    int         version, rc;
    sr_error_t  err;

    version = -1;

    rc = sr_negotiate_version(value, value ? strlen(value) : 0, &version,
                              &err);
    if (rc != SR_OK) {
        fail_msg("\"%s\" refused: %s", value, err.str);
    }

    assert_int_equal(version, expected);
}


static void
test_negotiate_version_picks_zero_or_one(void **state)
{
    expect_version(NULL, 0);
    expect_version("0", 0);
    expect_version("00", 0);
    expect_version("1", 1);
    expect_version("2", 1);
    expect_version("010", 1);
    expect_version("99999999999999999999999", 1);
}


static void
test_negotiate_version_respects_the_given_length(void **state)
{
    int         version;
    sr_error_t  err;

    /* "1&id=x": only the first byte is the value */
    assert_int_equal(sr_negotiate_version("1&id=x", 1, &version, &err),
                     SR_OK);
    assert_int_equal(version, 1);
}


static void
test_negotiate_version_refuses_non_numbers(void **state)
{
    size_t       i;
    int          version;
    sr_error_t   err;
    const char  *bad[] = { "", "-1", "+1", "1.5", "one", " 1", "1 " };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sr_negotiate_version(bad[i], strlen(bad[i]), &version, &err)
            != SR_ERR_PROTOCOL)
        {
            fail_msg("\"%s\" was accepted", bad[i]);
        }
    }
}


static void
test_random_ids_are_22_base64url_characters(void **state)
{
    size_t      i;
    char        id[SR_RANDOM_ID_LEN + 1];
    sr_error_t  err;

    memset(id, '!', sizeof(id));

    assert_int_equal(sr_random_id(id, &err), SR_OK);
    assert_int_equal(strlen(id), 22);

    for (i = 0; i < SR_RANDOM_ID_LEN; i++) {
        assert_non_null(strchr(base64url, id[i]));
    }

    /* 128 bits leave the last character's 4 low bits empty */
    assert_int_equal((strchr(base64url, id[21]) - base64url) & 0x0f, 0);
}


static int
compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}


static void
test_random_ids_do_not_repeat(void **state)
{
    size_t      i;
    sr_error_t  err;
    char      (*ids)[SR_RANDOM_ID_LEN + 1];

    ids = calloc(2000, sizeof(*ids));
    assert_non_null(ids);

    for (i = 0; i < 2000; i++) {
        assert_int_equal(sr_random_id(ids[i], &err), SR_OK);
    }

    qsort(ids, 2000, sizeof(*ids), compare_ids);

    for (i = 1; i < 2000; i++) {
        assert_string_not_equal(ids[i - 1], ids[i]);
    }

    free(ids);
}


static void
test_random_ids_use_every_character_position(void **state)
{
    size_t      i, n;
    char        id[SR_RANDOM_ID_LEN + 1];
    sr_error_t  err;
    unsigned    seen[SR_RANDOM_ID_LEN];

    memset(seen, 0, sizeof(seen));

    /* no position may be stuck on one character, e.g. from a bit error */
    for (n = 0; n < 200; n++) {
        assert_int_equal(sr_random_id(id, &err), SR_OK);

        for (i = 0; i < SR_RANDOM_ID_LEN; i++) {
            seen[i] |= 1u << ((strchr(base64url, id[i]) - base64url) % 32);
        }
    }

    for (i = 0; i < SR_RANDOM_ID_LEN - 1; i++) {
        assert_true(__builtin_popcount(seen[i]) > 8);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_one_body_matches_the_spec_example),
        cmocka_unit_test(test_version_zero_body_has_no_connection_token),
        cmocka_unit_test(
            test_stateful_reconnect_is_announced_only_when_enabled),
        cmocka_unit_test(test_server_sent_events_offer_text_only),
        cmocka_unit_test(test_ids_are_escaped_as_json),
        cmocka_unit_test(test_unusable_responses_are_invalid),
        cmocka_unit_test(test_negotiate_version_picks_zero_or_one),
        cmocka_unit_test(test_negotiate_version_respects_the_given_length),
        cmocka_unit_test(test_negotiate_version_refuses_non_numbers),
        cmocka_unit_test(test_random_ids_are_22_base64url_characters),
        cmocka_unit_test(test_random_ids_do_not_repeat),
        cmocka_unit_test(test_random_ids_use_every_character_position),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
