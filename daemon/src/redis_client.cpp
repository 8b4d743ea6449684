#include "redis_client.h"

#include <charconv>
#include <cstdlib>
#include <cstring>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

namespace signalrd {

bool RedisValue::is_nil() const { return type == REDIS_REPLY_NIL; }
bool RedisValue::is_string() const { return type == REDIS_REPLY_STRING; }
bool RedisValue::is_array() const { return type == REDIS_REPLY_ARRAY; }
bool RedisValue::is_integer() const { return type == REDIS_REPLY_INTEGER; }
bool RedisValue::is_error() const { return type == REDIS_REPLY_ERROR; }

std::string RedisEndpoint::describe() const
{
    if (!unix_path.empty()) {
        return unix_path;
    }
    return host + ":" + std::to_string(port);
}

namespace {

// "*<n>\r\n" or "$<n>\r\n": an array of n elements or a bulk string of n bytes.
void append_resp_header(std::string &out, char kind, size_t n)
{
    char digits[24];
    char *end = std::to_chars(digits, digits + sizeof(digits), n).ptr;

    out.push_back(kind);
    out.append(digits, end);
    out.append("\r\n", 2);
}

void append_resp_bulk(std::string &out, std::string_view value)
{
    append_resp_header(out, '$', value.size());
    out.append(value);
    out.append("\r\n", 2);
}

// Redis names a script by the SHA1 of its text, in lowercase hex.
std::string sha1_hex(const std::string &text)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    std::string hex;

    if (EVP_Digest(text.data(), text.size(), digest, &digest_len, EVP_sha1(), nullptr) != 1) {
        // an empty name is never a cached script: every call then falls back to EVAL
        return hex;
    }
    for (unsigned int i = 0; i < digest_len; i++) {
        hex += digits[digest[i] >> 4];
        hex += digits[digest[i] & 0x0f];
    }
    return hex;
}

}  // namespace

void append_resp_bulk_parts(std::string &out, std::initializer_list<std::string_view> parts)
{
    size_t n = 0;

    for (std::string_view p : parts) {
        n += p.size();
    }
    append_resp_header(out, '$', n);
    for (std::string_view p : parts) {
        out.append(p);
    }
    out.append("\r\n", 2);
}

RedisScript::RedisScript(std::string body) : body_(std::move(body)), sha1_(sha1_hex(body_)) {}

Result<RedisEndpoint> parse_redis_url(const std::string &url)
{
    RedisEndpoint ep;
    const std::string unix_scheme = "unix://";
    const std::string redis_scheme = "redis://";

    if (url.rfind(unix_scheme, 0) == 0) {
        ep.unix_path = url.substr(unix_scheme.size());
        if (ep.unix_path.empty() || ep.unix_path.front() != '/') {
            return Status::invalid_argument("redis_url: unix:// needs an absolute path");
        }
        return ep;
    }
    if (url.rfind(redis_scheme, 0) != 0) {
        return Status::invalid_argument("redis_url must start with redis:// or unix://");
    }

    std::string rest = url.substr(redis_scheme.size());
    size_t at = rest.rfind('@');
    if (at != std::string::npos) {
        std::string userinfo = rest.substr(0, at);
        size_t colon = userinfo.find(':');
        ep.password = colon == std::string::npos ? userinfo : userinfo.substr(colon + 1);
        rest = rest.substr(at + 1);
    }

    size_t slash = rest.find('/');
    if (slash != std::string::npos) {
        std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) {
            char *end = nullptr;
            long n = std::strtol(db.c_str(), &end, 10);
            if (*end != '\0' || n < 0 || n > 1000) {
                return Status::invalid_argument("redis_url: bad database number");
            }
            ep.db = static_cast<int>(n);
        }
    }

    size_t colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find(']') == std::string::npos) {
        char *end = nullptr;
        long port = std::strtol(rest.c_str() + colon + 1, &end, 10);
        if (*end != '\0' || port <= 0 || port > 65535) {
            return Status::invalid_argument("redis_url: bad port");
        }
        ep.port = static_cast<int>(port);
        rest = rest.substr(0, colon);
    }
    if (rest.empty()) {
        return Status::invalid_argument("redis_url: no host");
    }
    ep.host = rest;
    return ep;
}

namespace {

RedisValue copy_reply(const redisReply *r)
{
    RedisValue v;

    v.type = r->type;
    v.integer = r->integer;
    if (r->str != nullptr) {
        v.str.assign(r->str, r->len);
    }
    for (size_t i = 0; i < r->elements; i++) {
        v.elements.push_back(copy_reply(r->element[i]));
    }
    return v;
}

}  // namespace

// A command waiting for its reply; completes exactly once, then is deleted.
struct RedisClient::PendingCall {
    virtual ~PendingCall() = default;
    virtual void complete(Result<RedisValue> result) = 0;
};

namespace {

template <typename Handler>
struct CoroutineCall final : RedisClient::PendingCall {
    explicit CoroutineCall(Handler h) : handler(std::move(h)) {}

    void complete(Result<RedisValue> result) override
    {
        auto ex = asio::get_associated_executor(handler);
        asio::post(ex, [h = std::move(handler), r = std::move(result)]() mutable {
            std::move(h)(std::move(r));
        });
    }

    Handler handler;
};

void reply_callback(redisAsyncContext *, void *reply, void *privdata)
{
    auto *call = static_cast<RedisClient::PendingCall *>(privdata);
    auto *r = static_cast<redisReply *>(reply);

    if (r == nullptr) {
        call->complete(Status::unavailable("redis connection lost"));
    } else if (r->type == REDIS_REPLY_ERROR) {
        call->complete(Status::internal("redis: " + std::string(r->str, r->len)));
    } else {
        call->complete(copy_reply(r));
    }
    delete call;
}

}  // namespace

// The Asio side of one hiredis context (see the design note in the header).
struct RedisClient::Adapter : std::enable_shared_from_this<RedisClient::Adapter> {
    Adapter(asio::any_io_executor ex, redisAsyncContext *ac) : descriptor(ex, ac->c.fd), context(ac)
    {
    }

    void arm(bool reading)
    {
        bool &pending = reading ? read_pending : write_pending;
        if (pending || dead) {
            return;
        }
        pending = true;
        auto what = reading ? asio::posix::descriptor_base::wait_read
                            : asio::posix::descriptor_base::wait_write;
        descriptor.async_wait(what, [self = shared_from_this(), reading](asio::error_code ec) {
            self->on_ready(reading, ec);
        });
    }

    void on_ready(bool reading, asio::error_code ec)
    {
        (reading ? read_pending : write_pending) = false;
        if (dead || ec) {
            return;
        }
        if (reading && want_read) {
            redisAsyncHandleRead(context);
        } else if (!reading && want_write) {
            redisAsyncHandleWrite(context);
        }
        // the context may be gone now: cleanup() then set dead
        if (!dead && (reading ? want_read : want_write)) {
            arm(reading);
        }
    }

    static void add_read(void *p) { set(p, true, true); }
    static void del_read(void *p) { set(p, true, false); }
    static void add_write(void *p) { set(p, false, true); }
    static void del_write(void *p) { set(p, false, false); }

    static void set(void *p, bool reading, bool on)
    {
        auto *self = static_cast<Adapter *>(p);
        (reading ? self->want_read : self->want_write) = on;
        if (on) {
            self->arm(reading);
        }
    }

    static void cleanup(void *p)
    {
        auto *self = static_cast<Adapter *>(p);
        self->dead = true;
        self->want_read = false;
        self->want_write = false;
        // hiredis closes the socket itself; release() only cancels our waits
        self->descriptor.release();
    }

    asio::posix::stream_descriptor descriptor;
    redisAsyncContext *context;
    bool want_read = false;
    bool want_write = false;
    bool read_pending = false;
    bool write_pending = false;
    bool dead = false;
};

// What subscriber mode needs inside hiredis's callbacks. hiredis keeps one callback per
// channel for as long as the channel is subscribed and calls it for every message, so its
// privdata is this long-lived object, never a per-call one.
struct RedisClient::Subscriber {
    asio::any_io_executor executor;
    std::string probe_channel;
    RedisMessageHandler on_message;
    RedisSubscribedHandler on_subscribed;
    std::shared_ptr<bool> alive;          // the client's; checked before a posted call
    std::shared_ptr<bool> probe_answered; // the keep-alive's current probe
};

namespace {

void subscription_callback(redisAsyncContext *, void *reply, void *privdata)
{
    auto *sub = static_cast<RedisClient::Subscriber *>(privdata);
    auto *r = static_cast<redisReply *>(reply);

    // a null reply: the context is being freed; the owner hears of it through "down"
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        return;
    }
    std::string_view kind(r->element[0]->str, r->element[0]->len);
    std::string channel(r->element[1]->str, r->element[1]->len);
    std::shared_ptr<bool> alive = sub->alive;

    // moved into the posted call, not copied: a streamed fragment comes this way once for
    // every instance following its conversation, the one that wrote it included
    if (kind == "message" && r->element[2]->type == REDIS_REPLY_STRING) {
        std::string payload(r->element[2]->str, r->element[2]->len);
        asio::post(sub->executor, [sub, alive = std::move(alive), channel = std::move(channel),
                                   payload = std::move(payload)] {
            if (alive && *alive) {
                sub->on_message(channel, payload);
            }
        });
    } else if (kind == "subscribe") {
        if (channel == sub->probe_channel && sub->probe_answered) {
            *sub->probe_answered = true;
        }
        asio::post(sub->executor, [sub, alive, channel] {
            if (alive && *alive) {
                sub->on_subscribed(channel);
            }
        });
    }
}

}  // namespace

RedisClient::RedisClient(asio::any_io_executor executor, RedisEndpoint endpoint)
    : executor_(executor),
      endpoint_(std::move(endpoint)),
      reconnect_timer_(executor),
      connect_timer_(executor)
{
}

RedisClient::~RedisClient()
{
    stop();
}

void RedisClient::enable_subscriber(std::string probe_channel, RedisMessageHandler on_message,
                                    RedisSubscribedHandler on_subscribed)
{
    subscriber_ = std::make_unique<Subscriber>();
    subscriber_->executor = executor_;
    subscriber_->probe_channel = std::move(probe_channel);
    subscriber_->on_message = std::move(on_message);
    subscriber_->on_subscribed = std::move(on_subscribed);
}

void RedisClient::start()
{
    if (!stopped_) {
        return;
    }
    stopped_ = false;
    alive_ = std::make_shared<bool>(true);
    if (subscriber_) {
        subscriber_->alive = alive_;
    }
    connect();
    spawn_detached(executor_, keep_alive(), "redis keep-alive");
}

void RedisClient::stop()
{
    stopped_ = true;
    if (alive_) {
        *alive_ = false;
        alive_.reset();
    }
    reconnect_timer_.cancel();
    connect_timer_.cancel();
    drop_connection(nullptr);
}

void RedisClient::connect()
{
    redisAsyncContext *ac = endpoint_.unix_path.empty()
                                ? redisAsyncConnect(endpoint_.host.c_str(), endpoint_.port)
                                : redisAsyncConnectUnix(endpoint_.unix_path.c_str());
    if (ac == nullptr) {
        log_error("redisAsyncConnect() failed: out of memory");
        schedule_reconnect();
        return;
    }
    if (ac->err) {
        if (!reported_down_) {
            log_warn("connect() to redis at %s failed: %s", endpoint_.describe().c_str(),
                     ac->errstr);
            reported_down_ = true;
        }
        redisAsyncFree(ac);
        schedule_reconnect();
        return;
    }

    context_ = ac;
    ac->data = this;
    adapter_ = std::make_shared<Adapter>(executor_, ac);
    ac->ev.data = adapter_.get();
    ac->ev.addRead = Adapter::add_read;
    ac->ev.delRead = Adapter::del_read;
    ac->ev.addWrite = Adapter::add_write;
    ac->ev.delWrite = Adapter::del_write;
    ac->ev.cleanup = Adapter::cleanup;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    // setting the connect callback arms the first write event, which completes connect
    redisAsyncSetConnectCallback(ac, on_connect);

    connect_timer_.expires_after(std::chrono::seconds(3));
    connect_timer_.async_wait([this, ac](asio::error_code ec) {
        if (!ec && context_ == ac && !ready_) {
            drop_connection("connect timed out");
        }
    });
}

void RedisClient::on_connect(const redisAsyncContext *ac, int status)
{
    auto *self = static_cast<RedisClient *>(ac->data);

    self->connect_timer_.cancel();
    if (status != REDIS_OK) {
        if (!self->reported_down_) {
            log_warn("connect() to redis at %s failed: %s", self->endpoint_.describe().c_str(),
                     ac->errstr);
            self->reported_down_ = true;
        }
        // hiredis frees the context after this callback returns
        self->context_ = nullptr;
        self->schedule_reconnect();
        return;
    }

    auto *mutable_ac = const_cast<redisAsyncContext *>(ac);
    if (!self->endpoint_.password.empty()) {
        const char *argv[] = {"AUTH", self->endpoint_.password.c_str()};
        size_t lens[] = {4, self->endpoint_.password.size()};
        redisAsyncCommandArgv(mutable_ac, nullptr, nullptr, 2, argv, lens);
    }
    if (self->endpoint_.db != 0) {
        std::string db = std::to_string(self->endpoint_.db);
        const char *argv[] = {"SELECT", db.c_str()};
        size_t lens[] = {6, db.size()};
        redisAsyncCommandArgv(mutable_ac, nullptr, nullptr, 2, argv, lens);
    }
    for (const RedisScript *script : self->preloaded_) {
        self->send_script_load(*script);
    }

    self->ready_ = true;
    self->backoff_ = std::chrono::milliseconds(100);
    self->reported_down_ = false;
    log_info("connected to redis at %s%s", self->endpoint_.describe().c_str(),
             self->subscriber_ ? " for pub/sub" : "");
    self->was_up_ = true;
    self->notify_state(true);
}

void RedisClient::preload(const RedisScript &script)
{
    preloaded_.push_back(&script);
    if (ready_) {
        send_script_load(script);
    }
}

void RedisClient::send_script_load(const RedisScript &script)
{
    const char *argv[] = {"SCRIPT", "LOAD", script.body().c_str()};
    size_t lens[] = {6, 4, script.body().size()};

    // the answer is the SHA1 we know already; a failure shows at the first eval()
    redisAsyncCommandArgv(context_, nullptr, nullptr, 3, argv, lens);
}

void RedisClient::notify_state(bool up)
{
    std::shared_ptr<bool> alive = alive_;

    if (!state_handler_ || !alive) {
        return;
    }
    asio::post(executor_, [this, alive, up] {
        if (*alive && state_handler_) {
            state_handler_(up);
        }
    });
}

void RedisClient::on_disconnect(const redisAsyncContext *ac, int status)
{
    auto *self = static_cast<RedisClient *>(ac->data);

    if (self->context_ == ac) {
        self->context_ = nullptr;
    }
    if (self->ready_) {
        self->ready_ = false;
        if (!self->stopped_) {
            log_warn("redis connection to %s lost%s%s", self->endpoint_.describe().c_str(),
                     status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
            self->reported_down_ = true;
        }
        self->notify_state(false);
    }
    self->schedule_reconnect();
}

void RedisClient::drop_connection(const char *why)
{
    redisAsyncContext *ac = context_;

    if (ac == nullptr) {
        return;
    }
    if (why != nullptr && !reported_down_) {
        log_warn("redis at %s: %s, reconnecting", endpoint_.describe().c_str(), why);
        reported_down_ = true;
    }
    bool was_ready = ready_;
    context_ = nullptr;
    ready_ = false;
    // fails every waiting command with a null reply; on_disconnect runs if it was up
    redisAsyncFree(ac);
    if (was_ready) {
        notify_state(false);
    }
    if (!was_ready) {
        schedule_reconnect();
    }
}

void RedisClient::schedule_reconnect()
{
    if (stopped_) {
        return;
    }
    reconnect_timer_.expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(5000));
    reconnect_timer_.async_wait([this](asio::error_code ec) {
        if (!ec && !stopped_ && context_ == nullptr) {
            connect();
        }
    });
}

namespace {

// A ping whose answer only proves the server is alive.
struct PingCall final : RedisClient::PendingCall {
    explicit PingCall(std::shared_ptr<bool> answered) : answered_(std::move(answered)) {}
    void complete(Result<RedisValue> result) override { *answered_ = result.is_ok(); }
    std::shared_ptr<bool> answered_;
};

}  // namespace

asio::awaitable<void> RedisClient::keep_alive()
{
    std::shared_ptr<bool> alive = alive_;
    asio::steady_timer timer(executor_);

    while (*alive) {
        auto answered = std::make_shared<bool>(false);
        redisAsyncContext *pinged = nullptr;

        if (ready_ && context_ != nullptr) {
            pinged = context_;
            if (subscriber_) {
                subscriber_->probe_answered = answered;
                submit_subscription("SUBSCRIBE", {subscriber_->probe_channel});
            } else {
                submit({"PING"}, new PingCall(answered));
            }
        }

        timer.expires_after(std::chrono::seconds(3));
        co_await timer.async_wait(use_nothrow);
        if (!*alive) {
            break;
        }
        if (pinged != nullptr && pinged == context_ && !*answered) {
            drop_connection("no answer to PING within 3 s");
        }
    }
}

void RedisClient::submit(const RedisArgs &args, PendingCall *call)
{
    submit({}, args, call);
}

// Design note: the command is written in RESP here, into a buffer kept between calls, and
// handed to hiredis formatted (hiredis copies it into its output buffer at once).
// redisAsyncCommandArgv would build it with sdscatfmt in a fresh string each call, which
// was a sixteenth of the daemon's time a streamed fragment, and eval() would have to put
// its two leading arguments in front of the caller's vector.
void RedisClient::submit(std::initializer_list<std::string_view> head, const RedisArgs &args,
                         PendingCall *call)
{
    std::string &out = wire_;

    out.clear();
    append_resp_header(out, '*', head.size() + args.size());
    for (std::string_view a : head) {
        append_resp_bulk(out, a);
    }
    for (const std::string &a : args) {
        append_resp_bulk(out, a);
    }
    if (context_ == nullptr || !ready_ ||
        redisAsyncFormattedCommand(context_, call ? reply_callback : nullptr, call, out.data(),
                                   out.size()) != REDIS_OK) {
        if (call != nullptr) {
            call->complete(Status::unavailable("redis is not connected"));
            delete call;
        }
    }
}

bool RedisClient::submit_subscription(const char *verb, const std::vector<std::string> &channels)
{
    std::vector<const char *> argv = {verb};
    std::vector<size_t> lens = {std::strlen(verb)};

    if (!subscriber_ || context_ == nullptr || !ready_) {
        return false;
    }
    if (channels.empty()) {
        return true;
    }
    for (const std::string &c : channels) {
        argv.push_back(c.data());
        lens.push_back(c.size());
    }
    return redisAsyncCommandArgv(context_, subscription_callback, subscriber_.get(),
                                 static_cast<int>(argv.size()), argv.data(),
                                 lens.data()) == REDIS_OK;
}

bool RedisClient::subscribe(const std::vector<std::string> &channels)
{
    return submit_subscription("SUBSCRIBE", channels);
}

bool RedisClient::unsubscribe(const std::vector<std::string> &channels)
{
    return submit_subscription("UNSUBSCRIBE", channels);
}

asio::awaitable<Result<RedisValue>> RedisClient::command(RedisArgs args)
{
    return asio::async_initiate<decltype(asio::use_awaitable), void(Result<RedisValue>)>(
        [this](auto handler, RedisArgs a) {
            using Handler = decltype(handler);
            submit(a, new CoroutineCall<Handler>(std::move(handler)));
        },
        asio::use_awaitable, std::move(args));
}

// head and args are read only while the command is formatted, before the first
// suspension, so they may be references: eval() sends the same arguments a second time.
asio::awaitable<Result<RedisValue>> RedisClient::send(std::string_view verb,
                                                      std::string_view first,
                                                      const RedisArgs &args)
{
    return asio::async_initiate<decltype(asio::use_awaitable), void(Result<RedisValue>)>(
        [this, verb, first, &args](auto handler) {
            using Handler = decltype(handler);
            submit({verb, first}, args, new CoroutineCall<Handler>(std::move(handler)));
        },
        asio::use_awaitable);
}

asio::awaitable<Result<RedisValue>> RedisClient::eval(const RedisScript &script, RedisArgs args)
{
    Result<RedisValue> r = co_await send("EVALSHA", script.sha1(), args);
    // NOSCRIPT: nothing ran, so sending the text is no repeat
    if (r.is_ok() || r.status().code() != StatusCode::internal ||
        r.status().message().rfind("redis: NOSCRIPT", 0) != 0) {
        co_return r;
    }
    co_return co_await send("EVAL", script.body(), args);
}

// verb is EVALSHA (with the script's SHA1) or EVAL (with its text); args are read only
// before the first suspension, like send()'s.
asio::awaitable<Result<RedisValue>> RedisClient::send_resp(std::string_view verb,
                                                           const RedisScript &script,
                                                           size_t key_count, size_t count,
                                                           const std::string &args)
{
    return asio::async_initiate<decltype(asio::use_awaitable), void(Result<RedisValue>)>(
        [this, verb, &script, key_count, count, &args](auto handler) {
            using Handler = decltype(handler);
            auto *call = new CoroutineCall<Handler>(std::move(handler));
            char digits[24];
            std::string &out = wire_;

            out.clear();
            append_resp_header(out, '*', 3 + count);
            append_resp_bulk(out, verb);
            append_resp_bulk(out, verb == "EVAL" ? script.body() : script.sha1());
            append_resp_bulk(out, std::string_view(
                                      digits, std::to_chars(digits, digits + sizeof(digits),
                                                            key_count).ptr - digits));
            out.append(args);
            if (context_ == nullptr || !ready_ ||
                redisAsyncFormattedCommand(context_, reply_callback, call, out.data(),
                                           out.size()) != REDIS_OK) {
                call->complete(Status::unavailable("redis is not connected"));
                delete call;
            }
        },
        asio::use_awaitable);
}

asio::awaitable<Result<RedisValue>> RedisClient::eval_resp(const RedisScript &script,
                                                           size_t key_count, size_t count,
                                                           const std::string &args)
{
    Result<RedisValue> r = co_await send_resp("EVALSHA", script, key_count, count, args);
    // NOSCRIPT: nothing ran, so sending the text is no repeat
    if (r.is_ok() || r.status().code() != StatusCode::internal ||
        r.status().message().rfind("redis: NOSCRIPT", 0) != 0) {
        co_return r;
    }
    co_return co_await send_resp("EVAL", script, key_count, count, args);
}

asio::awaitable<Result<RedisValue>> RedisClient::transaction(std::vector<RedisArgs> commands)
{
    return asio::async_initiate<decltype(asio::use_awaitable), void(Result<RedisValue>)>(
        [this](auto handler, std::vector<RedisArgs> cmds) {
            using Handler = decltype(handler);
            auto *call = new CoroutineCall<Handler>(std::move(handler));
            if (context_ == nullptr || !ready_) {
                call->complete(Status::unavailable("redis is not connected"));
                delete call;
                return;
            }
            // nothing between these sends yields to the loop, so they stay together
            submit({"MULTI"}, nullptr);
            for (const RedisArgs &c : cmds) {
                submit(c, nullptr);
            }
            submit({"EXEC"}, call);
        },
        asio::use_awaitable, std::move(commands));
}

}  // namespace signalrd
