#include <gtest/gtest.h>

#include <unistd.h>

#include "proc_stats.h"

namespace bench {
namespace {

TEST(ProcStats, ParsesRssAndPssFromSmapsRollup)
{
    const char  *text =
        "55d0c0a00000-7ffd1e1ff000 ---p 00000000 00:00 0  [rollup]\n"
        "Rss:               12345 kB\n"
        "Pss:                6789 kB\n"
        "Pss_Anon:           1000 kB\n";
    uint64_t     rss = 0, pss = 0;

    ASSERT_TRUE(parse_smaps_rollup(text, &rss, &pss).ok());
    EXPECT_EQ(rss, 12345u);
    EXPECT_EQ(pss, 6789u);
}


TEST(ProcStats, SmapsWithoutPssIsAnError)
{
    uint64_t  rss, pss;

    EXPECT_FALSE(parse_smaps_rollup("Rss: 1 kB\n", &rss, &pss).ok());
}


TEST(ProcStats, CpuTicksAreCountedAfterACommandNameWithSpaces)
{
    // Fields 14 (utime) and 15 (stime) are 70 and 30.
    const char  *text = "42 (nginx: a) b) S 1 42 42 0 -1 4194560 100 0 0 0 "
                        "70 30 0 0 20 0 1 0 100 1000 10";
    uint64_t     ticks = 0;

    ASSERT_TRUE(parse_stat_cpu(text, &ticks).ok());
    EXPECT_EQ(ticks, 100u);
    EXPECT_FALSE(parse_stat_cpu("42 (x) S 1", &ticks).ok());
}


TEST(ProcStats, SamplesThisVeryProcess)
{
    ProcSample  s = sample_process({getpid(), "self"});

    ASSERT_TRUE(s.ok);
    EXPECT_GT(s.rss_kb, 0u);
    EXPECT_GT(s.pss_kb, 0u);
    EXPECT_LE(s.pss_kb, s.rss_kb);
}


TEST(ProcStats, AGoneProcessIsNotOk)
{
    EXPECT_FALSE(sample_process({999999999, "none"}).ok);
}

}  // namespace
}  // namespace bench
