#include <gtest/gtest.h>

#include <set>

#include "uuid.h"

namespace signalrd {
namespace {

TEST(UuidV7, HasVersionSevenAndTheRfcVariant)
{
    std::string id = new_uuid_v7();

    ASSERT_EQ(id.size(), 36u);
    EXPECT_EQ(id[14], '7') << id;
    EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
    EXPECT_EQ(normalize_uuid(id), id) << "canonical form is lowercase 8-4-4-4-12";
}

TEST(UuidV7, CarriesItsCreationMillisecond)
{
    UuidV7Generator gen;
    std::string id = gen.next_at(0x0123456789abu);

    EXPECT_EQ(id.substr(0, 13), "01234567-89ab");
    EXPECT_EQ(uuid_v7_time(id), 0x0123456789abu);
}

TEST(UuidV7, CarriesTheFractionOfItsMillisecond)
{
    UuidV7Generator gen;

    // rand_a, the three digits after the version, counts 1/4096 ms
    EXPECT_EQ(gen.next_at(1000, 0).substr(15, 3), "000");
    EXPECT_EQ(gen.next_at(1000, 500000).substr(15, 3), "800");
    EXPECT_EQ(gen.next_at(1000, 999999).substr(15, 3), "fff");
    EXPECT_EQ(uuid_v7_time(gen.next_at(1001, 999999)), 1001u);
}

TEST(UuidV7, SortsByTheFractionWithinAMillisecond)
{
    UuidV7Generator gen;
    std::string prev = gen.next_at(2000, 0);

    for (uint32_t ns = 1000; ns < 1000000; ns += 1000) {
        std::string next = gen.next_at(2000, ns);
        ASSERT_LT(prev, next) << "at " << ns << " ns into the millisecond";
        prev = next;
    }
    EXPECT_LT(prev, gen.next_at(2001, 0));
}

TEST(UuidV7, StrictlyIncreasesWithinOneMillisecond)
{
    UuidV7Generator gen;
    std::string prev = gen.next_at(1000);

    for (int i = 0; i < 20000; i++) {
        std::string next = gen.next_at(1000);
        ASSERT_LT(prev, next) << "id " << i << " did not increase";
        prev = next;
    }
}

TEST(UuidV7, KeepsIncreasingWhenTheClockStepsBack)
{
    UuidV7Generator gen;
    std::string before = gen.next_at(5000);
    std::string after = gen.next_at(4000);

    EXPECT_LT(before, after);
    EXPECT_EQ(uuid_v7_time(after), 5000u) << "the last timestamp is kept, not the earlier one";
}

TEST(UuidV7, ProcessGeneratorIsMonotonic)
{
    std::string prev = new_uuid_v7();
    for (int i = 0; i < 5000; i++) {
        std::string next = new_uuid_v7();
        ASSERT_LT(prev, next);
        prev = next;
    }
}

TEST(RandomPool, DrawsFromTheKernelOnceABlock)
{
    RandomPool pool;
    std::set<uint64_t> seen;
    const size_t per_block = RandomPool::block_size / sizeof(uint64_t);

    EXPECT_EQ(pool.refills(), 0u) << "nothing is drawn before it is needed";
    for (size_t i = 0; i < 3 * per_block; i++) {
        seen.insert(pool.next_u64());
    }
    EXPECT_EQ(pool.refills(), 3u);
    // 192 values of 64 random bits: a repeat would mean bytes handed out twice
    EXPECT_EQ(seen.size(), 3 * per_block);
    pool.next_u64();
    EXPECT_EQ(pool.refills(), 4u);
}

TEST(UuidV7, GeneratorsDoNotShareTheirRandomBits)
{
    UuidV7Generator a;
    UuidV7Generator b;
    std::set<std::string> ids;

    for (int i = 0; i < 200; i++) {
        ids.insert(a.next_at(7000 + i));
        ids.insert(b.next_at(7000 + i));
    }
    EXPECT_EQ(ids.size(), 400u) << "two generators made the same id in the same millisecond";
}

TEST(NormalizeUuid, LowercasesAndRejectsMalformedText)
{
    EXPECT_EQ(normalize_uuid("0190A6F4-3B2C-7D1E-8F00-0123456789AB"),
              "0190a6f4-3b2c-7d1e-8f00-0123456789ab");
    EXPECT_FALSE(normalize_uuid(""));
    EXPECT_FALSE(normalize_uuid("0190a6f4-3b2c-7d1e-8f00-0123456789a"));
    EXPECT_FALSE(normalize_uuid("0190a6f4-3b2c-7d1e-8f00-0123456789abc"));
    EXPECT_FALSE(normalize_uuid("0190a6f4x3b2c-7d1e-8f00-0123456789ab"));
    EXPECT_FALSE(normalize_uuid("0190a6f4-3b2c-7d1e-8f00-0123456789ag"));
    EXPECT_FALSE(uuid_v7_time("0190a6f4-3b2c-4d1e-8f00-0123456789ab")) << "not version 7";
}

}  // namespace
}  // namespace signalrd
