#include <thread>

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http_server.h"
#include "test_util.h"

namespace signalrd {
namespace {

// A server on its own loop thread, answering with what it understood of each request.
class HttpServerTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        dir_ = testing::make_temp_dir();
        path_ = dir_ + "/api.sock";
        server_ = std::make_unique<HttpServer>(io_.get_executor(), echo);
        ASSERT_TRUE(server_->listen(path_).is_ok());
        thread_ = std::thread([this] {
            auto guard = asio::make_work_guard(io_);
            io_.run();
        });
    }

    void TearDown() override
    {
        io_.stop();
        thread_.join();
        server_.reset();
        testing::remove_tree(dir_);
    }

    static asio::awaitable<HttpResponse> echo(const HttpRequest &r)
    {
        Json body = Json::object();
        json_set_string(body.get(), "method", r.method);
        json_set_string(body.get(), "path", r.path);
        json_set_string(body.get(), "q", r.query_param("q").value_or("-"));
        json_set_string(body.get(), "body", r.body);
        const std::string *h = r.header("x-test");
        json_set_string(body.get(), "x", h ? *h : "-");
        co_return HttpResponse::json(200, body.get());
    }

    int connect_client()
    {
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
        EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
        return fd;
    }

    // Reads until count responses (by Content-Length) are complete or the peer closes.
    static std::vector<std::string> read_responses(int fd, size_t count, bool *closed = nullptr)
    {
        std::string data;
        std::vector<std::string> out;
        char buf[4096];

        while (out.size() < count) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 3000) <= 0) {
                break;
            }
            ssize_t n = ::read(fd, buf, sizeof(buf));
            if (n <= 0) {
                if (closed) {
                    *closed = true;
                }
                break;
            }
            data.append(buf, static_cast<size_t>(n));
            for (;;) {
                size_t end = data.find("\r\n\r\n");
                if (end == std::string::npos) {
                    break;
                }
                size_t len = 0;
                size_t cl = data.find("Content-Length: ");
                if (cl != std::string::npos && cl < end) {
                    len = std::stoul(data.substr(cl + 16));
                }
                if (data.size() < end + 4 + len) {
                    break;
                }
                out.push_back(data.substr(0, end + 4 + len));
                data.erase(0, end + 4 + len);
            }
        }
        return out;
    }

    static void send_all(int fd, const std::string &s)
    {
        ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
    }

    asio::io_context io_;
    std::string dir_;
    std::string path_;
    std::unique_ptr<HttpServer> server_;
    std::thread thread_;
};

TEST_F(HttpServerTest, KeepsTheConnectionAliveAcrossRequests)
{
    int fd = connect_client();

    send_all(fd, "GET /a?q=x%20y+z HTTP/1.1\r\nHost: h\r\nX-Test: 1\r\n\r\n");
    auto first = read_responses(fd, 1);
    send_all(fd, "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    auto second = read_responses(fd, 1);
    ::close(fd);

    ASSERT_EQ(first.size(), 1u);
    ASSERT_EQ(second.size(), 1u);
    EXPECT_NE(first[0].find("HTTP/1.1 200 OK"), std::string::npos);
    EXPECT_NE(first[0].find("\"q\":\"x y z\""), std::string::npos) << first[0];
    EXPECT_NE(first[0].find("\"x\":\"1\""), std::string::npos) << "header names are lowercased";
    EXPECT_EQ(first[0].find("Connection: close"), std::string::npos);
    EXPECT_NE(second[0].find("\"method\":\"POST\",\"path\":\"/b\""), std::string::npos);
    EXPECT_NE(second[0].find("\"body\":\"hello\""), std::string::npos);
}

TEST_F(HttpServerTest, AnswersPipelinedRequestsInOrder)
{
    int fd = connect_client();

    send_all(fd, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                 "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n");
    auto r = read_responses(fd, 3);
    ::close(fd);

    ASSERT_EQ(r.size(), 3u);
    for (int i = 0; i < 3; i++) {
        EXPECT_NE(r[i].find("\"path\":\"/" + std::to_string(i + 1) + "\""), std::string::npos);
    }
}

TEST_F(HttpServerTest, RefusesABodyOverTheLimitFromItsContentLength)
{
    int fd = connect_client();
    bool closed = false;

    send_all(fd, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n");
    auto r = read_responses(fd, 2, &closed);
    ::close(fd);

    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find("HTTP/1.1 413 "), std::string::npos) << r[0];
    EXPECT_NE(r[0].find("application/problem+json"), std::string::npos);
    EXPECT_NE(r[0].find("\"status\":413"), std::string::npos);
    EXPECT_TRUE(closed);
}

TEST_F(HttpServerTest, RefusesAChunkedBodyThatGrowsOverTheLimit)
{
    int fd = connect_client();
    std::string chunk(40000, 'a');
    char size[16];
    std::snprintf(size, sizeof(size), "%zx", chunk.size());

    send_all(fd, "POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_all(fd, std::string(size) + "\r\n" + chunk + "\r\n" + size + "\r\n" + chunk + "\r\n");
    auto r = read_responses(fd, 1);
    ::close(fd);

    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find("HTTP/1.1 413 "), std::string::npos) << r[0];
}

TEST_F(HttpServerTest, AnswersGarbageWith400AndCloses)
{
    int fd = connect_client();
    bool closed = false;

    send_all(fd, "HELLO\x01 there\r\n\r\n");
    auto r = read_responses(fd, 2, &closed);
    ::close(fd);

    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find("HTTP/1.1 400 "), std::string::npos) << r[0];
    EXPECT_NE(r[0].find("\"status\":400"), std::string::npos);
    EXPECT_TRUE(closed);
}

TEST_F(HttpServerTest, HonoursConnectionClose)
{
    int fd = connect_client();
    bool closed = false;

    send_all(fd, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    auto r = read_responses(fd, 2, &closed);
    ::close(fd);

    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find("Connection: close"), std::string::npos);
    EXPECT_TRUE(closed);
}

TEST(HttpRequest, QueryParametersArePercentDecoded)
{
    HttpRequest r;
    r.query = "name=caf%C3%A9+au+lait&flag&x=%zz&name=second";

    EXPECT_EQ(r.query_param("name"), "café au lait") << "the first of repeated names wins";
    EXPECT_EQ(r.query_param("flag"), "");
    EXPECT_EQ(r.query_param("x"), "%zz") << "bad escapes stay as they are";
    EXPECT_FALSE(r.query_param("absent"));
}

}  // namespace
}  // namespace signalrd
