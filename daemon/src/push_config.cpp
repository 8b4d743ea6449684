#include "push_config.h"

#include <algorithm>
#include <sstream>

#include "text_split.h"
#include "token_claims.h"

namespace signalrd {

namespace {

std::vector<std::string> words(std::string_view text)
{
    std::vector<std::string> out;
    std::istringstream in{std::string(text)};
    std::string word;

    while (in >> word) {
        out.push_back(word);
    }
    return out;
}

Result<ClaimRule> parse_rule(const std::string &text)
{
    std::vector<std::string> parts = words(text);
    std::string where = "push_group_rules: \"" + text + "\": ";

    if (parts.size() != 3) {
        return Status::invalid_argument(where + "expected \"HUB CLAIM=VALUE GROUP\"");
    }
    size_t eq = parts[1].find('=');
    if (eq == 0 || eq == std::string::npos || eq + 1 == parts[1].size()) {
        return Status::invalid_argument(where + "expected CLAIM=VALUE");
    }
    if (parts[0] != "*" && !valid_hub_name(parts[0])) {
        return Status::invalid_argument(where + "not a hub name");
    }
    if (!valid_group_name(parts[2])) {
        return Status::invalid_argument(where + "not a group name");
    }
    return ClaimRule{parts[0], parts[1].substr(0, eq), parts[1].substr(eq + 1), parts[2]};
}

bool claim_has(const json_t *claim, const std::string &value)
{
    size_t i;
    json_t *item;

    if (json_is_string(claim)) {
        return value == json_string_value(claim);
    }
    json_array_foreach(claim, i, item) {
        if (json_is_string(item) && value == json_string_value(item)) {
            return true;
        }
    }
    return false;
}

}  // namespace

bool valid_hub_name(std::string_view name)
{
    if (name.empty() || name.size() > 128) {
        return false;
    }
    auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (!letter(name.front())) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [&letter](char c) {
        return letter(c) || (c >= '0' && c <= '9') || c == '_';
    });
}

bool valid_group_name(std::string_view name)
{
    if (name.empty() || name.size() > 1024) {
        return false;
    }
    return std::none_of(name.begin(), name.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
}

Result<PushSettings> parse_push_settings(const std::string &hubs, const std::string &rules,
                                         const std::string &events_group)
{
    PushSettings out;

    for (const std::string &hub : words(hubs)) {
        if (!valid_hub_name(hub)) {
            return Status::invalid_argument("push_hubs: \"" + hub + "\" is not a hub name "
                                            "(a letter, then letters, digits or _)");
        }
        out.hubs.push_back(hub);
    }
    for (const std::string &text : split_on(rules, ',')) {
        if (words(text).empty()) {
            continue;
        }
        Result<ClaimRule> rule = parse_rule(text);
        if (!rule.is_ok()) {
            return rule.status();
        }
        out.rules.push_back(*rule);
    }
    if (!events_group.empty() && !valid_group_name(events_group)) {
        return Status::invalid_argument("presence_events_group: not a group name");
    }
    out.events_group = events_group;
    return out;
}

Result<PushSettings> load_push_settings(const Config &config,
                                        const std::vector<std::string> &taken)
{
    Result<PushSettings> push = parse_push_settings(config.push_hubs, config.push_group_rules,
                                                    config.presence_events_group);
    if (!push.is_ok()) {
        return push;
    }
    for (const std::string &hub : push->hubs) {
        if (std::find(taken.begin(), taken.end(), hub) != taken.end()) {
            return Status::invalid_argument("push_hubs: \"" + hub + "\" is served otherwise");
        }
    }
    if (!config.push_access_key_file.empty()) {
        Result<std::string> key = read_secret_file(config.push_access_key_file);
        if (!key.is_ok()) {
            return Status::invalid_argument("push_access_key_file: " + key.status().message());
        }
        push->access_key = *key;
    }
    return push;
}

std::vector<std::string> groups_from_claims(const std::vector<ClaimRule> &rules,
                                            const ConnectionInfo &connection)
{
    std::vector<std::string> out;

    for (const ClaimRule &rule : rules) {
        if (rule.hub != "*" && rule.hub != connection.hub) {
            continue;
        }
        const json_t *claim = json_object_get(connection.claims.get(), rule.claim.c_str());
        bool repeat = std::find(out.begin(), out.end(), rule.group) != out.end();
        if (!repeat && claim_has(claim, rule.value)) {
            out.push_back(rule.group);
        }
    }
    return out;
}

}  // namespace signalrd
