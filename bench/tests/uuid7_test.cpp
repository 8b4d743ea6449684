#include <gtest/gtest.h>

#include "uuid7.h"

namespace bench {
namespace {

TEST(Uuid7, ReadsTheMillisecondTimestamp)
{
    // RFC 9562's example: 2022-02-22 19:22:22 UTC = 0x017F22E279B0 ms.
    EXPECT_EQ(uuid7_unix_ms("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"),
              0x017F22E279B0LL);
    EXPECT_EQ(uuid7_unix_ms("017F22E2-79B0-7CC3-98C4-DC0C0C07398F"),
              0x017F22E279B0LL);
}


TEST(Uuid7, RefusesOtherVersionsAndMalformedText)
{
    EXPECT_EQ(uuid7_unix_ms("017f22e2-79b0-4cc3-98c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ms("017f22e2-79b0-7cc3-c8c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ms("017f22e2079b0-7cc3-98c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ms("017f22e2-79b0-7cc3-98c4-dc0c0c07398"), -1);
    EXPECT_EQ(uuid7_unix_ms("017f22g2-79b0-7cc3-98c4-dc0c0c07398f"), -1);
    EXPECT_EQ(uuid7_unix_ms(""), -1);
}

}  // namespace
}  // namespace bench
