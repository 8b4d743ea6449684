// invoke: invocation round trips. Every connection keeps --inflight
// Invocation messages outstanding, each with its own invocation id, and
// sends the next as soon as a Completion comes back. ChatStreamHub
// answers the default target (a method it does not have) with an error
// Completion, which still crosses module, link and daemon both ways.
//
// Measured: completions per second and the round trip from the send of
// an Invocation to the read of its Completion, both counted only after
// the warm-up.

#include <cstring>
#include <string>
#include <unordered_map>

#include "clock.h"
#include "scenario.h"

namespace bench {

namespace {

class InvokeScenario : public HubScenario {
public:
    explicit InvokeScenario(WorkerContext &ctx);

    void start() override;
    void stop() override;

    void on_hub_message(HubConnection &hub, const sr_message_t &msg,
                        int64_t now_ns) override;

private:
    struct Caller {
        uint64_t                               next_id = 0;
        std::unordered_map<uint64_t, int64_t>  sent_ns;   // id -> time
    };

    void invoke(size_t i);

    std::vector<Caller>  callers_;
    bool                 stopped_ = false;
};


InvokeScenario::InvokeScenario(WorkerContext &ctx)
    : HubScenario(ctx), callers_(ctx.count)
{
}


void
InvokeScenario::start()
{
    start_warmup();

    for (size_t i = 0; i < hub_count(); i++) {
        if (hub(i).state() != HubConnection::State::kReady) {
            continue;
        }
        for (unsigned k = 0; k < ctx_.opts.inflight; k++) {
            invoke(i);
        }
    }
}


void
InvokeScenario::invoke(size_t i)
{
    Caller        &c = callers_[i];
    sr_message_t   msg;
    uint64_t       id = ++c.next_id;

    sr_message_init(&msg, SR_MSG_INVOCATION);
    msg.invocation_id = strdup(std::to_string(id).c_str());
    msg.target = strdup(ctx_.opts.target.c_str());
    msg.arguments = json_pack("[sI]", "bench", json_int_t(id));

    c.sent_ns[id] = monotonic_ns();
    Status  s = hub(i).send(msg);
    sr_message_clear(&msg);

    if (!s.ok()) {
        c.sent_ns.erase(id);
        results_.error("Invocation: " + s.message());
    }
}


void
InvokeScenario::on_hub_message(HubConnection &hub, const sr_message_t &msg,
    int64_t now_ns)
{
    Caller  &c = callers_[hub.index()];
    char    *end;

    if (msg.type != SR_MSG_COMPLETION || msg.invocation_id == nullptr) {
        results_.count("unexpected_messages");
        return;
    }

    uint64_t  id = strtoull(msg.invocation_id, &end, 10);
    auto      it = c.sent_ns.find(id);

    if (*end != '\0' || it == c.sent_ns.end()) {
        results_.count("unknown_completions");
        return;
    }

    int64_t  sent = it->second;
    c.sent_ns.erase(it);

    if (measuring_ && !stopped_ && sent >= measure_from_ns_) {
        results_.count("delivered");
        results_.record("round_trip", (now_ns - sent) / kNsPerUs);

        if (msg.error != nullptr) {
            results_.count("error_completions");
            results_.error(std::string("Completion: ") + msg.error);
        } else {
            results_.count("result_completions");
        }
    }

    if (!stopped_) {
        invoke(hub.index());
    }
}


void
InvokeScenario::stop()
{
    uint64_t  outstanding = 0;
    int64_t   now = monotonic_ns();

    stopped_ = true;

    for (const auto &c : callers_) {
        outstanding += c.sent_ns.size();
    }
    results_.count("outstanding_at_stop", outstanding);

    if (!measuring_) {
        begin_measurement();
    }
    end_measurement(measuring_ ? now - measure_from_ns_ : 0);
}

}  // namespace


std::unique_ptr<Scenario>
make_invoke_scenario(WorkerContext &ctx)
{
    return std::make_unique<InvokeScenario>(ctx);
}

}  // namespace bench
