#include "uuid7.h"

namespace bench {

namespace {

int
hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

}  // namespace


int64_t
uuid7_unix_ns(std::string_view s)
{
    int64_t  ms = 0;
    int64_t  fraction = 0;
    int      v;

    // xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx
    if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-'
        || s[23] != '-' || s[14] != '7')
    {
        return -1;
    }

    for (size_t i = 0; i < s.size(); i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            continue;
        }

        v = hex_value(s[i]);
        if (v < 0) {
            return -1;
        }

        if (i < 13) {
            ms = (ms << 4) | v;   // the 12 digits before the version
        } else if (i > 14 && i < 18) {
            fraction = (fraction << 4) | v;   // rand_a, after the version
        }
    }

    // The variant: the two top bits of digit 19 are 10.
    if ((hex_value(s[19]) & 0xc) != 0x8) {
        return -1;
    }

    return ms * 1000000 + fraction * 1000000 / 4096;
}

}  // namespace bench
