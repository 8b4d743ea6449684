// signalrd's configuration: built-in defaults, then a "key = value" file, then the
// environment (which wins). Every key and its variable is listed in docs/operations.md.
//
// Design note: the format is parsed by hand; it is a few lines of code, none of the
// project's chosen libraries reads it, and errors must name the key and the line.

#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "log.h"
#include "status.h"

namespace signalrd {

inline constexpr const char *default_config_path = "/etc/signalrd/signalrd.conf";

struct Config {
    std::string worker_socket = "/run/signalrd/signalrd.sock";
    std::string http_socket = "/run/signalrd/api.sock";
    std::string redis_url = "redis://127.0.0.1:6379";
    std::string key_prefix = "signalr";
    uint32_t demo_token_rate = 20;       // tokens per second
    uint32_t demo_reply_tokens = 60;
    uint32_t history_messages = 25;      // turns handed to the provider
    uint32_t backlog_ttl = 300;          // seconds a backlog lives after its reply ends
    uint32_t hold_back_fragments = 1024; // per reply, queued toward Redis (docs/backplane.md)
    std::string dev_token_key;           // path of the HS256 dev secret; empty: no /dev/token
    std::string ai_base_url;             // empty: the demo provider
    std::string ai_model;
    std::string ai_api_key;              // never logged
    std::string ai_api_key_file;         // the key in a file instead (wins over ai_api_key)
    std::string ai_system_prompt;        // empty: no system message
    std::string ai_temperature;          // decimal text, 0 to 2; empty: the server's default
    uint32_t ai_max_tokens = 0;          // 0: not sent
    uint32_t ai_request_timeout = 300;   // seconds for a whole reply
    uint32_t ai_first_token_timeout = 60;   // seconds until the first token
    uint32_t ai_retries = 2;             // extra attempts, only before the first token
    bool ai_tls_verify = true;
    uint32_t backlog_batch_fragments = 256; // fragments per backlog write at most
    uint32_t backlog_batch_ms = 0;       // how long a backlog write may wait for more
    bool cancel_unwatched = false;       // cancel a reply when its last stream goes
    bool store_before_show = false;      // show a fragment only once Redis holds it
    std::string push_hubs;               // push hub names, space-separated (docs/push-api.md)
    std::string push_group_rules;        // "HUB CLAIM=VALUE GROUP" rules, comma-separated
    std::string push_access_key_file;    // the push API's access key; empty: no push API
    std::string presence_events_group;   // group told of users coming and going; empty: none
    uint32_t presence_ttl = 15;          // seconds an instance's presence outlives it
    LogLevel log_level = LogLevel::info;
};

// Looks a variable up; returns nullptr when it is not set.
using EnvLookup = std::function<const char *(const char *name)>;

// Loads the configuration. path_given says whether the operator named the file: a
// missing named file is an error, a missing default file is not. Errors name the file,
// the line and the key.
Result<Config> load_config(const std::string &path, bool path_given, const EnvLookup &env);

// Parses the text of a configuration file into config; origin names it in errors.
Status parse_config_text(const std::string &text, const std::string &origin, Config &config);

// Applies the environment overrides to config.
Status apply_environment(const EnvLookup &env, Config &config);

}  // namespace signalrd
