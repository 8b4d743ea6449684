#include "chat_api.h"

#include <algorithm>
#include <cctype>
#include <ctime>

#include "token_claims.h"
#include "uuid.h"

namespace signalrd {

namespace {

const std::string chats_prefix = "/api/v1/chats";

HttpResponse method_not_allowed(const char *allow)
{
    HttpResponse res = HttpResponse::problem(405, "method not allowed here");
    res.headers.emplace_back("Allow", allow);
    return res;
}

HttpResponse not_found()
{
    return HttpResponse::problem(404, "conversation not found");
}

HttpResponse store_failure(const Status &s)
{
    if (s.code() == StatusCode::not_found) {
        return not_found();
    }
    if (s.code() == StatusCode::conflict) {
        return HttpResponse::problem(409, "a reply is already being generated");
    }
    if (s.code() != StatusCode::unavailable) {
        log_error("conversation store: %s", s.message().c_str());
    }
    return HttpResponse::problem(503, "the conversation store is unavailable");
}

// A 400 naming the field at fault, in the shape of ASP.NET Core's validation problems.
HttpResponse field_error(const char *field, const char *message)
{
    Json extra = Json::object();
    Json errors = Json::object();
    Json list = Json::array();

    json_array_append_new(list.get(), json_string(message));
    json_object_set(errors.get(), field, list.get());
    json_object_set(extra.get(), "errors", errors.get());
    return HttpResponse::problem(400, std::string(field) + ": " + message, extra.get());
}

bool blank(const std::string &s)
{
    return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

// The prompt text of a request body, or the 400 to answer.
Result<std::string> prompt_text(const json_t *body)
{
    json_t *prompt = json_object_get(body, "prompt");
    json_t *text = json_object_get(prompt, "text");

    if (!json_is_string(text)) {
        return Status::invalid_argument("prompt.text");
    }
    std::string s(json_string_value(text), json_string_length(text));
    if (blank(s)) {
        return Status::invalid_argument("prompt.text");
    }
    return s;
}

std::string lowercase(std::string s)
{
    for (char &c : s) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return s;
}

}  // namespace

ChatApi::ChatApi(ConversationStore &store, ReplyRunner &runner, FragmentBus &bus,
                 RedisClient &redis)
    : store_(store), runner_(runner), bus_(bus), redis_(redis)
{
}

asio::awaitable<HttpResponse> ChatApi::handle(const HttpRequest &request)
{
    const std::string &path = request.path;

    if (path == "/healthz") {
        co_return request.method == "GET" ? health() : method_not_allowed("GET");
    }
    if (path == "/dev/token" && !dev_secret_.empty()) {
        co_return request.method == "GET" ? dev_token(request) : method_not_allowed("GET");
    }
    if (path.rfind(chats_prefix, 0) != 0 ||
        (path.size() > chats_prefix.size() && path[chats_prefix.size()] != '/')) {
        co_return HttpResponse::problem(404, "no such resource");
    }

    const std::string *user = request.header("x-signalr-user");
    if (user == nullptr || user->empty()) {
        HttpResponse res = HttpResponse::problem(401, "authentication required");
        res.headers.emplace_back("WWW-Authenticate", "Bearer");
        co_return res;
    }
    co_return co_await chats(request, *user, path.substr(chats_prefix.size()));
}

asio::awaitable<HttpResponse> ChatApi::chats(const HttpRequest &request, const std::string &user,
                                             const std::string &rest)
{
    const std::string &m = request.method;

    if (rest.empty() || rest == "/") {
        if (m == "GET") {
            co_return co_await list(request, user);
        }
        if (m == "POST") {
            co_return co_await create(request, user);
        }
        co_return method_not_allowed("GET, POST");
    }

    std::string tail = rest.substr(1);
    bool is_cancel = false;
    size_t slash = tail.find('/');
    if (slash != std::string::npos) {
        if (tail.substr(slash) != "/cancel") {
            co_return HttpResponse::problem(404, "no such resource");
        }
        is_cancel = true;
        tail = tail.substr(0, slash);
    }

    auto id = normalize_uuid(tail);
    if (is_cancel) {
        if (m != "DELETE") {
            co_return method_not_allowed("DELETE");
        }
        if (!id) {
            co_return not_found();
        }
        co_return co_await cancel(user, *id);
    }
    if (m != "GET" && m != "PUT" && m != "DELETE") {
        co_return method_not_allowed("GET, PUT, DELETE");
    }
    if (!id) {
        co_return not_found();
    }
    if (m == "GET") {
        co_return co_await get_one(user, *id);
    }
    if (m == "PUT") {
        co_return co_await add_turn(request, user, *id);
    }
    co_return co_await remove(user, *id);
}

asio::awaitable<HttpResponse> ChatApi::create(const HttpRequest &request, const std::string &user)
{
    Result<Json> body = parse_json(request.body);
    if (!body.is_ok() || !json_is_object(body->get())) {
        co_return HttpResponse::problem(400, "the body must be a JSON object");
    }
    Result<std::string> text = prompt_text(body->get());
    if (!text.is_ok()) {
        co_return field_error("prompt.text", "The prompt text must not be empty.");
    }

    Result<NewTurn> turn = co_await store_.create(user, *text);
    if (!turn.is_ok()) {
        co_return store_failure(turn.status());
    }
    runner_.start(*turn);

    Json id(json_stringn(turn->conversation_id.data(), turn->conversation_id.size()));
    HttpResponse res = HttpResponse::json(201, id.get());
    res.headers.emplace_back("Location", chats_prefix + "/" + turn->conversation_id);
    co_return res;
}

asio::awaitable<HttpResponse> ChatApi::add_turn(const HttpRequest &request,
                                                const std::string &user, const std::string &id)
{
    Result<Json> body = parse_json(request.body);
    if (!body.is_ok() || !json_is_object(body->get())) {
        co_return HttpResponse::problem(400, "the body must be a JSON object");
    }
    json_t *body_id = json_object_get(body->get(), "id");
    if (body_id != nullptr && !json_is_null(body_id)) {
        auto given = json_is_string(body_id) ? normalize_uuid(json_string_value(body_id))
                                             : std::nullopt;
        if (!given || *given != id) {
            co_return field_error("id", "The id must match the conversation in the path.");
        }
    }
    Result<std::string> text = prompt_text(body->get());
    if (!text.is_ok()) {
        co_return field_error("prompt.text", "The prompt text must not be empty.");
    }
    // ownership first: a busy conversation of someone else must look absent, not busy
    Result<ConversationSnapshot> snapshot = co_await store_.load(id);
    if (!snapshot.is_ok()) {
        co_return store_failure(snapshot.status());
    }
    if (!snapshot->exists || snapshot->owner != user) {
        co_return not_found();
    }
    // a reply that showed its final is over: its write reaches Redis before this turn's
    if (runner_.running(id) && !runner_.ending(id)) {
        co_return HttpResponse::problem(409, "a reply is already being generated");
    }

    // a reply left unfinished by a dead instance is ended first, so turns stay in order
    Status recovered = co_await runner_.recover(*snapshot);
    if (!recovered.is_ok()) {
        co_return store_failure(recovered);
    }

    Result<NewTurn> turn = co_await store_.add_turn(id, user, *text);
    if (!turn.is_ok()) {
        co_return store_failure(turn.status());
    }
    runner_.start(*turn);

    HttpResponse res = HttpResponse::empty(202);
    res.headers.emplace_back("Location", chats_prefix + "/" + id);
    co_return res;
}

asio::awaitable<HttpResponse> ChatApi::get_one(const std::string &user, const std::string &id)
{
    Result<ConversationSnapshot> s = co_await store_.load(id);
    if (!s.is_ok()) {
        co_return store_failure(s.status());
    }
    if (!s->exists || s->owner != user) {
        co_return not_found();
    }
    Json body = conversation_to_api(*s, true);
    co_return HttpResponse::json(200, body.get());
}

asio::awaitable<HttpResponse> ChatApi::list(const HttpRequest &request, const std::string &user)
{
    std::string name = lowercase(request.query_param("name").value_or(""));
    std::string include = lowercase(request.query_param("includeMessages").value_or("false"));

    if (include != "true" && include != "false") {
        co_return field_error("includeMessages", "Use true or false.");
    }
    bool with_messages = include == "true";

    Result<std::vector<ConversationSnapshot>> all = co_await store_.list(user, with_messages);
    if (!all.is_ok()) {
        co_return store_failure(all.status());
    }

    Json body = Json::array();
    for (const ConversationSnapshot &s : *all) {
        if (!name.empty() && lowercase(s.name).find(name) == std::string::npos) {
            continue;
        }
        json_array_append_new(body.get(), conversation_to_api(s, with_messages).release());
    }
    co_return HttpResponse::json(200, body.get());
}

asio::awaitable<HttpResponse> ChatApi::remove(const std::string &user, const std::string &id)
{
    Status s = co_await store_.remove(id, user);
    if (!s.is_ok()) {
        co_return store_failure(s);
    }
    runner_.cancel(id);
    bus_.publish(id, {ConversationEvent::Kind::deleted, {}});
    co_return HttpResponse::empty(204);
}

asio::awaitable<HttpResponse> ChatApi::cancel(const std::string &user, const std::string &id)
{
    Result<ConversationSnapshot> s = co_await store_.load(id);
    if (!s.is_ok()) {
        co_return store_failure(s.status());
    }
    if (!s->exists || s->owner != user) {
        co_return not_found();
    }
    if (!runner_.cancel(id) && s->reply_running) {
        // the instance named in the lease hears it on its channel (docs/backplane.md)
        Result<bool> told = co_await store_.request_cancel(id);
        if (!told.is_ok()) {
            co_return store_failure(told.status());
        }
    }
    co_return HttpResponse::empty(204);
}

HttpResponse ChatApi::health() const
{
    bool redis_up = redis_.connected();
    bool up = redis_up && (!readiness_ || readiness_());
    Json body = Json::object();

    json_set_string(body.get(), "status", up ? "ok" : "degraded");
    json_set_string(body.get(), "redis", redis_up ? "up" : "down");
    json_set_string(body.get(), "version", SIGNALRD_VERSION);
    if (health_details_) {
        health_details_(body.get());
    }
    return HttpResponse::json(up ? 200 : 503, body.get());
}

HttpResponse ChatApi::dev_token(const HttpRequest &request) const
{
    DevTokenRequest r;

    r.subject = request.query_param("sub").value_or("");
    r.role = request.query_param("role").value_or("");
    r.now = static_cast<int64_t>(std::time(nullptr));

    Result<std::string> token = sign_dev_token(r, dev_secret_);
    if (!token.is_ok()) {
        if (token.status().code() == StatusCode::invalid_argument) {
            return HttpResponse::problem(400, token.status().message());
        }
        log_error("GET /dev/token: %s", token.status().message().c_str());
        return HttpResponse::problem(500, "the token could not be signed");
    }
    return HttpResponse::text(200, *token);
}

}  // namespace signalrd
