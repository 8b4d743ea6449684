// A message's Redis record, written directly, against the reader and against the same
// record built as jansson values: an upgraded daemon must read what an older one wrote.

#include <gtest/gtest.h>

#include "chat_types.h"
#include "json.h"

namespace signalrd {
namespace {

StoredMessage reply_with_fragments(size_t count)
{
    StoredMessage m;

    m.id = "01930000-0000-7000-8000-000000000001";
    m.role = "assistant";
    m.parent_id = "01930000-0000-7000-8000-000000000000";
    m.created_ms = 1733260000123;
    for (size_t i = 0; i < count; i++) {
        m.text += i % 3 == 0 ? "quote \" and \\ " : "caf\xc3\xa9\n\t";
        m.fragments.emplace_back("01930000-0000-7000-8000-1000000000" + std::to_string(10 + i),
                                 m.text.size());
    }
    return m;
}

// The record as the jansson-built version wrote it: every field, in this order.
Json expected_record(const StoredMessage &m)
{
    Json obj = message_to_api(m);
    Json fragments = Json::array();

    json_object_set_new(obj.get(), "createdMs", json_integer(m.created_ms));
    for (const auto &[fragment_id, end] : m.fragments) {
        json_array_append_new(fragments.get(),
                              json_pack("[s#I]", fragment_id.data(), fragment_id.size(),
                                        static_cast<json_int_t>(end)));
    }
    json_object_set(obj.get(), "fragments", fragments.get());
    return obj;
}

TEST(MessageRecord, WritesWhatTheJanssonVersionWrote)
{
    StoredMessage m = reply_with_fragments(61);
    std::string record = message_to_record(m);

    Result<Json> parsed = parse_json(record);
    ASSERT_TRUE(parsed.is_ok()) << record;
    EXPECT_TRUE(json_equal(parsed->get(), expected_record(m).get())) << record;
    EXPECT_EQ(record, json_text(expected_record(m).get())) << "same bytes, same key order";
}

TEST(MessageRecord, ReadsBackWhatItWrote)
{
    StoredMessage m = reply_with_fragments(5);
    m.parent_id.clear();

    Result<StoredMessage> back = message_from_record(message_to_record(m));
    ASSERT_TRUE(back.is_ok()) << back.status().message();
    EXPECT_EQ(back->id, m.id);
    EXPECT_EQ(back->text, m.text);
    EXPECT_EQ(back->role, m.role);
    EXPECT_EQ(back->parent_id, "");
    EXPECT_EQ(back->created_ms, m.created_ms);
    EXPECT_EQ(back->fragments, m.fragments);
}

TEST(MessageRecord, StaysJsonForTextThatIsNotUtf8)
{
    StoredMessage m = reply_with_fragments(2);
    m.text += "\xff\xfe";

    EXPECT_TRUE(parse_json(message_to_record(m)).is_ok());
}

}  // namespace
}  // namespace signalrd
