#include "histogram.h"

#include <algorithm>
#include <cmath>

namespace bench {

namespace {

// Values below kLinear get a bucket each; above, each power of two is
// split into kSteps buckets.
constexpr unsigned  kStepBits = 6;
constexpr uint64_t  kSteps = uint64_t(1) << kStepBits;
constexpr uint64_t  kLinear = kSteps * 2;

// Largest bucket index + 1: values up to 2^63.
constexpr size_t    kMaxBuckets = kLinear + (63 - kStepBits) * kSteps;

}  // namespace


size_t
Histogram::bucket_of(uint64_t value)
{
    unsigned  msb, shift;

    if (value < kLinear) {
        return size_t(value);
    }

    msb = 63 - unsigned(__builtin_clzll(value));
    shift = msb - kStepBits;

    return size_t(kLinear + (shift - 1) * kSteps
                  + ((value >> shift) - kSteps));
}


uint64_t
Histogram::bucket_low(size_t index)
{
    uint64_t  shift, step;

    if (index < kLinear) {
        return index;
    }

    shift = (index - kLinear) / kSteps + 1;
    step = (index - kLinear) % kSteps + kSteps;

    return step << shift;
}


uint64_t
Histogram::bucket_high(size_t index)
{
    return bucket_low(index + 1) - 1;
}


void
Histogram::record(int64_t value_us)
{
    size_t  index;

    if (value_us < 0) {
        value_us = 0;
    }

    index = bucket_of(uint64_t(value_us));
    if (index >= buckets_.size()) {
        buckets_.resize(index + 1, 0);
    }
    buckets_[index]++;

    if (count_ == 0 || value_us < min_) {
        min_ = value_us;
    }
    if (count_ == 0 || value_us > max_) {
        max_ = value_us;
    }

    count_++;
    sum_ += value_us;
}


void
Histogram::merge(const Histogram &other)
{
    if (other.count_ == 0) {
        return;
    }

    if (other.buckets_.size() > buckets_.size()) {
        buckets_.resize(other.buckets_.size(), 0);
    }
    for (size_t i = 0; i < other.buckets_.size(); i++) {
        buckets_[i] += other.buckets_[i];
    }

    min_ = count_ ? std::min(min_, other.min_) : other.min_;
    max_ = count_ ? std::max(max_, other.max_) : other.max_;
    count_ += other.count_;
    sum_ += other.sum_;
}


double
Histogram::mean() const
{
    return count_ ? double(sum_) / double(count_) : 0.0;
}


int64_t
Histogram::percentile(double p) const
{
    uint64_t  rank, seen;
    int64_t   mid;

    if (count_ == 0) {
        return 0;
    }

    rank = uint64_t(std::ceil(p / 100.0 * double(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    if (rank == count_) {
        return max_;   // the top rank is known exactly
    }

    seen = 0;
    for (size_t i = 0; i < buckets_.size(); i++) {
        seen += buckets_[i];
        if (seen >= rank) {
            mid = int64_t(bucket_low(i) + (bucket_high(i) - bucket_low(i))
                          / 2);
            return std::clamp(mid, min_, max_);
        }
    }

    return max_;
}


json_t *
Histogram::to_json() const
{
    json_t  *buckets;

    buckets = json_array();
    for (size_t i = 0; i < buckets_.size(); i++) {
        if (buckets_[i] != 0) {
            json_array_append_new(buckets,
                json_pack("[II]", json_int_t(i), json_int_t(buckets_[i])));
        }
    }

    return json_pack("{sIsIsIsIso}",
                     "count", json_int_t(count_),
                     "sum", json_int_t(sum_),
                     "min", json_int_t(min()),
                     "max", json_int_t(max()),
                     "buckets", buckets);
}


Status
Histogram::from_json(const json_t *json, Histogram *out)
{
    json_int_t   count, sum, min, max, index, n;
    json_t      *buckets, *pair;
    size_t       i;

    if (json_unpack(const_cast<json_t *>(json), "{sIsIsIsIso}",
                    "count", &count, "sum", &sum, "min", &min,
                    "max", &max, "buckets", &buckets) != 0
        || !json_is_array(buckets) || count < 0)
    {
        return Status::Error("malformed histogram");
    }

    Histogram  h;

    json_array_foreach(buckets, i, pair) {
        if (json_unpack(pair, "[II]", &index, &n) != 0
            || index < 0 || size_t(index) >= kMaxBuckets || n < 0)
        {
            return Status::Error("malformed histogram bucket");
        }
        if (size_t(index) >= h.buckets_.size()) {
            h.buckets_.resize(size_t(index) + 1, 0);
        }
        h.buckets_[size_t(index)] += uint64_t(n);
    }

    h.count_ = uint64_t(count);
    h.sum_ = sum;
    h.min_ = min;
    h.max_ = max;
    *out = std::move(h);

    return Status::Ok();
}

}  // namespace bench
