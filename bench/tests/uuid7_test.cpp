#include <gtest/gtest.h>

#include "uuid7.h"

namespace bench {
namespace {

TEST(Uuid7, ReadsTheMillisecondTimestamp)
{
    // RFC 9562's example: 2022-02-22 19:22:22 UTC = 0x017F22E279B0 ms.
    EXPECT_EQ(uuid7_unix_ns("017f22e2-79b0-7000-98c4-dc0c0c07398f"),
              0x017F22E279B0LL * 1000000);
    EXPECT_EQ(uuid7_unix_ns("017F22E2-79B0-7000-98C4-DC0C0C07398F"),
              0x017F22E279B0LL * 1000000);
}


TEST(Uuid7, ReadsTheFractionOfTheMillisecond)
{
    // rand_a 0x800: half a millisecond; 0xcc3: 3267/4096 ms
    EXPECT_EQ(uuid7_unix_ns("017f22e2-79b0-7800-98c4-dc0c0c07398f"),
              0x017F22E279B0LL * 1000000 + 500000);
    EXPECT_EQ(uuid7_unix_ns("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"),
              0x017F22E279B0LL * 1000000 + 3267LL * 1000000 / 4096);
}


TEST(Uuid7, RefusesOtherVersionsAndMalformedText)
{
    EXPECT_EQ(uuid7_unix_ns("017f22e2-79b0-4cc3-98c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ns("017f22e2-79b0-7cc3-c8c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ns("017f22e2079b0-7cc3-98c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ns("017f22e2-79b0-7cc3-98c4-dc0c0c07398"), -1);
    EXPECT_EQ(uuid7_unix_ns("017f22g2-79b0-7cc3-98c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ns(""), -1);
}

}  // namespace
}  // namespace bench
