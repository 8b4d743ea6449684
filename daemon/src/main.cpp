// signalrd: runs the hubs behind the nginx SignalR module.
//
//   signalrd [--config FILE]
//
// Wires the pieces on one Asio loop: Redis, the conversation store, the reply runner,
// the hubs behind the worker socket, and the REST API on the HTTP socket. Tells systemd
// READY=1 once both sockets listen (Redis may still be down: it is retried), pings the
// watchdog when asked to, and on SIGTERM or SIGINT stops accepting, ends the streams and
// replies, flushes the links and exits 0.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "backplane.h"
#include "chat_api.h"
#include "chat_hub.h"
#include "config.h"
#include "demo_provider.h"
#include "group_store.h"
#include "http_server.h"
#include "hub_registry.h"
#include "openai_provider.h"
#include "parking.h"
#include "presence.h"
#include "provider_setup.h"
#include "push_api.h"
#include "push_hub.h"
#include "remote_connections.h"
#include "reply_sweeper.h"
#include "token_claims.h"
#include "worker_link.h"

namespace signalrd {

namespace {

struct Options {
    std::string config_path = default_config_path;
    bool config_given = false;
};

int parse_args(int argc, char **argv, Options &options)
{
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--config" && i + 1 < argc) {
            options.config_path = argv[++i];
            options.config_given = true;
        } else if (arg == "--version") {
            std::printf("signalrd %s\n", SIGNALRD_VERSION);
            return 0;
        } else if (arg == "--help" || arg == "-h") {
            std::printf("usage: signalrd [--config FILE]\n");
            return 0;
        } else {
            std::fprintf(stderr, "usage: signalrd [--config FILE]\n");
            return 2;
        }
    }
    return -1;
}

std::string host_name()
{
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) != 0) {
        return "localhost";
    }
    return name;
}

// Every hub the daemon serves: the chat hub and the configured push hubs.
std::vector<std::string> hub_names(const PushSettings &push)
{
    std::vector<std::string> names = {chat_hub_name};
    names.insert(names.end(), push.hubs.begin(), push.hubs.end());
    return names;
}

// Everything the daemon runs, in construction order.
struct Daemon {
    Daemon(asio::io_context &io, const Config &c, RedisEndpoint endpoint,
           std::optional<OpenAiSettings> model, const PushSettings &push_settings)
        : config(c),
          redis(io.get_executor(), endpoint),
          store(redis, c.key_prefix, host_name() + ":" + c.worker_socket, c.history_messages,
                c.backlog_ttl),
          demo(c.demo_token_rate, c.demo_reply_tokens),
          model_provider(model ? std::make_unique<OpenAiProvider>(io.get_executor(), *model)
                               : nullptr),
          provider(model_provider ? static_cast<Provider &>(*model_provider) : demo),
          runner(io.get_executor(), store, bus, provider),
          parking(io.get_executor(), registry),
          chat(io.get_executor(), store, bus, runner, registry),
          links(io.get_executor(), registry, LinkOptions{16u << 20, 0, host_name()}),
          backplane(io.get_executor(), std::move(endpoint), redis, store, bus, registry),
          remote(io.get_executor(), redis, c.key_prefix, store.instance(), registry, parking,
                 [this](const std::string &instance, std::string payload) {
                     backplane.publish_to_instance(instance, std::move(payload));
                 }),
          sweeper(io.get_executor(), store, runner, redis),
          api(store, runner, bus, redis),
          groups(redis, c.key_prefix),
          presence(io.get_executor(), redis, c.key_prefix, store.instance(),
                   std::chrono::seconds(c.presence_ttl), hub_names(push_settings)),
          push_hub(registry),
          push(io.get_executor(), push_settings, hub_names(push_settings), backplane, groups,
               presence, redis),
          http(io.get_executor(), [this](const HttpRequest &r) { return route(r); })
    {
        registry.add_hub(chat_hub_name, chat);
        for (const std::string &name : push_settings.hubs) {
            registry.add_hub(name, push_hub);
        }
        wire_backplane();
        runner.set_batching({c.backlog_batch_fragments,
                             std::chrono::milliseconds(c.backlog_batch_ms)});
        runner.set_live_tokens(model_provider != nullptr);
        chat.set_cancel_unwatched(c.cancel_unwatched);
        api.set_health_details([this](json_t *body) {
            json_set_string(body, "backplane", backplane.subscriber_up() ? "up" : "down");
            json_object_set_new(body, "links", json_integer(links.link_count()));
            json_object_set_new(body, "connections", json_integer(registry.connection_count()));
            json_object_set_new(body, "parked", json_integer(parking.parked_count()));
            json_object_set_new(body, "adoptedFromElsewhere", json_integer(remote.foreign_count()));
            json_object_set_new(body, "streams", json_integer(chat.stream_count()));
            json_object_set_new(body, "replies", json_integer(runner.active()));
            json_object_set_new(body, "heldBack", json_integer(runner.held_back()));
            json_object_set_new(body, "subscriptions",
                                json_integer(backplane.subscription_count()));
            if (model_provider) {
                json_object_set_new(body, "provider", model_provider->stats_json().release());
            }
        });
        api.set_readiness([this] { return backplane.subscriber_up(); });
    }

    void wire_backplane()
    {
        runner.set_hold_back_limit(config.hold_back_fragments);
        runner.set_store_before_show(config.store_before_show);
        bus.set_bridge(&backplane);
        registry.set_observer([this](const ConnectionInfo &info, bool opened) {
            backplane.on_connection(info, opened);
            push.on_connection(info, opened);
        });
        backplane.set_group_observer([this](const std::string &id, const std::string &group,
                                            bool joined) { presence.on_group(id, group, joined); });
        backplane.set_cancel_handler([this](const std::string &id, const std::string &reply) {
            runner.cancel_reply(id, reply);
        });
        // stateful reconnect: parked connections, and those adopted across instances
        links.set_reconnect(&parking);
        backplane.set_instance_handler([this](const std::string &type, const json_t *m) {
            remote.on_instance_message(type, m);
        });
        redis.set_state_handler([this](bool up) {
            if (up) {
                runner.on_redis_up();
                sweeper.on_redis_up();
                presence.on_redis_up();
            }
            // systemd shows this in `systemctl status`; READY=1 does not wait for Redis
            sd_notifyf(0, "STATUS=%s", up ? "serving, redis up" : "redis down, retrying");
        });
    }

    asio::awaitable<HttpResponse> route(const HttpRequest &r)
    {
        if (PushApi::handles(r.path)) {
            return push.handle(r);
        }
        return api.handle(r);
    }

    const Config &config;
    RedisClient redis;
    ConversationStore store;
    FragmentBus bus;
    DemoProvider demo;
    std::unique_ptr<OpenAiProvider> model_provider;   // when a model endpoint is set
    Provider &provider;
    ReplyRunner runner;
    HubRegistry registry;
    ParkingLot parking;
    ChatHub chat;
    WorkerLinkServer links;
    Backplane backplane;
    RemoteConnections remote;
    ReplySweeper sweeper;
    ChatApi api;
    GroupStore groups;
    Presence presence;
    PushHub push_hub;
    PushApi push;
    HttpServer http;
};

asio::awaitable<void> wait_until(asio::io_context &io, std::chrono::milliseconds limit,
                                 const std::function<bool()> &done)
{
    asio::steady_timer timer(io);
    auto deadline = std::chrono::steady_clock::now() + limit;

    while (!done() && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds(20));
        co_await timer.async_wait(use_nothrow);
    }
}

asio::awaitable<void> stop_gracefully(asio::io_context &io, Daemon &d)
{
    sd_notify(0, "STOPPING=1");
    log_info("stopping");

    d.links.stop_accepting();
    d.http.stop();
    d.registry.shutdown();
    d.runner.shutdown();
    // interrupted replies store their final fragment; give Redis a moment for it
    co_await wait_until(io, std::chrono::seconds(3), [&d] { return d.runner.active() == 0; });

    d.links.close_all();
    co_await wait_until(io, std::chrono::seconds(1), [&d] { return d.links.link_count() == 0; });
    d.sweeper.stop();
    d.presence.stop();
    d.backplane.stop();
    d.redis.stop();
    io.stop();
}

asio::awaitable<void> ping_watchdog(asio::io_context &io, uint64_t usec)
{
    asio::steady_timer timer(io);

    for (;;) {
        sd_notify(0, "WATCHDOG=1");
        timer.expires_after(std::chrono::microseconds(usec / 2));
        co_await timer.async_wait(use_nothrow);
    }
}

int run(const Config &config)
{
    Result<RedisEndpoint> endpoint = parse_redis_url(config.redis_url);
    if (!endpoint.is_ok()) {
        log_error("%s", endpoint.status().message().c_str());
        return 1;
    }

    std::string dev_secret;
    if (!config.dev_token_key.empty()) {
        Result<std::string> secret = read_secret_file(config.dev_token_key);
        if (!secret.is_ok()) {
            log_error("dev_token_key: %s", secret.status().message().c_str());
            return 1;
        }
        dev_secret = *secret;
    }
    Result<std::optional<OpenAiSettings>> model = model_settings(config);
    if (!model.is_ok()) {
        log_error("%s", model.status().message().c_str());
        return 1;
    }

    Result<PushSettings> push = load_push_settings(config, {chat_hub_name});
    if (!push.is_ok()) {
        log_error("%s", push.status().message().c_str());
        return 1;
    }

    asio::io_context io(1);
    Daemon d(io, config, *endpoint, *model, *push);
    if (!dev_secret.empty()) {
        d.api.enable_dev_tokens(dev_secret);
    }

    d.redis.start();
    d.backplane.start();
    d.presence.start();
    d.sweeper.start();
    Status s = d.links.listen(config.worker_socket);
    if (s.is_ok()) {
        s = d.http.listen(config.http_socket);
    }
    if (!s.is_ok()) {
        log_error("%s", s.message().c_str());
        return 1;
    }

    log_info("signalrd %s: worker socket \"%s\", http socket \"%s\", redis %s, provider %s",
             SIGNALRD_VERSION, config.worker_socket.c_str(), config.http_socket.c_str(),
             endpoint->describe().c_str(), d.provider.name());
    sd_notify(0, "READY=1");

    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
        spawn_detached(io, ping_watchdog(io, watchdog_usec), "watchdog");
    }

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&io, &d](asio::error_code ec, int) {
        if (!ec) {
            spawn_detached(io, stop_gracefully(io, d), "shutdown");
        }
    });

    io.run();
    ::unlink(config.worker_socket.c_str());
    ::unlink(config.http_socket.c_str());
    log_info("stopped");
    return 0;
}

}  // namespace

}  // namespace signalrd

int main(int argc, char **argv)
{
    signalrd::Options options;

    int rc = signalrd::parse_args(argc, argv, options);
    if (rc >= 0) {
        return rc;
    }

    // hiredis writes with write(2): a vanished peer must give EPIPE, not kill us
    std::signal(SIGPIPE, SIG_IGN);

    auto env = [](const char *name) -> const char * { return std::getenv(name); };
    signalrd::Result<signalrd::Config> config =
        signalrd::load_config(options.config_path, options.config_given, env);
    if (!config.is_ok()) {
        signalrd::log_error("%s", config.status().message().c_str());
        return 1;
    }
    signalrd::set_log_level(config->log_level);
    return signalrd::run(*config);
}
