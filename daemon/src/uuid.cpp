#include "uuid.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include <sys/random.h>

namespace signalrd {

namespace {

constexpr uint64_t fraction_bits = 12;
constexpr uint64_t counter_bits = 30;
constexpr uint64_t counter_mask = (uint64_t{1} << counter_bits) - 1;
constexpr uint64_t ns_per_ms = 1000000;

std::string format_uuid(const std::array<uint8_t, 16> &bytes)
{
    static const char hex[] = "0123456789abcdef";
    std::string out;

    out.reserve(36);
    for (size_t i = 0; i < bytes.size(); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out.push_back('-');
        }
        out.push_back(hex[bytes[i] >> 4]);
        out.push_back(hex[bytes[i] & 0x0f]);
    }
    return out;
}

}  // namespace

void RandomPool::refill()
{
    size_t got = 0;

    // past 256 bytes a signal may cut getrandom() short: it is called again. It does not
    // fail once the kernel's pool is initialised; should it, the clock fills the rest and
    // the counter still keeps the ids unique in this process
    while (got < bytes_.size()) {
        ssize_t n = getrandom(bytes_.data() + got, bytes_.size() - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += static_cast<size_t>(n);
    }
    for (; got < bytes_.size(); got++) {
        auto t = static_cast<uint64_t>(
            std::chrono::steady_clock::now().time_since_epoch().count()) + got;
        bytes_[got] = static_cast<uint8_t>((t * 0x9e3779b97f4a7c15u) >> 56);
    }
    used_ = 0;
    refills_++;
}

uint64_t RandomPool::next_u64()
{
    uint64_t value = 0;

    if (bytes_.size() - used_ < sizeof(value)) {
        refill();
    }
    std::memcpy(&value, bytes_.data() + used_, sizeof(value));
    std::memset(bytes_.data() + used_, 0, sizeof(value));
    used_ += sizeof(value);
    return value;
}

std::string UuidV7Generator::next()
{
    auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    auto ns = static_cast<uint64_t>(since_epoch.count());

    return next_at(ns / ns_per_ms, static_cast<uint32_t>(ns % ns_per_ms));
}

std::string UuidV7Generator::next_at(uint64_t unix_ms, uint32_t ns_into_ms)
{
    uint64_t fraction = (uint64_t{ns_into_ms} << fraction_bits) / ns_per_ms;
    uint64_t step = (unix_ms << fraction_bits) | (fraction & 0xfffu);

    if (step > last_step_) {
        // a fresh step: start the counter at a random value with its top bit clear,
        // leaving room for at least 2^29 more ids in that step
        last_step_ = step;
        counter_ = random_.next_u64() & (counter_mask >> 1);
    } else if (counter_ == counter_mask) {
        // counter exhausted, or the clock went back: borrow the next step
        last_step_++;
        counter_ = random_.next_u64() & (counter_mask >> 1);
    } else {
        counter_++;
    }

    uint64_t ms = last_step_ >> fraction_bits;
    uint64_t rand_a = last_step_ & 0xfffu;
    uint64_t tail = random_.next_u64() & 0xffffffffu;
    std::array<uint8_t, 16> b{};

    for (int i = 0; i < 6; i++) {
        b[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
    }
    b[6] = static_cast<uint8_t>(0x70 | (rand_a >> 8));
    b[7] = static_cast<uint8_t>(rand_a);
    b[8] = static_cast<uint8_t>(0x80 | (counter_ >> 24));
    b[9] = static_cast<uint8_t>(counter_ >> 16);
    b[10] = static_cast<uint8_t>(counter_ >> 8);
    b[11] = static_cast<uint8_t>(counter_);
    for (int i = 0; i < 4; i++) {
        b[12 + i] = static_cast<uint8_t>(tail >> (24 - 8 * i));
    }
    return format_uuid(b);
}

std::string new_uuid_v7()
{
    static UuidV7Generator generator;
    return generator.next();
}

std::optional<std::string> normalize_uuid(std::string_view text)
{
    std::string out;

    if (text.size() != 36) {
        return std::nullopt;
    }
    out.reserve(36);
    for (size_t i = 0; i < text.size(); i++) {
        char ch = text[i];
        bool dash_at = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash_at) {
            if (ch != '-') {
                return std::nullopt;
            }
        } else if (ch >= 'A' && ch <= 'F') {
            ch = static_cast<char>(ch - 'A' + 'a');
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            return std::nullopt;
        }
        out.push_back(ch);
    }
    return out;
}

std::optional<uint64_t> uuid_v7_time(std::string_view uuid)
{
    auto canonical = normalize_uuid(uuid);
    if (!canonical || (*canonical)[14] != '7') {
        return std::nullopt;
    }

    uint64_t ms = 0;
    for (char ch : canonical->substr(0, 8) + canonical->substr(9, 4)) {
        ms = (ms << 4) | static_cast<uint64_t>(ch <= '9' ? ch - '0' : ch - 'a' + 10);
    }
    return ms;
}

}  // namespace signalrd
