// The broadcast payload: a fixed-size text that carries its sequence
// number and the sender's monotonic clock, so that every subscriber can
// time the delivery without a clock of its own. CLOCK_MONOTONIC is one
// clock for every process of the machine.
//
//   "bench <seq> <sent_ns> xxxx...x"   exactly size bytes

#ifndef SIGNALR_BENCH_PAYLOAD_H
#define SIGNALR_BENCH_PAYLOAD_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace bench {

// The smallest payload that holds the largest sequence and clock.
constexpr size_t  kMinPayload = 48;

// A payload of max(size, kMinPayload) bytes.
std::string make_payload(uint64_t seq, int64_t sent_ns, size_t size);

// False when data is not a payload of make_payload().
bool parse_payload(const char *data, size_t len, uint64_t *seq,
                   int64_t *sent_ns);

}  // namespace bench

#endif  // SIGNALR_BENCH_PAYLOAD_H
