/*
 * RFC 6455 framing: the parser's close codes, fragmentation, chunked
 * input, lengths and masks, the writers and the accept key.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signalr/websocket.h>


#define MAX_EVENTS  16

static const unsigned char  test_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

typedef struct {
    int             opcode;
    int             close_code;
    size_t          len;
    unsigned char  *data;
} seen_event_t;

typedef struct {
    seen_event_t  events[MAX_EVENTS];
    size_t        n;
    int           rc;          /* SR_AGAIN when all input was taken */
    int           close_code;  /* on failure */
    sr_error_t    err;
} run_t;


/* Appends a frame with any first byte; lenform 0 minimal, 2 or 8 forced. */
static void
put_frame(sr_buf_t *out, unsigned char b0, const void *payload, size_t len,
    const unsigned char *mask, int lenform)
{
    unsigned char  h[SR_WS_MAX_HEADER];
    size_t         n, i, start;

    n = 2;
    h[0] = b0;

    if (lenform == 0 && len < 126) {
        h[1] = (unsigned char) len;

    } else if (lenform != 8 && len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char) (len >> 8);
        h[3] = (unsigned char) len;
        n = 4;

    } else {
        h[1] = 127;
        for (i = 0; i < 8; i++) {
            h[2 + i] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
        }
        n = 10;
    }

    if (mask != NULL) {
        h[1] |= 0x80;
        memcpy(h + n, mask, 4);
        n += 4;
    }

    assert_int_equal(sr_buf_append(out, h, n), SR_OK);

    start = out->len;
    assert_int_equal(sr_buf_append(out, payload, len), SR_OK);

    if (mask != NULL) {
        sr_ws_mask(out->data + start, len, mask, 0);
    }
}


/* A masked frame, as a client sends it. */
static void
client_frame(sr_buf_t *out, unsigned char b0, const void *payload,
    size_t len)
{
    put_frame(out, b0, payload, len, test_mask, 0);
}


/* Feeds data in chunks of chunk bytes (0: all at once). */
static void
run_parser(run_t *r, sr_ws_role_t role, size_t max_message,
    const unsigned char *data, size_t len, size_t chunk)
{
    sr_ws_parser_t  p;
    sr_ws_event_t   ev;
    size_t          pos, end, consumed;
    int             rc;

    memset(r, 0, sizeof(*r));
    sr_ws_parser_init(&p, role, max_message);

    pos = 0;
    rc = SR_AGAIN;

    while (pos < len) {
        end = (chunk == 0 || len - pos < chunk) ? len : pos + chunk;

        while (pos < end) {
            rc = sr_ws_parser_feed(&p, data + pos, end - pos, &consumed,
                                   &ev, &r->close_code, &r->err);
            assert_true(consumed <= end - pos);
            pos += consumed;

            if (rc < 0) {
                goto done;
            }

            if (rc == SR_OK) {
                assert_true(r->n < MAX_EVENTS);
                r->events[r->n].opcode = ev.opcode;
                r->events[r->n].close_code = ev.close_code;
                r->events[r->n].len = ev.len;
                r->events[r->n].data = malloc(ev.len + 1);
                assert_non_null(r->events[r->n].data);
                if (ev.len > 0) {
                    memcpy(r->events[r->n].data, ev.data, ev.len);
                }
                r->n++;
                continue;
            }

            assert_int_equal(rc, SR_AGAIN);
            assert_int_equal(pos, end);
        }
    }

    /* all input taken: an empty feed must find nothing more */
    rc = sr_ws_parser_feed(&p, data + len, 0, &consumed, &ev,
                           &r->close_code, &r->err);
    assert_int_equal(consumed, 0);

done:

    r->rc = rc;
    sr_ws_parser_free(&p);
}


static void
run_free(run_t *r)
{
    size_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->events[i].data);
    }
}


static void
expect_event(const run_t *r, size_t i, int opcode, const char *data)
{
    assert_true(i < r->n);
    assert_int_equal(r->events[i].opcode, opcode);
    assert_int_equal(r->events[i].len, strlen(data));
    assert_memory_equal(r->events[i].data, data, strlen(data));
}


/* Feeds one client's bytes and expects the connection to be closed. */
static void
expect_failure(const sr_buf_t *in, sr_ws_role_t role, size_t max,
    int close_code)
{
    run_t  r;

    run_parser(&r, role, max, in->data, in->len, 0);
    assert_true(r.rc < 0);
    assert_int_equal(r.close_code, close_code);
    assert_int_equal(r.err.code, r.rc);
    assert_true(strlen(r.err.str) > 0);
    run_free(&r);

    /* the same verdict however the bytes are split */
    run_parser(&r, role, max, in->data, in->len, 1);
    assert_true(r.rc < 0);
    assert_int_equal(r.close_code, close_code);
    run_free(&r);
}


static void
test_rfc_examples_unmasked_and_masked(void **state)
{
    static const unsigned char  unmasked[] = {
        0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
    };
    static const unsigned char  masked[] = {
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    static const unsigned char  fragmented[] = {
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f
    };
    run_t                       r;
    size_t                      chunk;

    run_parser(&r, SR_WS_ROLE_CLIENT, 0, unmasked, sizeof(unmasked), 0);
    assert_int_equal(r.rc, SR_AGAIN);
    assert_int_equal(r.n, 1);
    expect_event(&r, 0, SR_WS_OP_TEXT, "Hello");
    run_free(&r);

    run_parser(&r, SR_WS_ROLE_SERVER, 0, masked, sizeof(masked), 0);
    assert_int_equal(r.n, 1);
    expect_event(&r, 0, SR_WS_OP_TEXT, "Hello");
    run_free(&r);

    for (chunk = 0; chunk < 4; chunk++) {
        run_parser(&r, SR_WS_ROLE_CLIENT, 0, fragmented, sizeof(fragmented),
                   chunk);
        assert_int_equal(r.n, 1);
        expect_event(&r, 0, SR_WS_OP_TEXT, "Hello");
        run_free(&r);

        run_parser(&r, SR_WS_ROLE_CLIENT, 0, unmasked, sizeof(unmasked),
                   chunk);
        assert_int_equal(r.n, 1);
        expect_event(&r, 0, SR_WS_OP_TEXT, "Hello");
        run_free(&r);
    }
}


static void
test_unfragmented_server_frame_is_not_copied(void **state)
{
    static const unsigned char  in[] = {
        0x82, 0x03, 0x01, 0x02, 0x03, 0x81, 0x02, 'h', 'i'
    };
    sr_ws_parser_t              p;
    sr_ws_event_t               ev;
    sr_error_t                  err;
    size_t                      consumed;
    int                         close_code;

    sr_ws_parser_init(&p, SR_WS_ROLE_CLIENT, 100);

    assert_int_equal(sr_ws_parser_feed(&p, in, sizeof(in), &consumed, &ev,
                                       &close_code, &err), SR_OK);
    assert_int_equal(consumed, 5);
    assert_int_equal(ev.opcode, SR_WS_OP_BINARY);
    assert_ptr_equal(ev.data, in + 2);
    assert_int_equal(ev.len, 3);

    assert_int_equal(sr_ws_parser_feed(&p, in + 5, sizeof(in) - 5,
                                       &consumed, &ev, &close_code, &err),
                     SR_OK);
    assert_int_equal(consumed, 4);
    assert_ptr_equal(ev.data, in + 7);

    sr_ws_parser_free(&p);
}


static void
build_mixed_stream(sr_buf_t *in)
{
    unsigned char  big[300];

    memset(big, 'b', sizeof(big));

    client_frame(in, 0x01, "Hel", 3);               /* text, not FIN */
    client_frame(in, 0x89, "ping", 4);              /* interleaved */
    client_frame(in, 0x00, "l", 1);                 /* continuation */
    client_frame(in, 0x8a, "", 0);                  /* pong, empty */
    client_frame(in, 0x80, "o", 1);                 /* final */
    client_frame(in, 0x82, big, sizeof(big));       /* 16-bit length */
    client_frame(in, 0x81, "", 0);                  /* empty text */
    client_frame(in, 0x88, "\x03\xe8" "bye", 5);    /* close 1000 */
}


static void
check_mixed_stream(const run_t *r)
{
    assert_int_equal(r->rc, SR_AGAIN);
    assert_int_equal(r->n, 6);
    expect_event(r, 0, SR_WS_OP_PING, "ping");
    expect_event(r, 1, SR_WS_OP_PONG, "");
    expect_event(r, 2, SR_WS_OP_TEXT, "Hello");
    assert_int_equal(r->events[3].opcode, SR_WS_OP_BINARY);
    assert_int_equal(r->events[3].len, 300);
    assert_int_equal(r->events[3].data[299], 'b');
    expect_event(r, 4, SR_WS_OP_TEXT, "");
    expect_event(r, 5, SR_WS_OP_CLOSE, "bye");
    assert_int_equal(r->events[5].close_code, 1000);
}


static void
test_fragments_with_interleaved_control_frames(void **state)
{
    sr_buf_t  in;
    run_t     r;

    sr_buf_init(&in);
    build_mixed_stream(&in);

    run_parser(&r, SR_WS_ROLE_SERVER, 1000, in.data, in.len, 0);
    check_mixed_stream(&r);
    run_free(&r);

    sr_buf_free(&in);
}


static void
test_every_chunk_size_gives_the_same_events(void **state)
{
    sr_buf_t  in;
    run_t     r;
    size_t    chunk;

    sr_buf_init(&in);
    build_mixed_stream(&in);

    for (chunk = 1; chunk <= 40; chunk++) {
        run_parser(&r, SR_WS_ROLE_SERVER, 1000, in.data, in.len, chunk);
        check_mixed_stream(&r);
        run_free(&r);
    }

    sr_buf_free(&in);
}


static void
test_lengths_16_and_64_bit_minimal_or_not(void **state)
{
    unsigned char  *big;
    sr_buf_t        in;
    run_t           r;

    big = malloc(70000);
    assert_non_null(big);
    memset(big, 0x5a, 70000);

    sr_buf_init(&in);
    put_frame(&in, 0x82, big, 70000, test_mask, 0);     /* 64-bit */
    put_frame(&in, 0x81, "abc", 3, test_mask, 2);       /* 16 for 3 */
    put_frame(&in, 0x81, "defg", 4, test_mask, 8);      /* 64 for 4 */

    run_parser(&r, SR_WS_ROLE_SERVER, 70000, in.data, in.len, 4096);
    assert_int_equal(r.rc, SR_AGAIN);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.events[0].len, 70000);
    assert_memory_equal(r.events[0].data, big, 70000);
    expect_event(&r, 1, SR_WS_OP_TEXT, "abc");
    expect_event(&r, 2, SR_WS_OP_TEXT, "defg");
    run_free(&r);

    sr_buf_free(&in);
    free(big);
}


static void
test_64_bit_length_with_top_bit_is_1002(void **state)
{
    static const unsigned char  in[] = {
        0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0x01, 1, 2, 3, 4
    };
    sr_buf_t                    buf;

    sr_buf_init(&buf);
    assert_int_equal(sr_buf_append(&buf, in, sizeof(in)), SR_OK);
    expect_failure(&buf, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&buf);
}


static void
test_reserved_bits_and_unknown_opcodes_are_1002(void **state)
{
    static const unsigned char  bad_b0[] = {
        0xc1, 0xa1, 0x91,                       /* RSV1, RSV2, RSV3 */
        0x83, 0x84, 0x85, 0x86, 0x87,           /* reserved data */
        0x8b, 0x8c, 0x8d, 0x8e, 0x8f            /* reserved control */
    };
    sr_buf_t                    in;
    size_t                      i;

    for (i = 0; i < sizeof(bad_b0); i++) {
        sr_buf_init(&in);
        client_frame(&in, bad_b0[i], "x", 1);
        expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
        sr_buf_free(&in);
    }
}


static void
test_control_frames_must_be_final_and_short(void **state)
{
    unsigned char  payload[126];
    sr_buf_t       in;
    run_t          r;

    memset(payload, 'p', sizeof(payload));

    sr_buf_init(&in);
    client_frame(&in, 0x09, "x", 1);                    /* ping, no FIN */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    sr_buf_init(&in);
    client_frame(&in, 0x89, payload, 126);              /* 126 bytes */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    sr_buf_init(&in);
    client_frame(&in, 0x89, payload, 125);
    run_parser(&r, SR_WS_ROLE_SERVER, 10, in.data, in.len, 0);
    assert_int_equal(r.rc, SR_AGAIN);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.events[0].len, 125);     /* not bound by max */
    run_free(&r);
    sr_buf_free(&in);
}


static void
test_fragmentation_order_violations_are_1002(void **state)
{
    sr_buf_t  in;

    sr_buf_init(&in);
    client_frame(&in, 0x80, "x", 1);            /* nothing to continue */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    sr_buf_init(&in);
    client_frame(&in, 0x81, "a", 1);
    client_frame(&in, 0x80, "b", 1);            /* after a whole message */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    sr_buf_init(&in);
    client_frame(&in, 0x01, "a", 1);
    client_frame(&in, 0x81, "b", 1);            /* text inside text */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    sr_buf_init(&in);
    client_frame(&in, 0x02, "a", 1);
    client_frame(&in, 0x82, "b", 1);            /* binary inside binary */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);
}


static void
test_masking_rules_per_role(void **state)
{
    sr_buf_t  in;

    sr_buf_init(&in);
    put_frame(&in, 0x81, "hi", 2, NULL, 0);
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    sr_buf_init(&in);
    put_frame(&in, 0x81, "hi", 2, test_mask, 0);
    expect_failure(&in, SR_WS_ROLE_CLIENT, 0, 1002);
    sr_buf_free(&in);
}


static void
test_message_over_bound_is_1009_on_the_header(void **state)
{
    static const unsigned char  header_only[] = {
        0x82, 0xfe, 0x00, 0x0b, 1, 2, 3, 4      /* 11 bytes announced */
    };
    sr_buf_t                    in;
    run_t                       r;

    /* refused before any payload byte has arrived */
    sr_buf_init(&in);
    assert_int_equal(sr_buf_append(&in, header_only, sizeof(header_only)),
                     SR_OK);
    expect_failure(&in, SR_WS_ROLE_SERVER, 10, 1009);
    sr_buf_free(&in);

    /* reassembled size counts: 6 + 6 over 10 */
    sr_buf_init(&in);
    client_frame(&in, 0x02, "aaaaaa", 6);
    client_frame(&in, 0x80, "bbbbbb", 6);
    expect_failure(&in, SR_WS_ROLE_SERVER, 10, 1009);
    sr_buf_free(&in);

    /* exactly the bound is fine */
    sr_buf_init(&in);
    client_frame(&in, 0x02, "aaaaa", 5);
    client_frame(&in, 0x80, "bbbbb", 5);
    run_parser(&r, SR_WS_ROLE_SERVER, 10, in.data, in.len, 0);
    assert_int_equal(r.rc, SR_AGAIN);
    expect_event(&r, 0, SR_WS_OP_BINARY, "aaaaabbbbb");
    run_free(&r);
    sr_buf_free(&in);
}


static void
test_text_utf8_checked_across_fragments(void **state)
{
    sr_buf_t  in;
    run_t     r;

    /* U+00E9 and U+1F600 split between frames are fine */
    sr_buf_init(&in);
    client_frame(&in, 0x01, "caf\xc3", 4);
    client_frame(&in, 0x00, "\xa9 \xf0\x9f", 4);
    client_frame(&in, 0x89, "", 0);
    client_frame(&in, 0x80, "\x98\x80", 2);
    run_parser(&r, SR_WS_ROLE_SERVER, 0, in.data, in.len, 0);
    assert_int_equal(r.rc, SR_AGAIN);
    assert_int_equal(r.n, 2);
    expect_event(&r, 1, SR_WS_OP_TEXT, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    run_free(&r);
    sr_buf_free(&in);

    /* a message that ends inside a code point */
    sr_buf_init(&in);
    client_frame(&in, 0x01, "ok", 2);
    client_frame(&in, 0x80, "\xe2\x82", 2);
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1007);
    sr_buf_free(&in);

    /* binary messages are not checked */
    sr_buf_init(&in);
    client_frame(&in, 0x82, "\xff\xfe", 2);
    run_parser(&r, SR_WS_ROLE_SERVER, 0, in.data, in.len, 0);
    assert_int_equal(r.rc, SR_AGAIN);
    assert_int_equal(r.n, 1);
    run_free(&r);
    sr_buf_free(&in);
}


static void
test_invalid_utf8_fails_before_the_message_ends(void **state)
{
    static const char  *bad[] = {
        "\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xe0\x80\xaf", "\x80", "a\xc3(",
    };
    sr_buf_t            in;
    size_t              i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* the first fragment alone, no FIN: refused without the rest */
        sr_buf_init(&in);
        client_frame(&in, 0x01, bad[i], strlen(bad[i]));
        expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1007);
        sr_buf_free(&in);

        /* and the same unmasked from a server, on the direct path */
        sr_buf_init(&in);
        put_frame(&in, 0x81, bad[i], strlen(bad[i]), NULL, 0);
        expect_failure(&in, SR_WS_ROLE_CLIENT, 0, 1007);
        sr_buf_free(&in);
    }
}


static void
test_close_payloads(void **state)
{
    static const int  bad_codes[] = {
        0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535
    };
    static const int  good_codes[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999
    };
    unsigned char     payload[4];
    sr_buf_t          in;
    run_t             r;
    size_t            i;

    sr_buf_init(&in);
    client_frame(&in, 0x88, "", 0);
    run_parser(&r, SR_WS_ROLE_SERVER, 0, in.data, in.len, 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.events[0].opcode, SR_WS_OP_CLOSE);
    assert_int_equal(r.events[0].close_code, SR_WS_CLOSE_NO_STATUS);
    run_free(&r);
    sr_buf_free(&in);

    sr_buf_init(&in);
    client_frame(&in, 0x88, "\x03", 1);
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
    sr_buf_free(&in);

    for (i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        payload[0] = (unsigned char) (bad_codes[i] >> 8);
        payload[1] = (unsigned char) bad_codes[i];
        sr_buf_init(&in);
        client_frame(&in, 0x88, payload, 2);
        expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1002);
        sr_buf_free(&in);
    }

    for (i = 0; i < sizeof(good_codes) / sizeof(good_codes[0]); i++) {
        payload[0] = (unsigned char) (good_codes[i] >> 8);
        payload[1] = (unsigned char) good_codes[i];
        payload[2] = 'o';
        payload[3] = 'k';
        sr_buf_init(&in);
        client_frame(&in, 0x88, payload, 4);
        run_parser(&r, SR_WS_ROLE_SERVER, 0, in.data, in.len, 0);
        assert_int_equal(r.rc, SR_AGAIN);
        assert_int_equal(r.events[0].close_code, good_codes[i]);
        expect_event(&r, 0, SR_WS_OP_CLOSE, "ok");
        run_free(&r);
        sr_buf_free(&in);
    }

    sr_buf_init(&in);
    client_frame(&in, 0x88, "\x03\xe8\xc3", 3);     /* reason cut */
    expect_failure(&in, SR_WS_ROLE_SERVER, 0, 1007);
    sr_buf_free(&in);
}


static void
test_utf8_valid(void **state)
{
    assert_true(sr_utf8_valid((const unsigned char *) "", 0));
    assert_true(sr_utf8_valid((const unsigned char *) "plain", 5));
    assert_true(sr_utf8_valid((const unsigned char *) "\xc2\x80", 2));
    assert_true(sr_utf8_valid((const unsigned char *) "\xef\xbf\xbf", 3));
    assert_true(sr_utf8_valid((const unsigned char *) "\xed\x9f\xbf", 3));
    assert_true(sr_utf8_valid((const unsigned char *) "\xf4\x8f\xbf\xbf",
                              4));
    assert_false(sr_utf8_valid((const unsigned char *) "\xc1\xbf", 2));
    assert_false(sr_utf8_valid((const unsigned char *) "\xed\xbf\xbf", 3));
    assert_false(sr_utf8_valid((const unsigned char *) "\xf0\x8f\xbf\xbf",
                               4));
    assert_false(sr_utf8_valid((const unsigned char *) "\xf5\x80\x80\x80",
                               4));
    assert_false(sr_utf8_valid((const unsigned char *) "\xe2\x82", 2));
}


static void
test_write_header_picks_the_minimal_length(void **state)
{
    unsigned char  h[SR_WS_MAX_HEADER];

    assert_int_equal(sr_ws_write_header(h, 1, SR_WS_OP_TEXT, 125, NULL), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 125);

    assert_int_equal(sr_ws_write_header(h, 0, SR_WS_OP_BINARY, 126, NULL),
                     4);
    assert_int_equal(h[0], 0x02);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2] << 8 | h[3], 126);

    assert_int_equal(sr_ws_write_header(h, 1, SR_WS_OP_BINARY, 65535, NULL),
                     4);

    assert_int_equal(sr_ws_write_header(h, 1, SR_WS_OP_BINARY, 65536,
                                        test_mask), 14);
    assert_int_equal(h[1], 0xff);
    assert_int_equal(h[7], 1);
    assert_int_equal(h[8], 0);
    assert_memory_equal(h + 10, test_mask, 4);
}


static void
test_written_frames_parse_back(void **state)
{
    char      reason[200];
    sr_buf_t  out;
    run_t     r;

    memset(reason, 'r', sizeof(reason));
    reason[122] = '\xc3';           /* a two-byte character at the cut */
    reason[123] = '\xa9';
    reason[199] = '\0';

    sr_buf_init(&out);
    assert_int_equal(sr_ws_write_frame(&out, SR_WS_OP_TEXT,
                                       (const unsigned char *) "masked", 6,
                                       test_mask), SR_OK);
    assert_int_equal(sr_ws_write_close(&out, 4000, reason, test_mask),
                     SR_OK);

    run_parser(&r, SR_WS_ROLE_SERVER, 0, out.data, out.len, 0);
    assert_int_equal(r.rc, SR_AGAIN);
    assert_int_equal(r.n, 2);
    expect_event(&r, 0, SR_WS_OP_TEXT, "masked");
    assert_int_equal(r.events[1].close_code, 4000);
    assert_int_equal(r.events[1].len, 122);     /* cut before the 'é' */
    run_free(&r);

    sr_buf_reset(&out);
    assert_int_equal(sr_ws_write_close(&out, 1005, "ignored", NULL), SR_OK);
    assert_int_equal(out.len, 2);
    assert_int_equal(out.data[0], 0x88);
    assert_int_equal(out.data[1], 0);

    assert_int_equal(sr_ws_write_close(&out, 1006, NULL, NULL),
                     SR_ERR_INVALID);
    assert_int_equal(sr_ws_write_frame(&out, SR_WS_OP_PING,
                                       (const unsigned char *) reason, 126,
                                       NULL), SR_ERR_INVALID);
    assert_int_equal(out.len, 2);
    sr_buf_free(&out);
}


static void
test_mask_with_offset(void **state)
{
    unsigned char  a[7] = "abcdefg", b[7] = "abcdefg";

    sr_ws_mask(a, 7, test_mask, 0);
    sr_ws_mask(b, 3, test_mask, 0);
    sr_ws_mask(b + 3, 4, test_mask, 3);
    assert_memory_equal(a, b, 7);

    sr_ws_mask(a, 7, test_mask, 0);
    assert_memory_equal(a, "abcdefg", 7);
}


static void
test_accept_key(void **state)
{
    static const char  *bad[] = {
        "dGhlIHNhbXBsZSBub25jZQ=",          /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===",        /* 25 */
        "dGhlIHNhbXBsZSBub25jZ*==",         /* outside the alphabet */
        "dGhlIHNhbXBsZSBub25jZQQ=",         /* 17 bytes */
        "dGhlIHNh=XBsZSBub25jZQ==",         /* padding inside */
    };
    char                out[SR_WS_ACCEPT_LEN + 1];
    sr_error_t          err;
    size_t              i;

    assert_int_equal(sr_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out,
                                      &err), SR_OK);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sr_ws_accept_key(bad[i], strlen(bad[i]), out,
                                          &err), SR_ERR_PROTOCOL);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_rfc_examples_unmasked_and_masked),
        cmocka_unit_test(test_unfragmented_server_frame_is_not_copied),
        cmocka_unit_test(test_fragments_with_interleaved_control_frames),
        cmocka_unit_test(test_every_chunk_size_gives_the_same_events),
        cmocka_unit_test(test_lengths_16_and_64_bit_minimal_or_not),
        cmocka_unit_test(test_64_bit_length_with_top_bit_is_1002),
        cmocka_unit_test(test_reserved_bits_and_unknown_opcodes_are_1002),
        cmocka_unit_test(test_control_frames_must_be_final_and_short),
        cmocka_unit_test(test_fragmentation_order_violations_are_1002),
        cmocka_unit_test(test_masking_rules_per_role),
        cmocka_unit_test(test_message_over_bound_is_1009_on_the_header),
        cmocka_unit_test(test_text_utf8_checked_across_fragments),
        cmocka_unit_test(test_invalid_utf8_fails_before_the_message_ends),
        cmocka_unit_test(test_close_payloads),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_write_header_picks_the_minimal_length),
        cmocka_unit_test(test_written_frames_parse_back),
        cmocka_unit_test(test_mask_with_offset),
        cmocka_unit_test(test_accept_key),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
