// Connection tokens, as stateful reconnect needs them: tokens are secrets, so the daemon
// keeps, indexes and publishes only their SHA-256, and never logs either.

#pragma once

#include <cstddef>
#include <string>

namespace signalrd {

// The lowercase hex SHA-256 of a connection token.
std::string token_hash(const std::string &token);

// The optional "token" key of an OPEN body (docs/ipc.md): a worker that lets its
// stateful clients resume sends it, so that a client coming back to another worker
// before this one noticed the cut finds its connection. "" when absent, not a string, or
// the body does not decode (the shared decoder of OPEN checks the rest and ignores it).
std::string open_body_token(const unsigned char *body, size_t len);

}  // namespace signalrd
