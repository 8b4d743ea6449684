// The signalrd binary as an operator runs it: configuration errors, Redis down at
// start, and SIGTERM during a stream.

#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_worker.h"
#include "json.h"

namespace signalrd {
namespace {

using testing::FakeWorker;

class Signalrd : public ::testing::Test {
protected:
    void SetUp() override { dir_ = testing::make_temp_dir(); }

    void TearDown() override
    {
        stop(SIGKILL);
        testing::remove_tree(dir_);
    }

    // Starts signalrd with config text and extra environment; stderr goes to a file.
    void start(const std::string &config, const std::vector<std::string> &env = {})
    {
        std::string conf = dir_ + "/signalrd.conf";
        std::ofstream(conf) << config;
        pid_ = ::fork();
        if (pid_ == 0) {
            int log = ::open((dir_ + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ::dup2(log, 2);
            for (const std::string &e : env) {
                ::putenv(const_cast<char *>(e.c_str()));
            }
            ::execl(SIGNALRD_PATH, "signalrd", "--config", conf.c_str(), nullptr);
            ::_exit(127);
        }
    }

    std::string base_config(const std::string &redis_url)
    {
        return "worker_socket = " + dir_ + "/worker.sock\nhttp_socket = " + dir_ +
               "/api.sock\nredis_url = " + redis_url + "\ndemo_token_rate = 50\n";
    }

    // Waits for the exit status; -1 if it is still running after timeout.
    int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10))
    {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return -1;
    }

    void stop(int sig)
    {
        if (pid_ > 0) {
            ::kill(pid_, sig);
            wait_exit();
        }
    }

    std::string stderr_text()
    {
        std::ifstream in(dir_ + "/stderr");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

    bool wait_for_file(const std::string &path)
    {
        for (int i = 0; i < 500; i++) {
            struct stat st;
            if (::stat(path.c_str(), &st) == 0) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    // One HTTP/1.1 request over the API socket; returns the status and the body.
    std::pair<int, std::string> http(const std::string &method, const std::string &target,
                                     const std::string &body = "", const std::string &user = "")
    {
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", (dir_ + "/api.sock").c_str());
        if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
            ::close(fd);
            return {0, ""};
        }
        std::string req = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
        if (!user.empty()) {
            req += "X-SignalR-User: " + user + "\r\n";
        }
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        EXPECT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));

        std::string res;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
            res.append(buf, static_cast<size_t>(n));
        }
        ::close(fd);
        if (res.size() < 12) {
            return {0, ""};
        }
        size_t split = res.find("\r\n\r\n");
        std::string payload = split == std::string::npos ? "" : res.substr(split + 4);
        return {std::atoi(res.c_str() + 9), payload};
    }

    std::string dir_;
    pid_t pid_ = -1;
};

TEST_F(Signalrd, AMissingNamedConfigFileExitsWithAnError)
{
    pid_ = ::fork();
    if (pid_ == 0) {
        int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 2);
        ::execl(SIGNALRD_PATH, "signalrd", "--config", "/nonexistent/signalrd.conf", nullptr);
        ::_exit(127);
    }
    EXPECT_EQ(wait_exit(), 1);
}

TEST_F(Signalrd, AnUnknownKeyExitsNamingTheKeyAndLine)
{
    start("log_level = info\nredis_host = x\n");

    EXPECT_EQ(wait_exit(), 1);
    std::string err = stderr_text();
    EXPECT_NE(err.find("signalrd: error: "), std::string::npos) << err;
    EXPECT_NE(err.find("signalrd.conf:2: unknown key \"redis_host\""), std::string::npos) << err;
}

TEST_F(Signalrd, StartsWithRedisDownAndRecoversWhenItComes)
{
    int port = testing::free_port();
    start(base_config("redis://127.0.0.1:" + std::to_string(port)));
    ASSERT_TRUE(wait_for_file(dir_ + "/api.sock"));

    struct stat st;
    ASSERT_EQ(::stat((dir_ + "/worker.sock").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    auto [down, down_body] = http("GET", "/healthz");
    EXPECT_EQ(down, 503) << down_body;
    EXPECT_NE(down_body.find("\"redis\":\"down\""), std::string::npos);

    testing::RedisServer redis;
    // the server must come up on the port the daemon retries
    pid_t r = ::fork();
    if (r == 0) {
        int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::execlp("redis-server", "redis-server", "--port", std::to_string(port).c_str(),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                 dir_.c_str(), nullptr);
        ::_exit(127);
    }
    int status = 0;
    for (int i = 0; i < 100 && status != 200; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        status = http("GET", "/healthz").first;
    }
    EXPECT_EQ(status, 200) << "signalrd reconnected to redis";
    ::kill(r, SIGTERM);
    ::waitpid(r, nullptr, 0);
    stop(SIGTERM);
}

TEST_F(Signalrd, SigtermEndsStreamsStoresTheReplyAndExitsZero)
{
    testing::RedisServer redis;
    ASSERT_TRUE(redis.start());
    start(base_config(redis.url()), {"SIGNALRD_DEMO_REPLY_TOKENS=1000"});
    ASSERT_TRUE(wait_for_file(dir_ + "/api.sock"));

    auto [created, id_json] = http("POST", "/api/v1/chats", R"({"prompt":{"text":"long"}})",
                                   "alice");
    ASSERT_EQ(created, 201) << id_json;
    std::string id = id_json.substr(1, id_json.size() - 2);

    asio::io_context io;
    FakeWorker w(io, dir_ + "/worker.sock");
    w.hello();
    w.open("conn-1", "ChatStreamHub", "alice");
    sr_message_t call;
    sr_message_init(&call, SR_MSG_STREAM_INVOCATION);
    call.invocation_id = strdup("s1");
    call.target = strdup("Stream");
    call.arguments = json_pack("[s n]", id.c_str());
    w.invoke("conn-1", call);
    sr_message_clear(&call);
    ASSERT_TRUE(w.wait([&] { return w.count(SR_IPC_SEND) >= 3; }));

    ::kill(pid_, SIGTERM);
    ASSERT_TRUE(w.wait([&] { return w.closed(); })) << "the link is closed on shutdown";
    EXPECT_EQ(wait_exit(), 0);

    std::string error;
    for (const testing::Frame &f : w.frames()) {
        sr_message_t m;
        sr_error_t err;
        if (f.type == SR_IPC_SEND &&
            sr_message_decode_payload(SR_PROTOCOL_MSGPACK, f.body.data(), f.body.size(), nullptr,
                                      &m, &err) == SR_OK) {
            if (m.type == SR_MSG_COMPLETION && m.error) {
                error = m.error;
            }
            sr_message_clear(&m);
        }
    }
    EXPECT_EQ(error, "The server is shutting down.");
    EXPECT_NE(::access((dir_ + "/worker.sock").c_str(), F_OK), 0) << "socket files removed";

    // the interrupted reply was finished and stored before exit
    redisContext *c = redisConnect("127.0.0.1", redis.port());
    ASSERT_TRUE(c && !c->err);
    std::string key = "signalr:conversation:{" + id + "}:messages";
    auto *reply = static_cast<redisReply *>(redisCommand(c, "LINDEX %s -1", key.c_str()));
    ASSERT_TRUE(reply && reply->type == REDIS_REPLY_STRING);
    std::string last(reply->str, reply->len);
    freeReplyObject(reply);
    redisFree(c);
    EXPECT_NE(last.find("Generation was interrupted."), std::string::npos) << last;
    EXPECT_NE(stderr_text().find("signalrd: info: stopped"), std::string::npos);
}

}  // namespace
}  // namespace signalrd
