// The stream item written straight from a fragment against the shared library's encoding
// of the same message built as jansson values: the worker must not see a difference.

#include <cstring>

#include <gtest/gtest.h>
#include <signalr/hub_message.h>

#include "chat_types.h"
#include "stream_item.h"

namespace signalrd {
namespace {

std::vector<unsigned char> general_path(const std::string &invocation_id, const Fragment &f)
{
    sr_message_t msg;
    sr_buf_t buf;
    sr_error_t err;

    sr_message_init(&msg, SR_MSG_STREAM_ITEM);
    msg.invocation_id = strdup(invocation_id.c_str());
    msg.item = fragment_to_json(f).release();
    sr_buf_init(&buf);
    EXPECT_EQ(sr_message_encode_payload(SR_PROTOCOL_MSGPACK, &msg, &buf, &err), SR_OK);
    std::vector<unsigned char> out(buf.data, buf.data + buf.len);
    sr_buf_free(&buf);
    sr_message_clear(&msg);
    return out;
}

std::vector<unsigned char> direct(const std::string &invocation_id, const Fragment &f)
{
    sr_buf_t buf;

    sr_buf_init(&buf);
    EXPECT_TRUE(append_stream_item(&buf, invocation_id, f));
    std::vector<unsigned char> out(buf.data, buf.data + buf.len);
    sr_buf_free(&buf);
    return out;
}

TEST(StreamItem, IsByteForByteWhatTheSharedLibraryWritesForEveryStringLength)
{
    const std::string mid = "0190c0de-0000-7000-8000-000000000001";
    const std::string fid = "0190c0de-0000-7000-8000-0000000000ff";
    // fixstr, str 8, str 16 and str 32 texts, their bounds included, and non-ASCII text
    for (size_t n : {0, 1, 31, 32, 255, 256, 65535, 65536, 70000}) {
        Fragment f{mid, sender_assistant, std::string(n, 'x'), fid, n % 2 == 1};
        EXPECT_EQ(direct("7", f), general_path("7", f)) << "a text of " << n << " bytes";
    }
    Fragment unicode{mid, sender_user, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n\"q\"", fid,
                     true};
    EXPECT_EQ(direct("inv-42", unicode), general_path("inv-42", unicode));
    EXPECT_EQ(direct(std::string(40, 'i'), unicode), general_path(std::string(40, 'i'), unicode));
}

TEST(StreamItem, TextThatIsNotUtf8IsRefusedAndLeavesTheBufferAsItWas)
{
    sr_buf_t buf;
    Fragment bad{"m", sender_assistant, "ab\xff", "f", false};

    sr_buf_init(&buf);
    ASSERT_EQ(sr_buf_append(&buf, "keep", 4), SR_OK);
    EXPECT_FALSE(append_stream_item(&buf, "1", bad));
    EXPECT_EQ(buf.len, 4u);
    EXPECT_FALSE(append_stream_item(&buf, "\xc3", {"m", sender_assistant, "ok", "f", false}));
    EXPECT_EQ(buf.len, 4u);
    sr_buf_free(&buf);
}

}  // namespace
}  // namespace signalrd
