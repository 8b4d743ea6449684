// UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then a counter and random
// bits, so that ids sort by creation time as strings and as bytes.
//
// Design note: written here because Debian 12's libuuid (util-linux 2.38) predates
// version 7, and resuming a stream needs ids that are monotonic within the process,
// which a generic generator does not promise.

#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace signalrd {

// Generates ids that strictly increase within one process, even when many are made in
// one millisecond or the clock steps back (RFC 9562 section 6.2, method 1: a counter
// in the bits after the version, reseeded at random each new millisecond). One loop
// thread: not thread safe.
class UuidV7Generator {
public:
    // Returns the canonical lowercase form, e.g. "0190a6f4-3b2c-7d1e-8f00-...".
    std::string next();

    // As next(), at a given time; for tests.
    std::string next_at(uint64_t unix_ms);

private:
    uint64_t last_ms_ = 0;
    uint64_t counter_ = 0;     // 42 bits: 12 of rand_a, 30 of rand_b
};

// The process-wide generator used for message and fragment ids.
std::string new_uuid_v7();

// Validates a textual UUID (any version, either case) and returns it lowercased, or
// nothing when it is not in the 8-4-4-4-12 hexadecimal form.
std::optional<std::string> normalize_uuid(std::string_view text);

// The Unix milliseconds of a version 7 UUID in canonical form, or nothing.
std::optional<uint64_t> uuid_v7_time(std::string_view uuid);

}  // namespace signalrd
