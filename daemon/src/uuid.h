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

// Bytes of the kernel's CSPRNG (getrandom()), drawn a block at a time: one system call
// for many ids instead of one or two for each. Design note: the bytes stay as
// unpredictable as the kernel made them; each is handed out once and wiped when taken,
// so a later look at the process's memory does not show the random bits of ids already
// made. One loop thread: not thread safe.
class RandomPool {
public:
    static constexpr size_t block_size = 512;

    uint64_t next_u64();

    // How many blocks were drawn from the kernel so far; for tests.
    uint64_t refills() const { return refills_; }

private:
    void refill();

    std::array<uint8_t, block_size> bytes_{};
    size_t used_ = block_size;     // all taken: the first call draws a block
    uint64_t refills_ = 0;
};

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
    RandomPool random_;
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
