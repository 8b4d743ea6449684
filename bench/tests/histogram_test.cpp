#include <gtest/gtest.h>

#include <cmath>

#include "histogram.h"

namespace bench {
namespace {

TEST(Histogram, BucketBoundsCoverEveryValueOnce)
{
    for (uint64_t v = 0; v < 100000; v++) {
        size_t  i = Histogram::bucket_of(v);

        ASSERT_LE(Histogram::bucket_low(i), v) << "value " << v;
        ASSERT_GE(Histogram::bucket_high(i), v) << "value " << v;
    }

    uint64_t  big = uint64_t(1) << 62;
    size_t    i = Histogram::bucket_of(big);
    EXPECT_LE(Histogram::bucket_low(i), big);
    EXPECT_GE(Histogram::bucket_high(i), big);
}


TEST(Histogram, PercentilesOfUniformValuesAreWithinTwoPercent)
{
    Histogram  h;

    for (int v = 1; v <= 100000; v++) {
        h.record(v);
    }

    EXPECT_EQ(h.count(), 100000u);
    EXPECT_EQ(h.min(), 1);
    EXPECT_EQ(h.max(), 100000);
    EXPECT_NEAR(double(h.percentile(50)), 50000, 50000 * 0.02);
    EXPECT_NEAR(double(h.percentile(90)), 90000, 90000 * 0.02);
    EXPECT_NEAR(double(h.percentile(99)), 99000, 99000 * 0.02);
    EXPECT_EQ(h.percentile(100), 100000);
    EXPECT_DOUBLE_EQ(h.mean(), 50000.5);
}


TEST(Histogram, SmallValuesAreExact)
{
    Histogram  h;

    h.record(3);
    h.record(5);
    h.record(7);

    EXPECT_EQ(h.percentile(50), 5);
    EXPECT_EQ(h.percentile(1), 3);
}


TEST(Histogram, NegativeValuesCountAsZero)
{
    Histogram  h;

    h.record(-10);

    EXPECT_EQ(h.count(), 1u);
    EXPECT_EQ(h.max(), 0);
}


TEST(Histogram, EmptyHistogramReportsZero)
{
    Histogram  h;

    EXPECT_EQ(h.percentile(99), 0);
    EXPECT_EQ(h.max(), 0);
    EXPECT_EQ(h.mean(), 0.0);
}


TEST(Histogram, MergeEqualsRecordingEverythingInOne)
{
    Histogram  a, b, all;

    for (int v = 0; v < 5000; v++) {
        (v % 2 ? a : b).record(v * 7);
        all.record(v * 7);
    }
    a.merge(b);

    EXPECT_EQ(a.count(), all.count());
    EXPECT_EQ(a.min(), all.min());
    EXPECT_EQ(a.max(), all.max());
    for (double p : {50.0, 90.0, 99.0, 99.9}) {
        EXPECT_EQ(a.percentile(p), all.percentile(p)) << "p" << p;
    }
}


TEST(Histogram, JsonRoundTripKeepsEveryPercentile)
{
    Histogram  h, back;

    for (int v = 0; v < 3000; v++) {
        h.record(v * v);
    }

    json_t  *j = h.to_json();
    ASSERT_TRUE(Histogram::from_json(j, &back).ok());
    json_decref(j);

    EXPECT_EQ(back.count(), h.count());
    EXPECT_EQ(back.max(), h.max());
    EXPECT_EQ(back.percentile(99), h.percentile(99));
    EXPECT_DOUBLE_EQ(back.mean(), h.mean());
}


TEST(Histogram, MalformedJsonIsRefused)
{
    Histogram  h;
    json_t    *j = json_loads("{\"count\":1,\"sum\":1,\"min\":1,\"max\":1,"
                              "\"buckets\":[[999999,1]]}", 0, nullptr);

    EXPECT_FALSE(Histogram::from_json(j, &h).ok());
    json_decref(j);

    j = json_loads("[1,2]", 0, nullptr);
    EXPECT_FALSE(Histogram::from_json(j, &h).ok());
    json_decref(j);
}

}  // namespace
}  // namespace bench
