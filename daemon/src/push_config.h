// What the push side of the daemon is configured with (docs/push-api.md): the push hubs,
// the claim rules that join connections to groups as they connect, and the group told
// of users coming and going. Parsed from the text of three signalrd.conf keys.
//
//   push_hubs = NotificationHub OrderHub
//   push_group_rules = NotificationHub role=admin administrators, * role=ops operators
//   presence_events_group = administrators

#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "hub.h"
#include "status.h"

namespace signalrd {

// A connection of hub (or of any hub, for "*") whose claim has value, or an array
// holding value, joins group.
struct ClaimRule {
    std::string hub;
    std::string claim;
    std::string value;
    std::string group;
};

struct PushSettings {
    std::vector<std::string> hubs;
    std::vector<ClaimRule> rules;
    std::string events_group;   // empty: no presence events
    std::string access_key;     // the push API's HS256 secret; empty: no push API; never logged
};

// Azure SignalR Service's rule for hub names: a letter, then letters, digits or '_';
// at most 128 here.
bool valid_hub_name(std::string_view name);

// Group names: 1 to 1024 bytes, no control characters.
bool valid_group_name(std::string_view name);

// Parses the three keys' values. Errors name the key and the offending part.
Result<PushSettings> parse_push_settings(const std::string &hubs, const std::string &rules,
                                         const std::string &events_group);

// Parses the configuration's push keys and reads the access key file. taken: hub names
// already served otherwise, which a push hub must not reuse.
Result<PushSettings> load_push_settings(const Config &config,
                                        const std::vector<std::string> &taken);

// The groups the rules give this connection, in rule order, without repeats.
std::vector<std::string> groups_from_claims(const std::vector<ClaimRule> &rules,
                                            const ConnectionInfo &connection);

}  // namespace signalrd
