#include <gtest/gtest.h>

#include <string>

#include "payload.h"

namespace bench {
namespace {

TEST(Payload, HasTheSizeAskedForAndReadsBack)
{
    std::string  p = make_payload(42, 1234567890123, 100);
    uint64_t     seq = 0;
    int64_t      sent = 0;

    EXPECT_EQ(p.size(), 100u);
    ASSERT_TRUE(parse_payload(p.data(), p.size(), &seq, &sent));
    EXPECT_EQ(seq, 42u);
    EXPECT_EQ(sent, 1234567890123);
}


TEST(Payload, NeverShorterThanItsLargestHead)
{
    std::string  p = make_payload(UINT64_MAX / 10, INT64_MAX, 10);
    uint64_t     seq;
    int64_t      sent;

    EXPECT_LE(p.size(), kMinPayload);
    ASSERT_TRUE(parse_payload(p.data(), p.size(), &seq, &sent));
    EXPECT_EQ(seq, UINT64_MAX / 10);
    EXPECT_EQ(sent, INT64_MAX);
}


TEST(Payload, RefusesWhatIsNotOne)
{
    uint64_t  seq;
    int64_t   sent;

    for (const std::string &s : {std::string(""), std::string("bench"),
                                 std::string("bench "),
                                 std::string("bench 1"),
                                 std::string("bench 1 "),
                                 std::string("bench x 2 "),
                                 std::string("bench 1 2x"),
                                 std::string("bench -1 2 "),
                                 std::string("bench 1 99999999999999999999 "),
                                 std::string("Bench 1 2 xxxx"),
                                 std::string("{\"hello\":1}")})
    {
        EXPECT_FALSE(parse_payload(s.data(), s.size(), &seq, &sent)) << s;
    }
}

}  // namespace
}  // namespace bench
