// Listening Unix sockets for the worker link and the HTTP API.

#pragma once

#include <string>

#include "asio_util.h"
#include "status.h"

namespace signalrd {

// Binds and listens on path with mode 0660. A stale socket file left by an earlier run
// is removed first; any other kind of file at path is an error, never removed.
Status listen_unix(asio::local::stream_protocol::acceptor &acceptor, const std::string &path);

}  // namespace signalrd
