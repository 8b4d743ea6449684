#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

namespace signalrd::testing {

bool run_until(asio::io_context &io, const std::function<bool()> &pred,
               std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
        io.run_for(std::chrono::milliseconds(5));
    }
    return pred();
}

void run_for(asio::io_context &io, std::chrono::milliseconds d)
{
    auto deadline = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < deadline) {
        io.run_for(std::chrono::milliseconds(5));
    }
}

int free_port()
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);

    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
        if (fd >= 0) {
            ::close(fd);
        }
        return 0;
    }
    int port = ntohs(addr.sin_port);
    ::close(fd);
    return port;
}

std::string make_temp_dir()
{
    std::string tmpl = (std::filesystem::temp_directory_path() / "signalrd-test-XXXXXX").string();
    char *dir = ::mkdtemp(tmpl.data());
    return dir ? std::string(dir) : std::string();
}

void remove_tree(const std::string &dir)
{
    std::error_code ec;
    if (!dir.empty()) {
        std::filesystem::remove_all(dir, ec);
    }
}

namespace {

bool answers_ping(int port)
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    char buf[16] = {};

    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0 &&
              ::write(fd, "PING\r\n", 6) == 6 && ::read(fd, buf, sizeof(buf) - 1) > 0 &&
              std::strncmp(buf, "+PONG", 5) == 0;
    if (fd >= 0) {
        ::close(fd);
    }
    return ok;
}

}  // namespace

bool RedisServer::start()
{
    dir_ = make_temp_dir();
    port_ = free_port();
    if (dir_.empty() || port_ == 0) {
        return false;
    }

    std::string port = std::to_string(port_);
    pid_ = ::fork();
    if (pid_ == 0) {
        int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", dir_.c_str(), nullptr);
        ::_exit(127);
    }
    if (pid_ < 0) {
        return false;
    }

    for (int i = 0; i < 200; i++) {
        if (answers_ping(port_)) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop();
    return false;
}

void RedisServer::stop()
{
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }
    remove_tree(dir_);
    dir_.clear();
}

RedisServer::~RedisServer()
{
    stop();
}

}  // namespace signalrd::testing
