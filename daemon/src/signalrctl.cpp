// signalrctl: the operator's and developer's companion to signalrd.
//
//   signalrctl token --sub NAME [--role ROLE] [--key FILE] [--ttl SECONDS]
//
// prints an HS256 development token. The key is --key, else $SIGNALR_DEV_KEY, else
// /etc/signalrd/dev.key. Every usage error is one line on stderr and exit status 2.
//
//   signalrctl send --hub HUB [--user U | --group G | --connection ID] [--exclude ID]...
//                   --target METHOD [--args JSON-ARRAY]
//   signalrctl group add|remove|check --hub HUB --group G (--connection ID | --user U)
//                   [--ttl SECONDS]
//   signalrctl group leave-all --hub HUB (--connection ID | --user U)
//   signalrctl presence --hub HUB [--user U]
//
// call the push API (docs/push-api.md) through nginx, at --url (else $SIGNALR_PUSH_URL,
// else http://127.0.0.1:8080), the way business services do: the token's audience is
// the public URL, and nginx is where the API is served. The access key is the file
// --access-key, else $SIGNALR_ACCESS_KEY_FILE, else /etc/signalrd/access.key, else the
// dev stack's conf/dev/access-dev.key. The answer's body goes to stdout; exit status 0
// for 2xx, 1 for any other answer (and for "check" of a missing membership).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "push_client.h"
#include "token_claims.h"

namespace {

const char *const usage =
    "usage: signalrctl token --sub NAME [--role ROLE] [--key FILE] [--ttl SECONDS]\n"
    "       signalrctl send --hub HUB [--user U | --group G | --connection ID]\n"
    "                       [--exclude ID]... --target METHOD [--args JSON-ARRAY]\n"
    "       signalrctl group add|remove|check|leave-all --hub HUB [--group G]\n"
    "                       (--connection ID | --user U) [--ttl SECONDS]\n"
    "       signalrctl presence --hub HUB [--user U]\n"
    "       push options: [--url URL] [--access-key FILE]\n";

int fail(const std::string &message)
{
    std::fprintf(stderr, "signalrctl: %s\n", message.c_str());
    return 2;
}

bool parse_ttl(const char *text, int64_t &ttl)
{
    char *end = nullptr;
    errno = 0;
    long long v = std::strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        return false;
    }
    ttl = v;
    return true;
}

int token_command(int argc, char **argv)
{
    signalrd::DevTokenRequest request;
    std::string key_path;

    for (int i = 2; i < argc; i++) {
        std::string opt = argv[i];
        if (opt == "--help" || opt == "-h") {
            std::fputs(usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            return fail("option " + opt + " needs a value");
        }
        const char *value = argv[++i];
        if (opt == "--sub") {
            request.subject = value;
        } else if (opt == "--role") {
            request.role = value;
        } else if (opt == "--key") {
            key_path = value;
        } else if (opt == "--ttl") {
            if (!parse_ttl(value, request.ttl)) {
                return fail("--ttl needs a number of seconds");
            }
        } else {
            return fail("unknown option " + opt);
        }
    }
    if (request.subject.empty()) {
        return fail("token needs --sub NAME");
    }
    if (key_path.empty()) {
        const char *env = std::getenv("SIGNALR_DEV_KEY");
        key_path = env && *env ? env : "/etc/signalrd/dev.key";
    }

    auto secret = signalrd::read_secret_file(key_path);
    if (!secret.is_ok()) {
        return fail(secret.status().message());
    }
    request.now = static_cast<int64_t>(std::time(nullptr));
    auto token = signalrd::sign_dev_token(request, *secret);
    if (!token.is_ok()) {
        return fail(token.status().message());
    }
    std::printf("%s\n", token->c_str());
    return 0;
}


// What the push commands take; unset options stay empty.
struct PushOptions {
    std::string url;
    std::string key_file;
    std::string hub;
    std::string user;
    std::string group;
    std::string connection;
    std::string target;
    std::string args;
    std::string ttl;
    std::vector<std::string> excluded;
};

bool file_exists(const std::string &path)
{
    struct stat st;
    return !path.empty() && ::stat(path.c_str(), &st) == 0;
}

std::string env_or(const char *name, const std::string &fallback)
{
    const char *v = std::getenv(name);
    return v && *v ? v : fallback;
}

// Reads options from argv[first...]; an error message, or "" when all were understood.
std::string parse_push_options(int argc, char **argv, int first, PushOptions &o)
{
    for (int i = first; i < argc; i++) {
        std::string opt = argv[i];
        if (i + 1 >= argc) {
            return "option " + opt + " needs a value";
        }
        std::string value = argv[++i];
        std::string *field = opt == "--url"          ? &o.url
                             : opt == "--access-key" ? &o.key_file
                             : opt == "--hub"        ? &o.hub
                             : opt == "--user"       ? &o.user
                             : opt == "--group"      ? &o.group
                             : opt == "--connection" ? &o.connection
                             : opt == "--target"     ? &o.target
                             : opt == "--args"       ? &o.args
                             : opt == "--ttl"        ? &o.ttl
                                                     : nullptr;
        if (opt == "--exclude") {
            o.excluded.push_back(value);
        } else if (field == nullptr) {
            return "unknown option " + opt;
        } else {
            *field = value;
        }
    }
    if (o.hub.empty()) {
        return "the push commands need --hub HUB";
    }
    return "";
}

// Makes the request; prints the answer. 0 for 2xx, 1 for other answers, 2 for failures.
int push_call(const PushOptions &o, const std::string &method, const std::string &path,
              const std::string &query, const std::string &body)
{
    std::string key_file = o.key_file;
    if (key_file.empty()) {
        key_file = env_or("SIGNALR_ACCESS_KEY_FILE", "/etc/signalrd/access.key");
    }
#ifdef SIGNALR_DEV_ACCESS_KEY_FILE
    if (o.key_file.empty() && !file_exists(key_file)) {
        key_file = SIGNALR_DEV_ACCESS_KEY_FILE;
    }
#endif
    auto key = signalrd::read_secret_file(key_file);
    if (!key.is_ok()) {
        return fail(key.status().message());
    }
    std::string base = o.url.empty() ? env_or("SIGNALR_PUSH_URL", "http://127.0.0.1:8080")
                                     : o.url;
    while (!base.empty() && base.back() == '/') {
        base.pop_back();
    }
    auto reply = signalrd::push_request(method, base + path, query, body, *key);
    if (!reply.is_ok()) {
        return fail(reply.status().message());
    }
    if (!reply->body.empty()) {
        std::printf("%s\n", reply->body.c_str());
    }
    std::fprintf(stderr, "%s %s: %ld\n", method.c_str(), path.c_str(), reply->status);
    return reply->status >= 200 && reply->status < 300 ? 0 : 1;
}

std::string hub_path(const PushOptions &o)
{
    return "/api/hubs/" + signalrd::encode_component(o.hub);
}

int send_command(int argc, char **argv)
{
    PushOptions o;
    std::string error = parse_push_options(argc, argv, 2, o);
    if (!error.empty()) {
        return fail(error);
    }
    if (o.target.empty()) {
        return fail("send needs --target METHOD");
    }
    auto args = signalrd::parse_json(o.args.empty() ? "[]" : o.args);
    if (!args.is_ok() || !json_is_array(args->get())) {
        return fail("--args must be a JSON array");
    }
    std::string path = hub_path(o);
    if (!o.user.empty()) {
        path += "/users/" + signalrd::encode_component(o.user);
    } else if (!o.group.empty()) {
        path += "/groups/" + signalrd::encode_component(o.group);
    } else if (!o.connection.empty()) {
        path += "/connections/" + signalrd::encode_component(o.connection);
    }
    std::string query = "api-version=2022-06-01";
    for (const std::string &id : o.excluded) {
        query += "&excluded=" + signalrd::encode_component(id);
    }
    signalrd::Json body = signalrd::Json::object();
    signalrd::json_set_string(body.get(), "target", o.target);
    json_object_set(body.get(), "arguments", args->get());
    return push_call(o, "POST", path + "/:send", query, signalrd::json_text(body.get()));
}

int group_command(int argc, char **argv)
{
    std::string verb = argc > 2 ? argv[2] : "";
    PushOptions o;
    std::string error = parse_push_options(argc, argv, 3, o);
    if (!error.empty()) {
        return fail(error);
    }
    bool by_user = !o.user.empty();
    if (by_user == !o.connection.empty()) {
        return fail("group needs one of --connection ID and --user U");
    }
    std::string who = by_user ? "/users/" + signalrd::encode_component(o.user)
                              : "/connections/" + signalrd::encode_component(o.connection);
    std::string query = "api-version=2022-06-01";
    if (verb == "leave-all") {
        return push_call(o, "DELETE", hub_path(o) + who + "/groups", query, "");
    }
    if (o.group.empty()) {
        return fail("group " + verb + " needs --group G");
    }
    std::string group = signalrd::encode_component(o.group);
    std::string path = by_user ? hub_path(o) + who + "/groups/" + group
                               : hub_path(o) + "/groups/" + group + who;
    if (!o.ttl.empty()) {
        query += "&ttl=" + signalrd::encode_component(o.ttl);
    }
    if (verb == "add" || verb == "remove") {
        return push_call(o, verb == "add" ? "PUT" : "DELETE", path, query, "");
    }
    if (verb == "check" && by_user) {
        return push_call(o, "HEAD", path, query, "");
    }
    if (verb == "check") {
        return fail("group check takes --user U (connections: signalrctl presence)");
    }
    return fail("group wants add, remove, check or leave-all");
}

int presence_command(int argc, char **argv)
{
    PushOptions o;
    std::string error = parse_push_options(argc, argv, 2, o);
    if (!error.empty()) {
        return fail(error);
    }
    std::string path = hub_path(o);
    if (!o.user.empty()) {
        path += "/users/" + signalrd::encode_component(o.user);
    }
    return push_call(o, "GET", path + "/presence", "api-version=2022-06-01", "");
}

}  // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        std::fputs(usage, stderr);
        return 2;
    }
    std::string command = argv[1];
    if (command == "--help" || command == "-h" || command == "help") {
        std::fputs(usage, stdout);
        return 0;
    }
    if (command == "token") {
        return token_command(argc, argv);
    }
    if (command == "send") {
        return send_command(argc, argv);
    }
    if (command == "group") {
        return group_command(argc, argv);
    }
    if (command == "presence") {
        return presence_command(argc, argv);
    }
    return fail("unknown command \"" + command + "\" (try: signalrctl --help)");
}
