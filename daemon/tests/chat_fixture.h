// A chat stack without sockets for the hub and API tests: a private redis-server, the
// store, a fast demo provider, the reply runner, the hub, and a sink that records what
// the hub sends to each connection.

#pragma once

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "chat_hub.h"
#include "demo_provider.h"
#include "test_util.h"
#include "uuid.h"

namespace signalrd::testing {

struct SentMessage {
    std::string connection_id;
    sr_message_type_t type;
    std::string invocation_id;
    Json item;
    std::optional<std::string> error;
};

class RecordingSink final : public ConnectionSink {
public:
    bool send(const std::string &connection_id, const sr_message_t &msg) override
    {
        if (gone.count(connection_id)) {
            return false;
        }
        SentMessage m{connection_id, msg.type, msg.invocation_id ? msg.invocation_id : "",
                      msg.item ? Json::borrow(msg.item) : Json(), std::nullopt};
        if (msg.error) {
            m.error = msg.error;
        }
        sent.push_back(std::move(m));
        return true;
    }

    void close(const std::string &connection_id, const char *, bool) override
    {
        closed.push_back(connection_id);
    }

    std::vector<Fragment> fragments(const std::string &conn, const std::string &inv) const
    {
        std::vector<Fragment> out;
        for (const SentMessage &m : sent) {
            if (m.connection_id != conn || m.invocation_id != inv ||
                m.type != SR_MSG_STREAM_ITEM) {
                continue;
            }
            json_t *o = m.item.get();
            out.push_back({json_get_string(o, "id"), json_get_string(o, "sender"),
                           json_get_string(o, "text"), json_get_string(o, "fragmentId"),
                           json_is_true(json_object_get(o, "isFinal"))});
        }
        return out;
    }

    // The Completion sent for the invocation: nullopt if none; its error ("" if none).
    std::optional<std::string> completion(const std::string &conn, const std::string &inv) const
    {
        for (const SentMessage &m : sent) {
            if (m.connection_id == conn && m.invocation_id == inv &&
                m.type == SR_MSG_COMPLETION) {
                return m.error.value_or("");
            }
        }
        return std::nullopt;
    }

    std::vector<SentMessage> sent;
    std::vector<std::string> closed;
    std::set<std::string> gone;
};

class ChatFixture : public ::testing::Test {
protected:
    static constexpr uint32_t reply_tokens = 12;

    void SetUp() override
    {
        ASSERT_TRUE(redis_server_.start()) << "redis-server could not be started";
        auto ep = parse_redis_url(redis_server_.url());
        ASSERT_TRUE(ep.is_ok());
        redis_ = std::make_unique<RedisClient>(io_.get_executor(), *ep);
        redis_->start();
        ASSERT_TRUE(run_until(io_, [this] { return redis_->connected(); }));
        store_ = std::make_unique<ConversationStore>(*redis_, "test", "instance-a", 25, 300);
        provider_ = std::make_unique<DemoProvider>(token_rate(), reply_tokens);
        runner_ = std::make_unique<ReplyRunner>(io_.get_executor(), *store_, bus_, *provider_);
        hub_ = std::make_unique<ChatHub>(io_.get_executor(), *store_, bus_, *runner_, sink_);
    }

    void TearDown() override
    {
        // replies hold the runner: let them end before it goes
        if (runner_) {
            runner_->shutdown();
            run_until(io_, [this] { return runner_->active() == 0; });
        }
        hub_.reset();
        runner_.reset();
        if (redis_) {
            redis_->stop();
        }
        run_for(io_, std::chrono::milliseconds(20));
        redis_.reset();
        redis_server_.stop();
    }

    virtual uint32_t token_rate() const { return 1000; }

    ConnectionInfo connection(const std::string &id, const std::string &user)
    {
        ConnectionInfo c;
        c.id = id;
        c.hub = chat_hub_name;
        c.user = user;
        c.protocol = SR_PROTOCOL_MSGPACK;
        c.claims = Json::object();
        return c;
    }

    // Creates a conversation and starts its reply, as POST does.
    std::string create(const std::string &user, const std::string &text)
    {
        auto turn = run_coro(io_, store_->create(user, text));
        EXPECT_TRUE(turn && turn->is_ok());
        if (!turn || !turn->is_ok()) {
            return "";
        }
        runner_->start(**turn);
        return (*turn)->conversation_id;
    }

    bool wait_reply(const std::string &id)
    {
        return run_until(io_, [&] { return !runner_->running(id); });
    }

    void invoke(const ConnectionInfo &c, sr_message_type_t type, const char *inv,
                const char *target, json_t *arguments)
    {
        sr_message_t msg;
        sr_message_init(&msg, type);
        msg.invocation_id = inv ? strdup(inv) : nullptr;
        msg.target = target ? strdup(target) : nullptr;
        msg.arguments = arguments;
        hub_->on_message(c, msg);
        sr_message_clear(&msg);
    }

    // Calls Stream(conversation, {lastMessageId, lastFragmentId}); empty ids are null.
    void stream(const ConnectionInfo &c, const std::string &inv, const std::string &conv,
                const ResumePoint &resume = {})
    {
        auto id_or_null = [](const std::string &s) {
            return s.empty() ? json_null() : json_string(s.c_str());
        };
        json_t *context = json_object();
        json_object_set_new(context, "lastMessageId", id_or_null(resume.last_message_id));
        json_object_set_new(context, "lastFragmentId", id_or_null(resume.last_fragment_id));
        json_t *args = json_pack("[s o]", conv.c_str(), context);
        invoke(c, SR_MSG_STREAM_INVOCATION, inv.c_str(), "Stream", args);
    }

    void cancel(const ConnectionInfo &c, const std::string &inv)
    {
        invoke(c, SR_MSG_CANCEL_INVOCATION, inv.c_str(), nullptr, nullptr);
    }

    // Waits until the stream has received a final assistant fragment (count of them).
    bool wait_final(const std::string &conn, const std::string &inv, size_t finals = 1)
    {
        return run_until(io_, [&] {
            size_t n = 0;
            for (const Fragment &f : sink_.fragments(conn, inv)) {
                n += f.is_final && f.sender == "assistant";
            }
            return n >= finals;
        });
    }

    std::optional<ConversationSnapshot> load(const std::string &id)
    {
        auto s = run_coro(io_, store_->load(id));
        if (!s || !s->is_ok()) {
            return std::nullopt;
        }
        return **s;
    }

    asio::io_context io_;
    RedisServer redis_server_;
    std::unique_ptr<RedisClient> redis_;
    std::unique_ptr<ConversationStore> store_;
    FragmentBus bus_;
    std::unique_ptr<DemoProvider> provider_;
    std::unique_ptr<ReplyRunner> runner_;
    RecordingSink sink_;
    std::unique_ptr<ChatHub> hub_;
};

}  // namespace signalrd::testing
