#include "config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

#include <sys/stat.h>

namespace signalrd {

namespace {

enum class KeyKind { text, count, log_level, flag };

struct KeySpec {
    const char *key;
    const char *env;    // nullptr: no environment override
    KeyKind kind;
    uint32_t min;       // for counts
    uint32_t max;
};

const KeySpec key_specs[] = {
    {"worker_socket", "SIGNALRD_WORKER_SOCKET", KeyKind::text, 0, 0},
    {"http_socket", "SIGNALRD_HTTP_SOCKET", KeyKind::text, 0, 0},
    {"redis_url", "REDIS_URL", KeyKind::text, 0, 0},
    {"key_prefix", "SIGNALRD_KEY_PREFIX", KeyKind::text, 0, 0},
    {"demo_token_rate", "SIGNALRD_DEMO_TOKEN_RATE", KeyKind::count, 1, 100000},
    {"demo_reply_tokens", "SIGNALRD_DEMO_REPLY_TOKENS", KeyKind::count, 1, 100000},
    {"history_messages", "SIGNALRD_HISTORY_MESSAGES", KeyKind::count, 1, 1000},
    {"backlog_ttl", "SIGNALRD_BACKLOG_TTL", KeyKind::count, 1, 86400 * 7},
    {"hold_back_fragments", "SIGNALRD_HOLD_BACK_FRAGMENTS", KeyKind::count, 1, 1000000},
    {"dev_token_key", "SIGNALRD_DEV_TOKEN_KEY", KeyKind::text, 0, 0},
    {"ai_base_url", "AI_BASE_URL", KeyKind::text, 0, 0},
    {"ai_model", "AI_MODEL", KeyKind::text, 0, 0},
    {"ai_api_key", "AI_API_KEY", KeyKind::text, 0, 0},
    {"ai_api_key_file", "AI_API_KEY_FILE", KeyKind::text, 0, 0},
    {"ai_system_prompt", "AI_SYSTEM_PROMPT", KeyKind::text, 0, 0},
    {"ai_temperature", "AI_TEMPERATURE", KeyKind::text, 0, 0},
    {"ai_max_tokens", "AI_MAX_TOKENS", KeyKind::count, 0, 1000000},
    {"ai_request_timeout", "AI_REQUEST_TIMEOUT", KeyKind::count, 1, 86400},
    {"ai_first_token_timeout", "AI_FIRST_TOKEN_TIMEOUT", KeyKind::count, 1, 3600},
    {"ai_retries", "AI_RETRIES", KeyKind::count, 0, 10},
    {"ai_tls_verify", "AI_TLS_VERIFY", KeyKind::flag, 0, 0},
    {"backlog_batch_fragments", "SIGNALRD_BACKLOG_BATCH_FRAGMENTS", KeyKind::count, 1, 1000},
    {"backlog_batch_ms", "SIGNALRD_BACKLOG_BATCH_MS", KeyKind::count, 0, 1000},
    {"cancel_unwatched", "SIGNALRD_CANCEL_UNWATCHED", KeyKind::flag, 0, 0},
    {"store_before_show", "SIGNALRD_STORE_BEFORE_SHOW", KeyKind::flag, 0, 0},
    {"log_level", "SIGNALRD_LOG_LEVEL", KeyKind::log_level, 0, 0},
    {"push_hubs", "SIGNALRD_PUSH_HUBS", KeyKind::text, 0, 0},
    {"push_group_rules", "SIGNALRD_PUSH_GROUP_RULES", KeyKind::text, 0, 0},
    {"push_access_key_file", "SIGNALRD_PUSH_ACCESS_KEY_FILE", KeyKind::text, 0, 0},
    {"presence_events_group", "SIGNALRD_PRESENCE_EVENTS_GROUP", KeyKind::text, 0, 0},
    {"presence_ttl", "SIGNALRD_PRESENCE_TTL", KeyKind::count, 3, 3600},
};

const KeySpec *find_key(std::string_view key)
{
    for (const KeySpec &spec : key_specs) {
        if (key == spec.key) {
            return &spec;
        }
    }
    return nullptr;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

std::string *text_field(Config &c, std::string_view key)
{
    if (key == "worker_socket") return &c.worker_socket;
    if (key == "http_socket") return &c.http_socket;
    if (key == "redis_url") return &c.redis_url;
    if (key == "key_prefix") return &c.key_prefix;
    if (key == "dev_token_key") return &c.dev_token_key;
    if (key == "ai_base_url") return &c.ai_base_url;
    if (key == "ai_model") return &c.ai_model;
    if (key == "ai_api_key") return &c.ai_api_key;
    if (key == "ai_api_key_file") return &c.ai_api_key_file;
    if (key == "ai_system_prompt") return &c.ai_system_prompt;
    if (key == "ai_temperature") return &c.ai_temperature;
    if (key == "push_hubs") return &c.push_hubs;
    if (key == "push_group_rules") return &c.push_group_rules;
    if (key == "push_access_key_file") return &c.push_access_key_file;
    if (key == "presence_events_group") return &c.presence_events_group;
    return nullptr;
}

bool *flag_field(Config &c, std::string_view key)
{
    if (key == "ai_tls_verify") return &c.ai_tls_verify;
    if (key == "cancel_unwatched") return &c.cancel_unwatched;
    if (key == "store_before_show") return &c.store_before_show;
    return nullptr;
}

uint32_t *count_field(Config &c, std::string_view key)
{
    if (key == "demo_token_rate") return &c.demo_token_rate;
    if (key == "demo_reply_tokens") return &c.demo_reply_tokens;
    if (key == "history_messages") return &c.history_messages;
    if (key == "backlog_ttl") return &c.backlog_ttl;
    if (key == "hold_back_fragments") return &c.hold_back_fragments;
    if (key == "ai_max_tokens") return &c.ai_max_tokens;
    if (key == "ai_request_timeout") return &c.ai_request_timeout;
    if (key == "ai_first_token_timeout") return &c.ai_first_token_timeout;
    if (key == "ai_retries") return &c.ai_retries;
    if (key == "backlog_batch_fragments") return &c.backlog_batch_fragments;
    if (key == "backlog_batch_ms") return &c.backlog_batch_ms;
    if (key == "presence_ttl") return &c.presence_ttl;
    return nullptr;
}

// Stores value under spec's key; where says where the value came from, for errors.
Status assign(const KeySpec &spec, std::string_view value, const std::string &where, Config &c)
{
    if (spec.kind == KeyKind::log_level) {
        if (value == "info") {
            c.log_level = LogLevel::info;
        } else if (value == "debug") {
            c.log_level = LogLevel::debug;
        } else {
            return Status::invalid_argument(where + ": log_level must be \"info\" or \"debug\"");
        }
        return Status::ok();
    }

    if (spec.kind == KeyKind::flag) {
        if (value != "on" && value != "off") {
            return Status::invalid_argument(where + ": " + spec.key +
                                            " must be \"on\" or \"off\"");
        }
        *flag_field(c, spec.key) = value == "on";
        return Status::ok();
    }

    if (spec.kind == KeyKind::count) {
        uint64_t n = 0;
        if (value.empty() || value.size() > 9) {
            return Status::invalid_argument(where + ": " + spec.key + " must be a number");
        }
        for (char ch : value) {
            if (ch < '0' || ch > '9') {
                return Status::invalid_argument(where + ": " + spec.key + " must be a number");
            }
            n = n * 10 + static_cast<uint64_t>(ch - '0');
        }
        if (n < spec.min || n > spec.max) {
            return Status::invalid_argument(where + ": " + spec.key + " must be between " +
                                            std::to_string(spec.min) + " and " +
                                            std::to_string(spec.max));
        }
        *count_field(c, spec.key) = static_cast<uint32_t>(n);
        return Status::ok();
    }

    *text_field(c, spec.key) = std::string(value);
    return Status::ok();
}

Status check_values(const Config &c)
{
    if (c.worker_socket.empty() || c.http_socket.empty()) {
        return Status::invalid_argument("worker_socket and http_socket must not be empty");
    }
    if (c.worker_socket == c.http_socket) {
        return Status::invalid_argument("worker_socket and http_socket must differ");
    }
    if (c.key_prefix.empty()) {
        return Status::invalid_argument("key_prefix must not be empty");
    }
    return Status::ok();
}

}  // namespace

Status parse_config_text(const std::string &text, const std::string &origin, Config &config)
{
    std::istringstream in(text);
    std::string raw;
    unsigned line_no = 0;

    while (std::getline(in, raw)) {
        line_no++;
        std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') {
            continue;
        }

        std::string where = origin + ":" + std::to_string(line_no);
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) {
            return Status::invalid_argument(where + ": expected \"key = value\"");
        }

        std::string_view key = trim(line.substr(0, eq));
        std::string_view value = trim(line.substr(eq + 1));
        const KeySpec *spec = find_key(key);
        if (spec == nullptr) {
            return Status::invalid_argument(where + ": unknown key \"" + std::string(key) + "\"");
        }

        Status s = assign(*spec, value, where, config);
        if (!s.is_ok()) {
            return s;
        }
    }
    return Status::ok();
}

Status apply_environment(const EnvLookup &env, Config &config)
{
    for (const KeySpec &spec : key_specs) {
        const char *value = spec.env ? env(spec.env) : nullptr;
        if (value == nullptr) {
            continue;
        }
        Status s = assign(spec, value, std::string("environment ") + spec.env, config);
        if (!s.is_ok()) {
            return s;
        }
    }
    return Status::ok();
}

Result<Config> load_config(const std::string &path, bool path_given, const EnvLookup &env)
{
    Config config;
    struct stat st;

    // only the default file may be absent: a named file that is missing is a typo
    bool absent = ::stat(path.c_str(), &st) != 0 && errno == ENOENT;
    if (absent && path_given) {
        return Status::io_error("config file \"" + path + "\" does not exist");
    }

    if (!absent) {
        std::ifstream file(path);
        if (!file) {
            return Status::io_error("open() \"" + path + "\" failed: " + std::strerror(errno));
        }
        std::stringstream text;
        text << file.rdbuf();
        Status s = parse_config_text(text.str(), path, config);
        if (!s.is_ok()) {
            return s;
        }
    }

    Status s = apply_environment(env, config);
    if (!s.is_ok()) {
        return s;
    }
    s = check_values(config);
    if (!s.is_ok()) {
        return s;
    }
    return config;
}

}  // namespace signalrd
