/*
 * RFC 6455 framing. The parser is a small state machine over the frame
 * header (collected in p->header until complete) and the payload (taken
 * as it arrives, unmasked into p->message or p->control).
 */

#include <string.h>

#include <openssl/evp.h>

#include <signalr/websocket.h>


#define SR_WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define SR_WS_KEY_LEN       24      /* base64 of 16 bytes */
#define SR_WS_MAX_CONTROL   125

#define SR_UTF8_ACCEPT      0u
#define SR_UTF8_REJECT      0xffffffffu


static uint32_t sr_utf8_step(uint32_t state, unsigned char c);
static uint32_t sr_utf8_scan(uint32_t state, const unsigned char *data,
    size_t len);
static int sr_ws_fail(int *close_code, int status, sr_error_t *err,
    int code, const char *reason);
static int sr_ws_is_control(int opcode);
static size_t sr_ws_header_need(const unsigned char *header, size_t have);
static int sr_ws_check_start(sr_ws_parser_t *p, int *close_code,
    sr_error_t *err);
static int sr_ws_read_header(sr_ws_parser_t *p, const unsigned char *data,
    size_t len, size_t *used, int *close_code, sr_error_t *err);
static int sr_ws_begin_frame(sr_ws_parser_t *p, int *close_code,
    sr_error_t *err);
static int sr_ws_read_payload(sr_ws_parser_t *p, const unsigned char *data,
    size_t len, size_t *used, int *close_code, sr_error_t *err);
static int sr_ws_try_direct(sr_ws_parser_t *p, const unsigned char *data,
    size_t len, size_t *used, sr_ws_event_t *ev, int *close_code,
    sr_error_t *err);
static int sr_ws_end_frame(sr_ws_parser_t *p, sr_ws_event_t *ev,
    int *close_code, sr_error_t *err);
static int sr_ws_check_close(sr_ws_parser_t *p, sr_ws_event_t *ev,
    int *close_code, sr_error_t *err);
static int sr_ws_close_code_valid(int code);


/*
 * UTF-8 is checked by a byte-at-a-time stepper so that a code point may
 * be split across frames and reads. Between code points the state is 0;
 * inside one it holds the continuation bytes still due (bits 0-1) and
 * the range allowed for the next byte (bits 8-15 and 16-23). Narrowing
 * that range after the lead byte refuses overlong forms, surrogates and
 * code points above U+10FFFF at their first wrong byte. The same
 * stepper checks whole strings for the hub codec and the IPC bodies.
 */

static uint32_t
sr_utf8_step(uint32_t state, unsigned char c)
{
    uint32_t  need, lo, hi;

    if (state == SR_UTF8_ACCEPT) {

        if (c < 0x80) {
            return SR_UTF8_ACCEPT;
        }

        if (c < 0xc2 || c > 0xf4) {
            return SR_UTF8_REJECT;
        }

        lo = 0x80;
        hi = 0xbf;

        if (c < 0xe0) {
            need = 1;

        } else if (c < 0xf0) {
            need = 2;
            lo = (c == 0xe0) ? 0xa0 : 0x80;
            hi = (c == 0xed) ? 0x9f : 0xbf;

        } else {
            need = 3;
            lo = (c == 0xf0) ? 0x90 : 0x80;
            hi = (c == 0xf4) ? 0x8f : 0xbf;
        }

        return need | lo << 8 | hi << 16;
    }

    lo = (state >> 8) & 0xff;
    hi = (state >> 16) & 0xff;

    if (c < lo || c > hi) {
        return SR_UTF8_REJECT;
    }

    need = (state & 0x3) - 1;

    if (need == 0) {
        return SR_UTF8_ACCEPT;
    }

    return need | 0x80 << 8 | 0xbf << 16;
}


static uint32_t
sr_utf8_scan(uint32_t state, const unsigned char *data, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {

        if (state == SR_UTF8_ACCEPT && data[i] < 0x80) {
            continue;
        }

        state = sr_utf8_step(state, data[i]);

        if (state == SR_UTF8_REJECT) {
            return SR_UTF8_REJECT;
        }
    }

    return state;
}


int
sr_utf8_valid(const unsigned char *data, size_t len)
{
    return sr_utf8_scan(SR_UTF8_ACCEPT, data, len) == SR_UTF8_ACCEPT;
}


void
sr_ws_parser_init(sr_ws_parser_t *p, sr_ws_role_t role, size_t max_message)
{
    memset(p, 0, sizeof(*p));

    p->role = role;
    p->max_message = max_message;

    sr_buf_init(&p->message);
    sr_buf_init(&p->control);
}


void
sr_ws_parser_free(sr_ws_parser_t *p)
{
    sr_buf_free(&p->message);
    sr_buf_free(&p->control);
}


static int
sr_ws_fail(int *close_code, int status, sr_error_t *err, int code,
    const char *reason)
{
    *close_code = status;

    return sr_error_set(err, code, "%s", reason);
}


static int
sr_ws_is_control(int opcode)
{
    return (opcode & 0x8) != 0;
}


/* How many header bytes the frame needs, once the first two are known. */

static size_t
sr_ws_header_need(const unsigned char *header, size_t have)
{
    size_t  need;

    if (have < 2) {
        return 2;
    }

    need = 2;

    switch (header[1] & 0x7f) {
    case 126:
        need += 2;
        break;
    case 127:
        need += 8;
        break;
    default:
        break;
    }

    if (header[1] & 0x80) {
        need += 4;
    }

    return need;
}


/* Checks what the first two header bytes say, before the rest arrives. */

static int
sr_ws_check_start(sr_ws_parser_t *p, int *close_code, sr_error_t *err)
{
    int  opcode, fin, masked, len7;

    fin = (p->header[0] & 0x80) != 0;
    opcode = p->header[0] & 0x0f;
    masked = (p->header[1] & 0x80) != 0;
    len7 = p->header[1] & 0x7f;

    if (p->header[0] & 0x70) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL,
                          "reserved bits set without an extension");
    }

    switch (opcode) {
    case SR_WS_OP_CONTINUATION:
    case SR_WS_OP_TEXT:
    case SR_WS_OP_BINARY:
    case SR_WS_OP_CLOSE:
    case SR_WS_OP_PING:
    case SR_WS_OP_PONG:
        break;
    default:
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL, "unknown opcode");
    }

    if (sr_ws_is_control(opcode) && (!fin || len7 > SR_WS_MAX_CONTROL)) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL,
                          "control frame fragmented or over 125 bytes");
    }

    if (p->role == SR_WS_ROLE_SERVER && !masked) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL, "unmasked frame from a client");
    }

    if (p->role == SR_WS_ROLE_CLIENT && masked) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL, "masked frame from a server");
    }

    if (opcode == SR_WS_OP_CONTINUATION && p->message_opcode == 0) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL,
                          "continuation frame without a message");
    }

    if ((opcode == SR_WS_OP_TEXT || opcode == SR_WS_OP_BINARY)
        && p->message_opcode != 0)
    {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL,
                          "data frame inside a fragmented message");
    }

    return SR_OK;
}


static int
sr_ws_read_header(sr_ws_parser_t *p, const unsigned char *data, size_t len,
    size_t *used, int *close_code, sr_error_t *err)
{
    size_t  need, take;
    int     rc;

    *used = 0;

    for ( ;; ) {
        need = sr_ws_header_need(p->header, p->header_len);

        if (p->header_len == need) {
            break;
        }

        if (*used == len) {
            return SR_AGAIN;
        }

        take = need - p->header_len;
        if (take > len - *used) {
            take = len - *used;
        }

        memcpy(p->header + p->header_len, data + *used, take);
        p->header_len += take;
        *used += take;

        if (p->header_len == 2 && need == 2) {
            rc = sr_ws_check_start(p, close_code, err);
            if (rc != SR_OK) {
                return rc;
            }
        }
    }

    return sr_ws_begin_frame(p, close_code, err);
}


/* The header is complete: decode the length and mask, check the bound. */

static int
sr_ws_begin_frame(sr_ws_parser_t *p, int *close_code, sr_error_t *err)
{
    const unsigned char  *h;
    uint64_t              len;
    size_t                pos, i, held;

    h = p->header;
    pos = 2;
    len = h[1] & 0x7f;

    if (len == 126) {
        len = (uint64_t) h[2] << 8 | h[3];
        pos = 4;

    } else if (len == 127) {
        if (h[2] & 0x80) {
            return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                              SR_ERR_PROTOCOL,
                              "64-bit length with its top bit set");
        }

        len = 0;
        for (i = 0; i < 8; i++) {
            len = len << 8 | h[2 + i];
        }

        pos = 10;
    }

    p->fin = (h[0] & 0x80) != 0;
    p->opcode = h[0] & 0x0f;
    p->masked = (h[1] & 0x80) != 0;

    if (p->masked) {
        memcpy(p->mask, h + pos, 4);
    }

    p->remaining = len;
    p->frame_offset = 0;
    p->in_frame = 1;

    if (sr_ws_is_control(p->opcode)) {
        sr_buf_reset(&p->control);
        return SR_OK;
    }

    if (p->opcode != SR_WS_OP_CONTINUATION) {
        /* a new message: the previous event's data is no longer owed */
        sr_buf_reset(&p->message);
        p->message_opcode = p->opcode;
        p->utf8_state = SR_UTF8_ACCEPT;
    }

    held = p->message.len;

    /* refuse on the header, before a byte of the payload is kept */
    if (p->max_message != 0
        && (held > p->max_message || len > p->max_message - held))
    {
        return sr_ws_fail(close_code, SR_WS_CLOSE_TOO_BIG, err,
                          SR_ERR_TOO_LARGE, "message too big");
    }

    return SR_OK;
}


static int
sr_ws_read_payload(sr_ws_parser_t *p, const unsigned char *data, size_t len,
    size_t *used, int *close_code, sr_error_t *err)
{
    sr_buf_t       *buf;
    unsigned char  *dst;
    size_t          take;

    take = len;
    if (take > p->remaining) {
        take = (size_t) p->remaining;
    }

    *used = take;

    buf = sr_ws_is_control(p->opcode) ? &p->control : &p->message;

    if (sr_buf_reserve(buf, take) != SR_OK) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_INTERNAL_ERROR, err,
                          SR_ERR_NOMEM, "out of memory for a message");
    }

    dst = buf->data + buf->len;
    memcpy(dst, data, take);

    if (p->masked) {
        sr_ws_mask(dst, take, p->mask, p->frame_offset);
    }

    buf->len += take;
    p->remaining -= take;
    p->frame_offset += take;

    if (buf == &p->message && p->message_opcode == SR_WS_OP_TEXT) {
        p->utf8_state = sr_utf8_scan(p->utf8_state, dst, take);

        if (p->utf8_state == SR_UTF8_REJECT) {
            return sr_ws_fail(close_code, SR_WS_CLOSE_INVALID_PAYLOAD, err,
                              SR_ERR_PROTOCOL, "invalid utf-8 in text");
        }
    }

    return SR_OK;
}


/*
 * An unmasked, unfragmented data frame wholly inside the input (what a
 * server sends to a client) is handed out in place, without a copy.
 * SR_AGAIN means the frame does not qualify and takes the copying path.
 */

static int
sr_ws_try_direct(sr_ws_parser_t *p, const unsigned char *data, size_t len,
    size_t *used, sr_ws_event_t *ev, int *close_code, sr_error_t *err)
{
    *used = 0;

    if (p->masked || !p->fin || sr_ws_is_control(p->opcode)
        || p->opcode == SR_WS_OP_CONTINUATION || p->remaining > len)
    {
        return SR_AGAIN;
    }

    if (p->opcode == SR_WS_OP_TEXT
        && !sr_utf8_valid(data, (size_t) p->remaining))
    {
        return sr_ws_fail(close_code, SR_WS_CLOSE_INVALID_PAYLOAD, err,
                          SR_ERR_PROTOCOL, "invalid utf-8 in text");
    }

    *used = (size_t) p->remaining;

    ev->opcode = p->opcode;
    ev->data = data;
    ev->len = *used;
    ev->close_code = 0;

    p->remaining = 0;
    p->in_frame = 0;
    p->header_len = 0;
    p->message_opcode = 0;

    return SR_OK;
}


static int
sr_ws_end_frame(sr_ws_parser_t *p, sr_ws_event_t *ev, int *close_code,
    sr_error_t *err)
{
    p->in_frame = 0;
    p->header_len = 0;

    if (sr_ws_is_control(p->opcode)) {
        ev->opcode = p->opcode;
        ev->data = p->control.data;
        ev->len = p->control.len;
        ev->close_code = 0;

        if (p->opcode == SR_WS_OP_CLOSE) {
            return sr_ws_check_close(p, ev, close_code, err);
        }

        return SR_OK;
    }

    if (!p->fin) {
        return SR_AGAIN;
    }

    if (p->message_opcode == SR_WS_OP_TEXT
        && p->utf8_state != SR_UTF8_ACCEPT)
    {
        return sr_ws_fail(close_code, SR_WS_CLOSE_INVALID_PAYLOAD, err,
                          SR_ERR_PROTOCOL,
                          "text message ends inside a code point");
    }

    ev->opcode = p->message_opcode;
    ev->data = p->message.data;
    ev->len = p->message.len;
    ev->close_code = 0;

    p->message_opcode = 0;

    return SR_OK;
}


/* A close payload is empty, or a valid code and a UTF-8 reason. */

static int
sr_ws_check_close(sr_ws_parser_t *p, sr_ws_event_t *ev, int *close_code,
    sr_error_t *err)
{
    int  code;

    if (ev->len == 0) {
        ev->close_code = SR_WS_CLOSE_NO_STATUS;
        return SR_OK;
    }

    if (ev->len == 1) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL, "close payload of one byte");
    }

    code = ev->data[0] << 8 | ev->data[1];

    if (!sr_ws_close_code_valid(code)) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_PROTOCOL_ERROR, err,
                          SR_ERR_PROTOCOL, "invalid close code");
    }

    if (!sr_utf8_valid(ev->data + 2, ev->len - 2)) {
        return sr_ws_fail(close_code, SR_WS_CLOSE_INVALID_PAYLOAD, err,
                          SR_ERR_PROTOCOL, "invalid utf-8 in close reason");
    }

    ev->close_code = code;
    ev->data += 2;
    ev->len -= 2;

    return SR_OK;
}


/* Codes an endpoint may put on the wire (RFC 6455 7.4 and the registry). */

static int
sr_ws_close_code_valid(int code)
{
    if (code >= 1000 && code <= 1003) {
        return 1;
    }

    if (code >= 1007 && code <= 1011) {
        return 1;
    }

    return code >= 3000 && code <= 4999;
}


int
sr_ws_parser_feed(sr_ws_parser_t *p, const unsigned char *data, size_t len,
    size_t *consumed, sr_ws_event_t *ev, int *close_code, sr_error_t *err)
{
    size_t  used;
    int     rc;

    *consumed = 0;
    *close_code = 0;

    /* nothing is ever left pending between calls but input */
    if (len == 0) {
        return SR_AGAIN;
    }

    for ( ;; ) {

        if (!p->in_frame) {
            rc = sr_ws_read_header(p, data + *consumed, len - *consumed,
                                   &used, close_code, err);
            *consumed += used;

            if (rc != SR_OK) {
                return rc;
            }

            rc = sr_ws_try_direct(p, data + *consumed, len - *consumed,
                                  &used, ev, close_code, err);
            *consumed += used;

            if (rc != SR_AGAIN) {
                return rc;
            }
        }

        if (p->remaining > 0) {
            if (*consumed == len) {
                return SR_AGAIN;
            }

            rc = sr_ws_read_payload(p, data + *consumed, len - *consumed,
                                    &used, close_code, err);
            *consumed += used;

            if (rc != SR_OK) {
                return rc;
            }

            if (p->remaining > 0) {
                return SR_AGAIN;
            }
        }

        rc = sr_ws_end_frame(p, ev, close_code, err);

        if (rc != SR_AGAIN) {
            return rc;
        }
    }
}


size_t
sr_ws_write_header(unsigned char *out, int fin, int opcode, uint64_t len,
    const unsigned char *mask)
{
    size_t  n, i;

    out[0] = (unsigned char) ((fin ? 0x80 : 0) | (opcode & 0x0f));
    n = 2;

    if (len < 126) {
        out[1] = (unsigned char) len;

    } else if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char) (len >> 8);
        out[3] = (unsigned char) len;
        n = 4;

    } else {
        out[1] = 127;
        for (i = 0; i < 8; i++) {
            out[2 + i] = (unsigned char) (len >> (56 - 8 * i));
        }
        n = 10;
    }

    if (mask != NULL) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }

    return n;
}


int
sr_ws_write_frame(sr_buf_t *out, int opcode, const unsigned char *data,
    size_t len, const unsigned char *mask)
{
    size_t  n;

    if (sr_ws_is_control(opcode) && len > SR_WS_MAX_CONTROL) {
        return SR_ERR_INVALID;
    }

    if (sr_buf_reserve(out, SR_WS_MAX_HEADER + len) != SR_OK) {
        return SR_ERR_NOMEM;
    }

    n = sr_ws_write_header(out->data + out->len, 1, opcode, len, mask);

    if (len > 0) {
        memcpy(out->data + out->len + n, data, len);

        if (mask != NULL) {
            sr_ws_mask(out->data + out->len + n, len, mask, 0);
        }
    }

    out->len += n + len;

    return SR_OK;
}


/*
 * Code 0 or 1005 sends an empty close payload (1005 must not appear on
 * the wire). A longer reason is cut at a code point boundary so that the
 * frame stays valid for the peer's UTF-8 check.
 */

int
sr_ws_write_close(sr_buf_t *out, int code, const char *reason,
    const unsigned char *mask)
{
    unsigned char  payload[SR_WS_MAX_CONTROL];
    size_t         reason_len;

    if (code == 0 || code == SR_WS_CLOSE_NO_STATUS) {
        return sr_ws_write_frame(out, SR_WS_OP_CLOSE, NULL, 0, mask);
    }

    if (!sr_ws_close_code_valid(code)) {
        return SR_ERR_INVALID;
    }

    reason_len = (reason != NULL) ? strlen(reason) : 0;

    if (reason_len > SR_WS_MAX_CONTROL - 2) {
        reason_len = SR_WS_MAX_CONTROL - 2;

        while (reason_len > 0
               && ((unsigned char) reason[reason_len] & 0xc0) == 0x80)
        {
            reason_len--;
        }
    }

    payload[0] = (unsigned char) (code >> 8);
    payload[1] = (unsigned char) code;

    if (reason_len > 0) {
        memcpy(payload + 2, reason, reason_len);
    }

    return sr_ws_write_frame(out, SR_WS_OP_CLOSE, payload, 2 + reason_len,
                             mask);
}


void
sr_ws_mask(unsigned char *data, size_t len, const unsigned char *mask,
    uint64_t offset)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        data[i] ^= mask[(offset + i) & 3];
    }
}


/*
 * The key must be the base64 of 16 bytes: 22 characters of the alphabet
 * and "==". EVP_DecodeBlock() checks the alphabet; it counts the padding
 * as output, hence 18.
 */

int
sr_ws_accept_key(const char *key, size_t key_len,
    char out[SR_WS_ACCEPT_LEN + 1], sr_error_t *err)
{
    unsigned char  decoded[SR_WS_KEY_LEN];
    unsigned char  input[SR_WS_KEY_LEN + sizeof(SR_WS_GUID) - 1];
    unsigned char  digest[EVP_MAX_MD_SIZE];
    unsigned int   digest_len;
    size_t         i;

    if (key_len != SR_WS_KEY_LEN
        || key[21] == '=' || key[22] != '=' || key[23] != '=')
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "websocket key is not 16 bytes of base64");
    }

    for (i = 0; i < 22; i++) {
        if (key[i] == '=') {
            return sr_error_set(err, SR_ERR_PROTOCOL,
                                "websocket key is not 16 bytes of base64");
        }
    }

    if (EVP_DecodeBlock(decoded, (const unsigned char *) key,
                        SR_WS_KEY_LEN) != 18)
    {
        return sr_error_set(err, SR_ERR_PROTOCOL,
                            "websocket key is not 16 bytes of base64");
    }

    memcpy(input, key, SR_WS_KEY_LEN);
    memcpy(input + SR_WS_KEY_LEN, SR_WS_GUID, sizeof(SR_WS_GUID) - 1);

    if (EVP_Digest(input, sizeof(input), digest, &digest_len, EVP_sha1(),
                   NULL) != 1)
    {
        return sr_error_set(err, SR_ERR_NOMEM, "EVP_Digest() failed");
    }

    EVP_EncodeBlock((unsigned char *) out, digest, (int) digest_len);

    return SR_OK;
}
