// signalrctl: the operator's and developer's companion to signalrd.
//
//   signalrctl token --sub NAME [--role ROLE] [--key FILE] [--ttl SECONDS]
//
// prints an HS256 development token. The key is --key, else $SIGNALR_DEV_KEY, else
// /etc/signalrd/dev.key. Every error is one line on stderr and exit status 2.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "token_claims.h"

namespace {

const char *const usage =
    "usage: signalrctl token --sub NAME [--role ROLE] [--key FILE] [--ttl SECONDS]\n";

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
    return fail("unknown command \"" + command + "\" (try: signalrctl token --sub NAME)");
}
