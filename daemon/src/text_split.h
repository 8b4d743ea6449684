// Splitting text on one separator, the way configuration values and URL paths are cut.

#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace signalrd {

// Every piece of text between separators, empty pieces included: "a,,b" is three
// pieces and "" is one empty piece.
inline std::vector<std::string> split_on(std::string_view text, char separator)
{
    std::vector<std::string> out;
    size_t pos = 0;

    while (pos <= text.size()) {
        size_t end = text.find(separator, pos);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        out.emplace_back(text.substr(pos, end - pos));
        pos = end + 1;
    }
    return out;
}

}  // namespace signalrd
