#include "socket_util.h"

#include <cerrno>
#include <cstring>

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace signalrd {

Status listen_unix(asio::local::stream_protocol::acceptor &acceptor, const std::string &path)
{
    struct stat st;
    asio::error_code ec;

    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
        return Status::invalid_argument("socket path \"" + path + "\" is too long");
    }

    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return Status::io_error("\"" + path + "\" exists and is not a socket");
        }
        if (::unlink(path.c_str()) != 0) {
            return Status::io_error("unlink() \"" + path + "\" failed: " + std::strerror(errno));
        }
    }

    asio::local::stream_protocol::endpoint endpoint(path);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
        // a restrictive umask while binding: the socket never exists with wider rights
        mode_t old = ::umask(0117);
        acceptor.bind(endpoint, ec);
        ::umask(old);
    }
    if (!ec) {
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        acceptor.close();
        return Status::io_error("bind() to \"" + path + "\" failed: " + ec.message());
    }
    if (::chmod(path.c_str(), 0660) != 0) {
        return Status::io_error("chmod() \"" + path + "\" failed: " + std::strerror(errno));
    }
    return Status::ok();
}

}  // namespace signalrd
