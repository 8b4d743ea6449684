// What every Asio user in the daemon shares: the completion token that reports errors
// as values instead of exceptions, and a detached spawn that logs what escapes.

#pragma once

#include <exception>
#include <utility>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include "log.h"

namespace signalrd {

// co_await x.async_op(..., use_nothrow) yields a tuple (error_code, results...).
inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// Runs a coroutine on its own; an exception escaping it (only std::bad_alloc and bugs
// can, since I/O errors are values) is logged with what, then dropped.
template <typename Executor, typename Awaitable>
void spawn_detached(Executor &&ex, Awaitable &&coroutine, const char *what)
{
    asio::co_spawn(std::forward<Executor>(ex), std::forward<Awaitable>(coroutine),
                   [what](std::exception_ptr e) {
                       if (!e) {
                           return;
                       }
                       try {
                           std::rethrow_exception(e);
                       } catch (const std::exception &error) {
                           log_error("%s failed: %s", what, error.what());
                       } catch (...) {
                           log_error("%s failed", what);
                       }
                   });
}

}  // namespace signalrd
