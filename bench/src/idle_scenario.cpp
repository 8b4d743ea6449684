// idle: N connections that finished the handshake and then only keep
// alive (a Ping every --keepalive seconds, Pongs to WebSocket pings).
// The coordinator samples the server processes' memory and CPU around
// the hold; the worker counts what the server sent meanwhile, which
// should be its keep-alive Pings and nothing else.

#include "clock.h"
#include "scenario.h"

namespace bench {

namespace {

class IdleScenario : public HubScenario {
public:
    explicit IdleScenario(WorkerContext &ctx) : HubScenario(ctx) {}

    void start() override;
    void stop() override;

    void on_hub_message(HubConnection &hub, const sr_message_t &msg,
                        int64_t now_ns) override;

private:
    int64_t   start_ns_ = 0;
    uint64_t  pings_at_start_ = 0;
};


void
IdleScenario::start()
{
    start_ns_ = monotonic_ns();
    begin_measurement();

    for (size_t i = 0; i < hub_count(); i++) {
        pings_at_start_ += hub(i).pings_received();
    }
}


void
IdleScenario::on_hub_message(HubConnection &hub, const sr_message_t &msg,
    int64_t now_ns)
{
    results_.count("unexpected_messages");
}


void
IdleScenario::stop()
{
    uint64_t  pings = 0, open = 0;

    for (size_t i = 0; i < hub_count(); i++) {
        pings += hub(i).pings_received();
        if (hub(i).state() == HubConnection::State::kReady) {
            open++;
        }
    }

    results_.count("server_pings", pings - pings_at_start_);
    results_.count("delivered", pings - pings_at_start_);
    results_.count("open_at_end", open);

    end_measurement(monotonic_ns() - start_ns_);
}

}  // namespace


std::unique_ptr<Scenario>
make_idle_scenario(WorkerContext &ctx)
{
    return std::make_unique<IdleScenario>(ctx);
}

}  // namespace bench
