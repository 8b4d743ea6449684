#include "payload.h"

#include <cstdio>

namespace bench {

namespace {

// Reads the decimal digits at data[*pos] up to a space; false without.
bool
read_number(const char *data, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t  v = 0;
    size_t    start = *pos;

    while (*pos < len && data[*pos] >= '0' && data[*pos] <= '9') {
        if (*pos - start >= 19) {
            return false;  // would overflow
        }
        v = v * 10 + uint64_t(data[*pos] - '0');
        (*pos)++;
    }

    if (*pos == start || *pos >= len || data[*pos] != ' ') {
        return false;
    }

    (*pos)++;
    *out = v;
    return true;
}

}  // namespace


std::string
make_payload(uint64_t seq, int64_t sent_ns, size_t size)
{
    char         head[kMinPayload];
    std::string  out;
    int          n;

    n = snprintf(head, sizeof(head), "bench %llu %lld ",
                 (unsigned long long) seq, (long long) sent_ns);

    out.assign(head, size_t(n));
    if (out.size() < size) {
        out.append(size - out.size(), 'x');
    }

    return out;
}


bool
parse_payload(const char *data, size_t len, uint64_t *seq, int64_t *sent_ns)
{
    size_t    pos = 6;
    uint64_t  ns;

    if (len < pos || std::string(data, pos) != "bench ") {
        return false;
    }

    if (!read_number(data, len, &pos, seq)
        || !read_number(data, len, &pos, &ns)
        || ns > uint64_t(INT64_MAX))
    {
        return false;
    }

    *sent_ns = int64_t(ns);
    return true;
}

}  // namespace bench
