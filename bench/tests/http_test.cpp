#include <gtest/gtest.h>

#include <string>

#include "http.h"

namespace bench {
namespace {

using Result = HttpResponseParser::Result;

TEST(HttpRequest, CarriesHostHeadersAndContentLength)
{
    std::string  r = http_request("POST", "/api/v1/chats", "127.0.0.1:8080",
                                  {"Authorization: Bearer t"}, "{}");

    EXPECT_EQ(r, "POST /api/v1/chats HTTP/1.1\r\n"
                 "Host: 127.0.0.1:8080\r\n"
                 "Authorization: Bearer t\r\n"
                 "Content-Length: 2\r\n"
                 "\r\n{}");
}


TEST(HttpRequest, EmptyPostStillSaysContentLengthZero)
{
    std::string  r = http_request("POST", "/n", "h", {}, "");

    EXPECT_NE(r.find("Content-Length: 0\r\n"), std::string::npos);
    EXPECT_EQ(http_request("GET", "/", "h", {}, "").find("Content-Length"),
              std::string::npos);
}


TEST(HttpResponseParser, ParsesOneResponseFedByteByByte)
{
    HttpResponseParser  p;
    std::string         in = "HTTP/1.1 201 Created\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 6\r\n\r\n\"abcd\"";
    size_t              consumed;

    for (size_t i = 0; i + 1 < in.size(); i++) {
        ASSERT_EQ(p.feed(&in[i], 1, &consumed), Result::kNeedMore)
            << "at byte " << i;
    }
    ASSERT_EQ(p.feed(&in.back(), 1, &consumed), Result::kComplete);
    EXPECT_EQ(consumed, 1u);

    HttpResponse  r = p.take();
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.body, "\"abcd\"");
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("X-Missing"), "");
}


TEST(HttpResponseParser, StopsAtTheEndOfEachOfTwoResponses)
{
    HttpResponseParser  p;
    std::string         one = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA";
    std::string         two = "HTTP/1.1 404 Not Found\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n"
                              "2\r\nBC\r\n0\r\n\r\n";
    std::string         in = one + two;
    size_t              consumed;

    ASSERT_EQ(p.feed(in.data(), in.size(), &consumed), Result::kComplete);
    EXPECT_EQ(consumed, one.size());
    EXPECT_EQ(p.take().body, "A");

    ASSERT_EQ(p.feed(in.data() + consumed, in.size() - consumed, &consumed),
              Result::kComplete);
    EXPECT_EQ(consumed, two.size());

    HttpResponse  r = p.take();
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.body, "BC");
}


TEST(HttpResponseParser, LeavesTheBytesAfterA101ToTheCaller)
{
    HttpResponseParser  p;
    std::string         head = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: x\r\n\r\n";
    std::string         in = head + "\x81\x03{}\x1e";
    size_t              consumed;

    ASSERT_EQ(p.feed(in.data(), in.size(), &consumed), Result::kComplete);
    EXPECT_EQ(consumed, head.size());

    HttpResponse  r = p.take();
    EXPECT_TRUE(r.upgraded);
    EXPECT_EQ(r.status, 101);
    EXPECT_EQ(r.header("Sec-WebSocket-Accept"), "x");
}


TEST(HttpResponseParser, ABodyEndingWithTheConnectionCompletesOnEof)
{
    HttpResponseParser  p;
    std::string         in = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                             "token";
    size_t              consumed;

    ASSERT_EQ(p.feed(in.data(), in.size(), &consumed), Result::kNeedMore);
    ASSERT_EQ(p.feed(nullptr, 0, &consumed), Result::kComplete);
    EXPECT_EQ(p.take().body, "token");
}


TEST(HttpResponseParser, GarbageIsAnError)
{
    HttpResponseParser  p;
    std::string         in = "SSH-2.0-OpenSSH\r\n";
    size_t              consumed;

    EXPECT_EQ(p.feed(in.data(), in.size(), &consumed), Result::kError);
    EXPECT_FALSE(p.error().empty());
}


TEST(HttpResponseParser, EofInsideHeadersIsAnError)
{
    HttpResponseParser  p;
    std::string         in = "HTTP/1.1 200 OK\r\nContent-Len";
    size_t              consumed;

    ASSERT_EQ(p.feed(in.data(), in.size(), &consumed), Result::kNeedMore);
    EXPECT_EQ(p.feed(nullptr, 0, &consumed), Result::kError);
}


TEST(HttpResponseParser, ResponsesOverOneMebibyteAreRefused)
{
    HttpResponseParser  p;
    std::string         head = "HTTP/1.1 200 OK\r\nContent-Length: 2000000"
                               "\r\n\r\n";
    std::string         body(HttpResponseParser::kMaxResponse + 10, 'x');
    size_t              consumed;

    ASSERT_EQ(p.feed(head.data(), head.size(), &consumed), Result::kNeedMore);
    EXPECT_EQ(p.feed(body.data(), body.size(), &consumed), Result::kError);
}

}  // namespace
}  // namespace bench
