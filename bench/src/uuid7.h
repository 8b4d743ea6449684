// Reads the creation time out of a UUID version 7 (RFC 9562): its first
// 48 bits are milliseconds since the Unix epoch, and signalrd puts the
// fraction of that millisecond in the next 12 (rand_a, RFC 9562 section
// 6.2 method 3: steps of 1/4096 ms). The daemon stamps every fragment id
// so, which gives the benchmark a sender-side timestamp for messages it
// did not send itself.

#ifndef SIGNALR_BENCH_UUID7_H
#define SIGNALR_BENCH_UUID7_H

#include <cstdint>
#include <string_view>

namespace bench {

// The Unix time in ns of a canonical, hyphenated UUIDv7, rand_a read as
// the fraction of the millisecond, or -1 when s is not one. (For an id
// whose rand_a is random, as other generators make them, the time is up
// to 1 ms late.)
int64_t uuid7_unix_ns(std::string_view s);

}  // namespace bench

#endif  // SIGNALR_BENCH_UUID7_H
