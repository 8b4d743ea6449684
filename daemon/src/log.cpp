#include "log.h"

#include <cstdarg>
#include <cstdio>

namespace signalrd {

namespace {

LogLevel current_level = LogLevel::info;

const char *level_name(LogLevel level)
{
    switch (level) {
    case LogLevel::error:
        return "error";
    case LogLevel::warn:
        return "warn";
    case LogLevel::info:
        return "info";
    case LogLevel::debug:
        return "debug";
    }
    return "info";
}

void write_line(LogLevel level, const char *fmt, va_list args)
{
    char line[2048];
    int  prefix;
    int  n;

    if (!log_enabled(level)) {
        return;
    }

    prefix = std::snprintf(line, sizeof(line), "signalrd: %s: ", level_name(level));
    n = std::vsnprintf(line + prefix, sizeof(line) - prefix - 1, fmt, args);

    // one fputs per line keeps lines whole when several processes share stderr
    size_t len = prefix + (n < 0 ? 0 : static_cast<size_t>(n));
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    std::fputs(line, stderr);
}

}  // namespace

void set_log_level(LogLevel level)
{
    current_level = level;
}

bool log_enabled(LogLevel level)
{
    return static_cast<int>(level) <= static_cast<int>(current_level);
}

#define SIGNALRD_LOG_BODY(level)  \
    va_list args;                 \
    va_start(args, fmt);          \
    write_line(level, fmt, args); \
    va_end(args)

void log_error(const char *fmt, ...)
{
    SIGNALRD_LOG_BODY(LogLevel::error);
}

void log_warn(const char *fmt, ...)
{
    SIGNALRD_LOG_BODY(LogLevel::warn);
}

void log_info(const char *fmt, ...)
{
    SIGNALRD_LOG_BODY(LogLevel::info);
}

void log_debug(const char *fmt, ...)
{
    SIGNALRD_LOG_BODY(LogLevel::debug);
}

}  // namespace signalrd
