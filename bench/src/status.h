// Errors as values: a Status is either ok or carries a one-line reason
// fit for the operator running the benchmark.

#ifndef SIGNALR_BENCH_STATUS_H
#define SIGNALR_BENCH_STATUS_H

#include <string>
#include <utility>

namespace bench {

class Status {
public:
    static Status Ok() { return Status(); }

    static Status Error(std::string message)
    {
        return Status(std::move(message));
    }

    bool ok() const { return !failed_; }
    const std::string &message() const { return message_; }

private:
    Status() = default;

    explicit Status(std::string message)
        : failed_(true), message_(std::move(message))
    {
    }

    bool         failed_ = false;
    std::string  message_;
};

}  // namespace bench

#endif  // SIGNALR_BENCH_STATUS_H
