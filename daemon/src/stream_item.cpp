#include "stream_item.h"

#include <cstdint>
#include <string_view>

#include <signalr/websocket.h>

namespace signalrd {

namespace {

bool put(sr_buf_t *out, const void *data, size_t len)
{
    return sr_buf_append(out, data, len) == SR_OK;
}

// A MessagePack str: fixstr, str 8, 16 or 32 by its length, as msgpack-c packs it.
bool put_str(sr_buf_t *out, std::string_view s)
{
    unsigned char head[5];
    size_t n = s.size();
    size_t head_len;

    if (n < 32) {
        head[0] = static_cast<unsigned char>(0xa0 | n);
        head_len = 1;
    } else if (n < 256) {
        head[0] = 0xd9;
        head[1] = static_cast<unsigned char>(n);
        head_len = 2;
    } else if (n < 65536) {
        head[0] = 0xda;
        head[1] = static_cast<unsigned char>(n >> 8);
        head[2] = static_cast<unsigned char>(n);
        head_len = 3;
    } else if (n <= UINT32_MAX) {
        head[0] = 0xdb;
        for (int i = 0; i < 4; i++) {
            head[1 + i] = static_cast<unsigned char>(n >> (24 - 8 * i));
        }
        head_len = 5;
    } else {
        return false;
    }
    return put(out, head, head_len) && put(out, s.data(), n);
}

bool valid_utf8(std::string_view s)
{
    return sr_utf8_valid(reinterpret_cast<const unsigned char *>(s.data()), s.size());
}

}  // namespace

bool append_stream_item(sr_buf_t *out, const std::string &invocation_id, const Fragment &f)
{
    // [2, {}, invocationId, {id, sender, text, fragmentId, isFinal}], in jansson's key order
    static const unsigned char envelope[] = {0x94, 0x02, 0x80};
    static const unsigned char item_map = 0x85;
    const unsigned char final_byte = f.is_final ? 0xc3 : 0xc2;
    size_t mark = out->len;

    if (!valid_utf8(invocation_id) || !valid_utf8(f.message_id) || !valid_utf8(f.sender) ||
        !valid_utf8(f.text) || !valid_utf8(f.fragment_id)) {
        return false;
    }
    bool ok = put(out, envelope, sizeof(envelope)) && put_str(out, invocation_id) &&
              put(out, &item_map, 1) && put_str(out, "id") && put_str(out, f.message_id) &&
              put_str(out, "sender") && put_str(out, f.sender) && put_str(out, "text") &&
              put_str(out, f.text) && put_str(out, "fragmentId") &&
              put_str(out, f.fragment_id) && put_str(out, "isFinal") &&
              put(out, &final_byte, 1);
    if (!ok) {
        out->len = mark;
    }
    return ok;
}

}  // namespace signalrd
