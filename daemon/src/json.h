// Small owning helpers over jansson, the project's JSON library.

#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <jansson.h>

#include "status.h"

namespace signalrd {

// Owns one reference to a json_t.
class Json {
public:
    Json() = default;
    // Takes over a reference the caller owns (a json_*() constructor's result).
    explicit Json(json_t *owned) : value_(owned) {}
    ~Json() { json_decref(value_); }

    Json(const Json &other) : value_(json_incref(other.value_)) {}
    Json(Json &&other) noexcept : value_(other.value_) { other.value_ = nullptr; }
    Json &operator=(Json other) noexcept
    {
        std::swap(value_, other.value_);
        return *this;
    }

    static Json object() { return Json(json_object()); }
    static Json array() { return Json(json_array()); }
    // Borrows: adds a reference to a value owned elsewhere.
    static Json borrow(json_t *value) { return Json(json_incref(value)); }

    json_t *get() const { return value_; }
    // Gives the reference away, e.g. to a sr_message_t field.
    json_t *release()
    {
        json_t *v = value_;
        value_ = nullptr;
        return v;
    }
    explicit operator bool() const { return value_ != nullptr; }

private:
    json_t *value_ = nullptr;
};

// Compact text of value (no spaces), or "null" for nullptr.
std::string json_text(const json_t *value);

// Parses text as one JSON value (any type).
Result<Json> parse_json(std::string_view text);

// Sets key of obj to a string made from s (json_stringn: s need not end in NUL).
void json_set_string(json_t *obj, const char *key, std::string_view s);

// The string at key, or nullptr when it is absent or not a string.
const char *json_get_string(const json_t *obj, const char *key);

// Milliseconds since the Unix epoch, from the system clock.
int64_t unix_now_ms();

// ISO 8601 in UTC with milliseconds, e.g. "2025-03-01T12:00:00.250Z".
std::string format_timestamp(int64_t unix_ms);

}  // namespace signalrd
