#include <gtest/gtest.h>

#include <random>

#include "sse_parser.h"

namespace signalrd {
namespace {

// Feeds text in the given pieces; returns the events, or the failure.
Result<std::vector<SseEvent>> parse_in_pieces(const std::string &text,
                                              const std::vector<size_t> &cuts,
                                              size_t max_event = 1 << 20)
{
    SseParser parser(max_event);
    std::vector<SseEvent> events;
    auto collect = [&](const SseEvent &e) {
        events.push_back(e);
        return Status::ok();
    };
    size_t at = 0;
    for (size_t cut : cuts) {
        Status s = parser.feed(std::string_view(text).substr(at, cut - at), collect);
        if (!s.is_ok()) {
            return s;
        }
        at = cut;
    }
    Status s = parser.feed(std::string_view(text).substr(at), collect);
    if (!s.is_ok()) {
        return s;
    }
    return events;
}

std::vector<std::string> data_of(const std::vector<SseEvent> &events)
{
    std::vector<std::string> out;
    for (const SseEvent &e : events) {
        out.push_back(e.data);
    }
    return out;
}

TEST(SseParser, ReadsDataLinesCommentsAndEveryLineEnding)
{
    std::string text =
        ": a comment\n"
        "data: one\n\n"
        "data:two\r\n\r\n"           // no space after the colon, CRLF
        "data: three\r\r"             // lone CR
        "event: update\n"
        "id: 7\n"
        "data: four a\n"
        "data: four b\n"
        "retry: 100\n"
        "unknown: x\n\n"
        "\n\n"                        // blank lines dispatch nothing
        "data\n\n"                    // a field with no colon: empty data
        "data:  leading space kept\n\n";

    auto events = parse_in_pieces(text, {});

    ASSERT_TRUE(events.is_ok()) << events.status().message();
    EXPECT_EQ(data_of(*events), (std::vector<std::string>{"one", "two", "three", "four a\nfour b",
                                                           "", " leading space kept"}));
    EXPECT_EQ((*events)[3].type, "update");
    EXPECT_EQ((*events)[3].id, "7");
    EXPECT_EQ((*events)[4].type, "") << "the event type does not carry over";
}

TEST(SseParser, AnEventWithoutItsBlankLineIsNotDispatched)
{
    SseParser parser;
    int events = 0;
    auto count = [&](const SseEvent &) {
        events++;
        return Status::ok();
    };

    ASSERT_TRUE(parser.feed("data: cut short\n", count).is_ok());
    EXPECT_EQ(events, 0);
    EXPECT_FALSE(parser.at_boundary()) << "data waits for its blank line";
    ASSERT_TRUE(parser.feed("\n", count).is_ok());
    EXPECT_EQ(events, 1);
    EXPECT_TRUE(parser.at_boundary());
}

// Every chunking of a stream gives the same events as feeding it whole: chunk
// boundaries inside lines, inside CRLF pairs and inside UTF-8 characters.
TEST(SseParser, RandomChunkingGivesTheSameEvents)
{
    std::mt19937 rng(20240607);
    const char *const lines[] = {"data: {\"choices\":[{\"delta\":{\"content\":\"Grüße\"}}]}",
                                 "data: 東京 🙂", ": keep-alive", "data: [DONE]", "event: x",
                                 "data:", "id: 12", "data: a:b:c"};
    const char *const endings[] = {"\n", "\r\n", "\r"};

    for (int round = 0; round < 300; round++) {
        std::string text;
        int n = static_cast<int>(rng() % 30);
        for (int i = 0; i < n; i++) {
            const char *ending = endings[rng() % 3];
            text += lines[rng() % 8];
            text += ending;
            if (rng() % 3 == 0) {
                text += ending;   // a blank line: dispatch
            }
        }
        auto whole = parse_in_pieces(text, {});
        ASSERT_TRUE(whole.is_ok());

        std::vector<size_t> cuts;
        for (size_t at = 0; at < text.size();) {
            at += 1 + rng() % 9;
            if (at < text.size()) {
                cuts.push_back(at);
            }
        }
        auto pieces = parse_in_pieces(text, cuts);
        ASSERT_TRUE(pieces.is_ok());
        ASSERT_EQ(data_of(*pieces), data_of(*whole)) << "round " << round << ": " << text;

        std::vector<size_t> bytes;
        for (size_t at = 1; at < text.size(); at++) {
            bytes.push_back(at);
        }
        auto one_by_one = parse_in_pieces(text, bytes);
        ASSERT_TRUE(one_by_one.is_ok());
        ASSERT_EQ(data_of(*one_by_one), data_of(*whole)) << "round " << round;
    }
}

TEST(SseParser, RandomBytesNeverCrashAndStayWithinTheBound)
{
    std::mt19937 rng(7);
    for (int round = 0; round < 500; round++) {
        std::string text(rng() % 400, '\0');
        for (char &c : text) {
            c = static_cast<char>("da:t \r\n\n\x01\xff"[rng() % 11]);
        }
        SseParser parser(64);
        auto check = [](const SseEvent &e) {
            EXPECT_LE(e.data.size() + e.type.size() + e.id.size(), 64u);
            return Status::ok();
        };
        Status s = parser.feed(text, check);
        if (!s.is_ok()) {
            EXPECT_EQ(s.code(), StatusCode::too_large);
        }
    }
}

TEST(SseParser, RefusesAnOverlongLineOrEventAndStaysFailed)
{
    SseParser parser(16);
    auto ignore = [](const SseEvent &) { return Status::ok(); };

    EXPECT_EQ(parser.feed(std::string(17, 'x'), ignore).code(), StatusCode::too_large)
        << "a line with no end yet is bounded too";
    EXPECT_EQ(parser.feed("data: ok\n\n", ignore).code(), StatusCode::too_large)
        << "a failed parser stays failed";

    SseParser lines(16);
    EXPECT_TRUE(lines.feed("data: 01234567\n", ignore).is_ok());
    EXPECT_EQ(lines.feed("data: 01234567\n", ignore).code(), StatusCode::too_large)
        << "data lines add up";
}

// Found by fuzz_sse_parser: a 22-byte line under a 16-byte bound was refused when
// it came in pieces but accepted when it came whole.
TEST(SseParser, WhereTheChunksAreCutNeverDecidesARefusal)
{
    std::string text = "data: 0123456789abcdef\n\ndata: ok\n\n";

    Result<std::vector<SseEvent>> whole = parse_in_pieces(text, {}, 16);
    Result<std::vector<SseEvent>> pieces = parse_in_pieces(text, {3, 6, 9, 12, 15, 18}, 16);
    ASSERT_FALSE(whole.is_ok());
    ASSERT_FALSE(pieces.is_ok());
    EXPECT_EQ(whole.status().code(), StatusCode::too_large);
    EXPECT_EQ(pieces.status().code(), StatusCode::too_large);
}

// Found by fuzz_sse_parser: a stream ending in CR had ended its last line, yet the
// parser said an event was cut short.
TEST(SseParser, AStreamEndingInCrIsAtABoundary)
{
    SseParser parser;
    int events = 0;
    auto count = [&](const SseEvent &) {
        events++;
        return Status::ok();
    };

    ASSERT_TRUE(parser.feed("data: x\r\r", count).is_ok());
    EXPECT_EQ(events, 1);
    EXPECT_TRUE(parser.at_boundary());
    ASSERT_TRUE(parser.feed("\ndata: y\r\n\r\n", count).is_ok());
    EXPECT_EQ(events, 2) << "the LF after the CR is its pair, not a blank line";
}

TEST(SseParser, AHandlerFailureStopsParsing)
{
    SseParser parser;
    int seen = 0;
    auto fail_first = [&](const SseEvent &) {
        seen++;
        return Status::protocol_error("bad event");
    };

    Status s = parser.feed("data: 1\n\ndata: 2\n\n", fail_first);

    EXPECT_EQ(s.code(), StatusCode::protocol_error);
    EXPECT_EQ(seen, 1) << "nothing after the failing event is parsed";
}

}  // namespace
}  // namespace signalrd
