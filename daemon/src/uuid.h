// UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, 12 bits of the fraction of
// that millisecond, then a counter and random bits, so that ids sort by creation time
// as strings and as bytes.
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
// one clock step or the clock steps back. RFC 9562 section 6.2, methods 3 and 1: the 12
// bits after the version hold the fraction of the millisecond (steps of 1/4096 ms, about
// 244 ns), and the next 30 bits a counter, reseeded at random at each new step.
//
// Design note: the fraction makes the creation time readable to within a quarter of a
// microsecond instead of a millisecond. The benchmark reads a fragment's age from its
// id (docs/performance.md); with milliseconds alone the age came out between 0 and
// 1 ms too high. One loop thread: not thread safe.
class UuidV7Generator {
public:
    // Returns the canonical lowercase form, e.g. "0190a6f4-3b2c-7d1e-8f00-...".
    std::string next();

    // As next(), at a given time: Unix milliseconds and the nanoseconds into that
    // millisecond (below 1,000,000); for tests.
    std::string next_at(uint64_t unix_ms, uint32_t ns_into_ms = 0);

private:
    RandomPool random_;
    uint64_t last_step_ = 0;   // 60 bits: the milliseconds, then the 12-bit fraction
    uint64_t counter_ = 0;     // 30 bits, the top of rand_b
};

// The process-wide generator used for message and fragment ids.
std::string new_uuid_v7();

// Validates a textual UUID (any version, either case) and returns it lowercased, or
// nothing when it is not in the 8-4-4-4-12 hexadecimal form.
std::optional<std::string> normalize_uuid(std::string_view text);

// The Unix milliseconds of a version 7 UUID in canonical form, or nothing. (Ids of other
// generators carry random bits where ours carry the fraction: only the milliseconds are
// read.)
std::optional<uint64_t> uuid_v7_time(std::string_view uuid);

}  // namespace signalrd
