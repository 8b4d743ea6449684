// Reads the creation time out of a UUID version 7 (RFC 9562): its first
// 48 bits are milliseconds since the Unix epoch. The daemon stamps every
// fragment id so, which gives the benchmark a sender-side timestamp for
// messages it did not send itself.

#ifndef SIGNALR_BENCH_UUID7_H
#define SIGNALR_BENCH_UUID7_H

#include <cstdint>
#include <string_view>

namespace bench {

// The Unix time in ms of a canonical, hyphenated UUIDv7, or -1 when s
// is not one.
int64_t uuid7_unix_ms(std::string_view s);

}  // namespace bench

#endif  // SIGNALR_BENCH_UUID7_H
