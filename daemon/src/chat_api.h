// The REST routes served on the HTTP socket, behind nginx:
//
//   POST   /api/v1/chats                 {"prompt":{"text"}} -> 201, the id as a JSON
//                                        string, Location: /api/v1/chats/{id}
//   PUT    /api/v1/chats/{id}            {"id","prompt":{"text"}} -> 202 (reply started),
//                                        409 while a reply runs
//   GET    /api/v1/chats/{id}            {id, name, createdAt, messages}
//   GET    /api/v1/chats?name=&includeMessages=true|false
//   DELETE /api/v1/chats/{id}            204
//   DELETE /api/v1/chats/{id}/cancel     204, stops the reply
//   GET    /healthz                      200 or 503 (Redis down), JSON
//   GET    /dev/token?sub=NAME[&role=R]  text/plain HS256 token; only with dev_token_key
//
// nginx authenticates and passes the user in X-SignalR-User; /api routes without it
// answer 401. Another user's conversation is answered 404, as an absent one.

#pragma once

#include <functional>
#include <string>

#include "conversation_store.h"
#include "fragment_bus.h"
#include "http_server.h"
#include "redis_client.h"
#include "reply_runner.h"

namespace signalrd {

class ChatApi {
public:
    // Adds counters to the /healthz body.
    using HealthDetails = std::function<void(json_t *body)>;

    ChatApi(ConversationStore &store, ReplyRunner &runner, FragmentBus &bus, RedisClient &redis);

    // Enables GET /dev/token with this HS256 secret.
    void enable_dev_tokens(std::string secret) { dev_secret_ = std::move(secret); }
    void set_health_details(HealthDetails details) { health_details_ = std::move(details); }
    // What else must hold for /healthz to answer 200 (besides Redis being up).
    void set_readiness(std::function<bool()> ready) { readiness_ = std::move(ready); }

    asio::awaitable<HttpResponse> handle(const HttpRequest &request);

private:
    asio::awaitable<HttpResponse> chats(const HttpRequest &request, const std::string &user,
                                        const std::string &rest);
    asio::awaitable<HttpResponse> create(const HttpRequest &request, const std::string &user);
    asio::awaitable<HttpResponse> add_turn(const HttpRequest &request, const std::string &user,
                                           const std::string &id);
    asio::awaitable<HttpResponse> get_one(const std::string &user, const std::string &id);
    asio::awaitable<HttpResponse> list(const HttpRequest &request, const std::string &user);
    asio::awaitable<HttpResponse> remove(const std::string &user, const std::string &id);
    asio::awaitable<HttpResponse> cancel(const std::string &user, const std::string &id);
    HttpResponse health() const;
    HttpResponse dev_token(const HttpRequest &request) const;

    ConversationStore &store_;
    ReplyRunner &runner_;
    FragmentBus &bus_;
    RedisClient &redis_;
    std::string dev_secret_;
    HealthDetails health_details_;
    std::function<bool()> readiness_;
};

}  // namespace signalrd
