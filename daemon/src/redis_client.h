// An asynchronous Redis client on the daemon's Asio loop, over hiredis's async API.
//
// Design note: hiredis ships adapters for libev, libevent, libuv and others, but not
// for Asio, so RedisClient attaches its own: the context's ev hooks (addRead, delRead,
// addWrite, delWrite, cleanup) map onto async_wait on an asio::posix::stream_descriptor
// wrapping hiredis's socket, which hiredis keeps owning (the descriptor is released,
// never closed, by us). Replies are copied into RedisValue trees and handed to the
// waiting coroutine through asio::post, so no user code runs inside a hiredis callback
// and no exception can cross one.
//
// The client reconnects on its own (backoff 100 ms doubling to 5 s) and pings every
// 2 s; a ping unanswered for 3 s drops the connection, which also fails every
// command still waiting, so no caller waits forever on a stalled server. While it is
// down, commands fail at once with StatusCode::unavailable.
//
// A client may instead be a subscriber (enable_subscriber() before start()): it then only
// subscribes and unsubscribes, and hands every pub/sub message to a handler on the loop.
// A connection in that mode cannot answer PING (hiredis 0.14 drops the reply), so its
// keep-alive re-subscribes a probe channel and waits for that confirmation instead. The
// channels are not re-subscribed by the client after a reconnect: the state handler
// tells its owner, who knows which channels it still wants.

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "asio_util.h"
#include "status.h"

struct redisAsyncContext;

namespace signalrd {

// A reply, owned. type is one of hiredis's REDIS_REPLY_* values.
struct RedisValue {
    int type = 4;   // REDIS_REPLY_NIL
    long long integer = 0;
    std::string str;                 // for strings, statuses and errors
    std::vector<RedisValue> elements;

    bool is_nil() const;
    bool is_string() const;
    bool is_array() const;
    bool is_integer() const;
    bool is_error() const;
};

// Where the server is: redis://[:password@]host[:port][/db] or unix:///path.
struct RedisEndpoint {
    std::string host;     // empty for a Unix socket
    int port = 6379;
    std::string unix_path;
    std::string password; // never logged
    int db = 0;

    // host:port or the path, for logs.
    std::string describe() const;
};

Result<RedisEndpoint> parse_redis_url(const std::string &url);

using RedisArgs = std::vector<std::string>;

// A Lua script that is called by its SHA1 (EVALSHA), so that Redis neither receives nor
// hashes its text on every call: sent whole with EVAL, the text of a backlog script cost
// more than the commands it runs.
class RedisScript {
public:
    explicit RedisScript(std::string body);

    const std::string &body() const { return body_; }
    const std::string &sha1() const { return sha1_; }   // lowercase hex, as Redis names it

private:
    std::string body_;
    std::string sha1_;
};

// Appends one RESP bulk string holding the parts one after the other, for eval_resp().
void append_resp_bulk_parts(std::string &out, std::initializer_list<std::string_view> parts);

// A pub/sub message: the channel and the payload.
using RedisMessageHandler = std::function<void(const std::string &, const std::string &)>;
// Redis confirmed a SUBSCRIBE of this channel.
using RedisSubscribedHandler = std::function<void(const std::string &)>;
// The connection came up (true: AUTH and SELECT are queued first) or went down.
using RedisStateHandler = std::function<void(bool up)>;

class RedisClient {
public:
    RedisClient(asio::any_io_executor executor, RedisEndpoint endpoint);
    ~RedisClient();

    RedisClient(const RedisClient &) = delete;
    RedisClient &operator=(const RedisClient &) = delete;

    // Starts connecting; keeps trying until stop().
    void start();
    // Disconnects; waiting commands fail with unavailable.
    void stop();

    bool connected() const { return ready_; }

    asio::any_io_executor executor() const { return executor_; }

    // Called on the loop, never inside a hiredis callback. Set before start().
    void set_state_handler(RedisStateHandler handler) { state_handler_ = std::move(handler); }

    // Loads script into Redis first thing on every connection (SCRIPT LOAD), so that
    // eval() of it does not meet NOSCRIPT and send its text after commands queued
    // since: commands then run in the order they were given, which callers rely on
    // (ReplyRunner's final fragment). Only a SCRIPT FLUSH in between makes eval() fall
    // back. script must outlive the client.
    void preload(const RedisScript &script);

    // Turns this client into a subscriber. probe_channel is re-subscribed every 2 s as the
    // keep-alive; it should be a channel nobody publishes much on. Before start().
    void enable_subscriber(std::string probe_channel, RedisMessageHandler on_message,
                           RedisSubscribedHandler on_subscribed);

    // Subscriber mode: queues SUBSCRIBE or UNSUBSCRIBE of channels; false (nothing sent)
    // while disconnected, in which case the owner subscribes again on the next "up".
    bool subscribe(const std::vector<std::string> &channels);
    bool unsubscribe(const std::vector<std::string> &channels);

    // Sends one command. An error reply from Redis becomes StatusCode::internal with
    // Redis's text; a lost or absent connection, StatusCode::unavailable.
    asio::awaitable<Result<RedisValue>> command(RedisArgs args);

    // Runs script: args are the key count, the keys, then the arguments, as EVAL takes
    // them. It is called by its SHA1; when Redis does not know it (it restarted, failed
    // over, or ran SCRIPT FLUSH), it answers NOSCRIPT without running anything, and the
    // call is sent once more as EVAL, which runs the script and caches it for the calls
    // after. Callers see one call either way.
    asio::awaitable<Result<RedisValue>> eval(const RedisScript &script, RedisArgs args);

    // eval() with the arguments after the key count already in RESP (count bulk strings,
    // written by the caller into args): for a caller that writes many arguments at once
    // without a string for each.
    asio::awaitable<Result<RedisValue>> eval_resp(const RedisScript &script, size_t key_count,
                                                  size_t count, const std::string &args);

    // Sends MULTI, commands and EXEC back to back, so that no command of another
    // coroutine can fall inside the transaction. Returns EXEC's array of replies
    // (an element may be an error reply).
    asio::awaitable<Result<RedisValue>> transaction(std::vector<RedisArgs> commands);

    struct PendingCall;
    struct Adapter;
    struct Subscriber;

private:
    void connect();
    void schedule_reconnect();
    void drop_connection(const char *why);
    asio::awaitable<void> keep_alive();
    void submit(const RedisArgs &args, PendingCall *call);
    void submit(std::initializer_list<std::string_view> head, const RedisArgs &args,
                PendingCall *call);
    asio::awaitable<Result<RedisValue>> send(std::string_view verb, std::string_view first,
                                             const RedisArgs &args);
    asio::awaitable<Result<RedisValue>> send_resp(std::string_view verb, const RedisScript &script,
                                                  size_t key_count, size_t count,
                                                  const std::string &args);
    void send_script_load(const RedisScript &script);
    bool submit_subscription(const char *verb, const std::vector<std::string> &channels);
    void notify_state(bool up);
    static void on_connect(const redisAsyncContext *ac, int status);
    static void on_disconnect(const redisAsyncContext *ac, int status);

    asio::any_io_executor executor_;
    RedisEndpoint endpoint_;
    redisAsyncContext *context_ = nullptr;
    std::shared_ptr<Adapter> adapter_;
    asio::steady_timer reconnect_timer_;
    asio::steady_timer connect_timer_;
    std::chrono::milliseconds backoff_{100};
    bool ready_ = false;
    std::vector<const RedisScript *> preloaded_;
    bool stopped_ = true;
    bool was_up_ = false;
    bool reported_down_ = false;
    std::shared_ptr<bool> alive_;   // tells the keep-alive loop the client still exists
    RedisStateHandler state_handler_;
    std::unique_ptr<Subscriber> subscriber_;   // set in subscriber mode
    std::string wire_;                         // the command being sent, in RESP
};

}  // namespace signalrd
