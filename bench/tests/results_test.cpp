#include <gtest/gtest.h>

#include "results.h"

namespace bench {
namespace {

TEST(Results, MergeAddsCountsAndKeepsTheLongestWindow)
{
    Results  a, b;

    a.count("delivered", 10);
    a.record("ttff", 1000);
    a.error("POST /api/v1/chats: HTTP 429");
    a.window_us = 5;
    b.count("delivered", 5);
    b.record("ttff", 3000);
    b.error("POST /api/v1/chats: HTTP 429", 2);
    b.window_us = 7;

    a.merge(b);

    EXPECT_EQ(a.counter("delivered"), 15u);
    EXPECT_EQ(a.counter("absent"), 0u);
    EXPECT_EQ(a.histograms["ttff"].count(), 2u);
    EXPECT_EQ(a.histograms["ttff"].max(), 3000);
    EXPECT_EQ(a.errors["POST /api/v1/chats: HTTP 429"], 3u);
    EXPECT_EQ(a.window_us, 7);
}


TEST(Results, ErrorKindsAreBounded)
{
    Results  r;

    for (int i = 0; i < 100; i++) {
        r.error("error " + std::to_string(i));
    }

    EXPECT_LE(r.errors.size(), Results::kMaxErrorKinds + 1);
    EXPECT_EQ(r.errors["other"], 100 - Results::kMaxErrorKinds);
}


TEST(Results, SurvivesTheTripThroughJson)
{
    Results  r, back;

    r.count("delivered", 42);
    r.record("gap", 50000);
    r.error("hub: server sent Close");
    r.window_us = 123;
    r.cpu_user_us = 4;
    r.cpu_system_us = 5;

    json_t  *j = r.to_json();
    ASSERT_TRUE(Results::from_json(j, &back).ok());
    json_decref(j);

    EXPECT_EQ(back.counter("delivered"), 42u);
    EXPECT_EQ(back.histograms["gap"].max(), 50000);
    EXPECT_EQ(back.errors["hub: server sent Close"], 1u);
    EXPECT_EQ(back.window_us, 123);
    EXPECT_EQ(back.cpu_user_us, 4);
    EXPECT_EQ(back.cpu_system_us, 5);

    j = json_object();
    EXPECT_FALSE(Results::from_json(j, &back).ok());
    json_decref(j);
}

}  // namespace
}  // namespace bench
