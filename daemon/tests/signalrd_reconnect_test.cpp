// Stateful reconnect through the signalrd binary as it runs in a deployment: two daemons
// sharing a redis-server hand a parked connection over, and the chat hub of its home
// answers a client that came back through the other one.

#include <csignal>
#include <fstream>
#include <thread>

#include <hiredis/hiredis.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "parking.h"
#include "reconnect_util.h"

namespace signalrd {
namespace {

using namespace testing;

// One signalrd process with its own sockets in dir, killed on destruction.
class DaemonProcess {
public:
    DaemonProcess(const std::string &dir, const std::string &redis_url) : dir_(dir)
    {
        std::string conf = dir_ + "/signalrd.conf";
        std::ofstream(conf) << "worker_socket = " << worker_socket() << "\nhttp_socket = "
                            << dir_ << "/api.sock\nredis_url = " << redis_url << "\n";
        pid_ = ::fork();
        if (pid_ == 0) {
            int log = ::open((dir_ + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ::dup2(log, 2);
            ::execl(SIGNALRD_PATH, "signalrd", "--config", conf.c_str(), nullptr);
            ::_exit(127);
        }
    }

    ~DaemonProcess()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }

    std::string worker_socket() const { return dir_ + "/worker.sock"; }

    bool wait_listening() const
    {
        for (int i = 0; i < 500; i++) {
            struct stat st;
            if (::stat(worker_socket().c_str(), &st) == 0) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    std::string log() const
    {
        std::ifstream in(dir_ + "/stderr");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }

private:
    std::string dir_;
    pid_t pid_ = -1;
};

// One command on the test's redis-server; the reply's string, or its integer (the second
// element's, for an array), nullopt for anything else.
std::optional<std::string> redis_query(int port, const char *verb, const std::string &arg1,
                                       const std::string &arg2 = "")
{
    redisContext *c = redisConnect("127.0.0.1", port);
    std::optional<std::string> value;
    if (c != nullptr && c->err == 0) {
        auto *r = static_cast<redisReply *>(
            arg2.empty() ? redisCommand(c, "%s %s", verb, arg1.c_str())
                         : redisCommand(c, "%s %s %s", verb, arg1.c_str(), arg2.c_str()));
        if (r != nullptr && r->type == REDIS_REPLY_STRING) {
            value = std::string(r->str, r->len);
        } else if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[1]->type == REDIS_REPLY_INTEGER) {
            value = std::to_string(r->element[1]->integer);
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return value;
}

std::optional<std::string> redis_get(int port, const std::string &key)
{
    return redis_query(port, "GET", key);
}

// Whether the daemon whose worker socket is path listens on its instance channel.
bool instance_subscribed(int port, const std::string &worker_socket)
{
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    std::string channel = std::string("signalr:instance:") + host + ":" + worker_socket;
    return redis_query(port, "PUBSUB", "NUMSUB", channel) == "1";
}

TEST(SignalrdReconnect, TwoDaemonsHandAParkedConnectionOverAndItsHomeAnswersThroughTheOther)
{
    RedisServer redis;
    ASSERT_TRUE(redis.start()) << "redis-server could not be started";
    std::string dir_a = make_temp_dir();
    std::string dir_b = make_temp_dir();
    asio::io_context io;
    {
        DaemonProcess a(dir_a, redis.url());
        DaemonProcess b(dir_b, redis.url());
        ASSERT_TRUE(a.wait_listening() && b.wait_listening());
        ASSERT_TRUE(run_until(io, [&] {
            return instance_subscribed(redis.port(), a.worker_socket()) &&
                   instance_subscribed(redis.port(), b.worker_socket());
        })) << "both daemons listen on their instance channels";
        FakeWorker wa(io, a.worker_socket());
        FakeWorker wb(io, b.worker_socket());
        wa.hello(SR_IPC_VERSION, 100);
        wb.hello(SR_IPC_VERSION, 200);

        wa.open("c1", "ChatStreamHub", "alice");
        detach(wa, "c1", 30000, 100000);
        ASSERT_TRUE(wa.wait([&] { return wa.find(SR_IPC_RELEASE) != nullptr; }));
        Bytes state = state_body("tok-1", {}, 30000, 100000, "ChatStreamHub");
        send_bytes(wa, SR_IPC_PARK, "c1", state);
        std::string key = "signalr:parked:" + token_hash("tok-1");
        ASSERT_TRUE(run_until(io, [&] { return redis_get(redis.port(), key).has_value(); }))
            << a.log();

        resume(wb, "tok-1", 7);
        ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_ADOPT) != nullptr; })) << b.log();
        Adoption adopted = adoption(*wb.find(SR_IPC_ADOPT));
        EXPECT_EQ(adopted.conn, "c1");
        EXPECT_EQ(adopted.ref, 7u);
        EXPECT_EQ(adopted.state, state);
        EXPECT_TRUE(run_until(io, [&] { return !redis_get(redis.port(), key); }));

        // an invocation through b reaches a's chat hub, whose answer comes back through b
        sr_message_t call;
        sr_message_init(&call, SR_MSG_INVOCATION);
        call.invocation_id = strdup("42");
        call.target = strdup("Nope");
        call.arguments = json_array();
        wb.invoke("c1", call);
        sr_message_clear(&call);
        ASSERT_TRUE(wb.wait([&] { return wb.find(SR_IPC_SEND) != nullptr; })) << a.log();
        const Frame *answer = wb.find(SR_IPC_SEND);
        EXPECT_EQ(answer->conn, "c1");
        sr_message_t completion;
        sr_error_t err;
        ASSERT_EQ(sr_message_decode_payload(SR_PROTOCOL_MSGPACK, answer->body.data(),
                                            answer->body.size(), nullptr, &completion, &err),
                  SR_OK)
            << err.str;
        EXPECT_EQ(completion.type, SR_MSG_COMPLETION);
        EXPECT_STREQ(completion.invocation_id, "42");
        EXPECT_STREQ(completion.error, "Unknown method 'Nope'.");
        sr_message_clear(&completion);

        EXPECT_NE(a.log().find("connection c1: parked"), std::string::npos);
        EXPECT_NE(a.log().find("connection c1: adopted"), std::string::npos);
        EXPECT_NE(b.log().find("connection c1: adopted from instance"), std::string::npos);
        EXPECT_EQ(a.log().find("tok-1"), std::string::npos) << "no token in a log";
        EXPECT_EQ(b.log().find("tok-1"), std::string::npos) << "no token in a log";
    }
    remove_tree(dir_a);
    remove_tree(dir_b);
}

}  // namespace
}  // namespace signalrd
