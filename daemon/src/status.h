// Errors as values: a Status names what went wrong, a Result<T> carries a
// value or the Status that prevented it. Nothing here throws.

#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace signalrd {

enum class StatusCode {
    ok,
    invalid_argument,   // the caller's input is unusable
    not_found,          // the thing asked for does not exist (or is not the caller's)
    conflict,           // the request clashes with the current state
    unavailable,        // a dependency (Redis, a link) cannot be reached now
    io_error,           // a file or system call failed
    protocol_error,     // a peer broke a protocol
    too_large,          // input over a configured bound
    internal,           // an invariant failed; a bug
};

class Status {
public:
    Status() = default;

    static Status ok() { return Status(); }
    static Status invalid_argument(std::string m)
    {
        return {StatusCode::invalid_argument, std::move(m)};
    }
    static Status not_found(std::string m) { return {StatusCode::not_found, std::move(m)}; }
    static Status conflict(std::string m) { return {StatusCode::conflict, std::move(m)}; }
    static Status unavailable(std::string m) { return {StatusCode::unavailable, std::move(m)}; }
    static Status io_error(std::string m) { return {StatusCode::io_error, std::move(m)}; }
    static Status protocol_error(std::string m)
    {
        return {StatusCode::protocol_error, std::move(m)};
    }
    static Status too_large(std::string m) { return {StatusCode::too_large, std::move(m)}; }
    static Status internal(std::string m) { return {StatusCode::internal, std::move(m)}; }

    bool is_ok() const { return code_ == StatusCode::ok; }
    StatusCode code() const { return code_; }
    const std::string &message() const { return message_; }

private:
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

    StatusCode code_ = StatusCode::ok;
    std::string message_;
};

// A value or the Status explaining its absence. Default-constructed, it is an internal
// error, so that a Result can travel through completion handlers that need defaults.
template <typename T>
class Result {
public:
    Result() : status_(Status::internal("result never set")) {}
    Result(T value) : value_(std::move(value)) {}
    Result(Status status) : status_(std::move(status)) { assert(!status_.is_ok()); }

    bool is_ok() const { return value_.has_value(); }
    const Status &status() const { return status_; }

    T &value() { return *value_; }
    const T &value() const { return *value_; }
    T &operator*() { return *value_; }
    const T &operator*() const { return *value_; }
    T *operator->() { return &*value_; }
    const T *operator->() const { return &*value_; }

private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace signalrd
