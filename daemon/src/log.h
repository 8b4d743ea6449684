// Plain log lines on stderr, one write per line, in the form
// "signalrd: <level>: <message>" (journald adds time and unit). Messages follow nginx's
// grammar: lowercase, no full stop, the failing call named. Never log a token or secret.

#pragma once

namespace signalrd {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace signalrd
