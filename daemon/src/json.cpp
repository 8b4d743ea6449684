#include "json.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace signalrd {

std::string json_text(const json_t *value)
{
    if (value == nullptr) {
        return "null";
    }

    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == nullptr) {
        return "null";
    }
    std::string out(text);
    std::free(text);
    return out;
}

Result<Json> parse_json(std::string_view text)
{
    json_error_t error;
    json_t *value = json_loadb(text.data(), text.size(), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                               &error);
    if (value == nullptr) {
        return Status::invalid_argument(std::string("invalid JSON: ") + error.text);
    }
    return Json(value);
}

void json_set_string(json_t *obj, const char *key, std::string_view s)
{
    json_object_set_new(obj, key, json_stringn(s.data(), s.size()));
}

const char *json_get_string(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : nullptr;
}

int64_t unix_now_ms()
{
    auto now = std::chrono::system_clock::now().time_since_epoch();
    return std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
}

std::string format_timestamp(int64_t unix_ms)
{
    time_t secs = static_cast<time_t>(unix_ms / 1000);
    struct tm tm;
    char buf[96];

    gmtime_r(&secs, &tm);
    std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(unix_ms % 1000));
    return buf;
}

}  // namespace signalrd
