// A scenario runs inside one worker process on its share of the
// connections, in three steps the coordinator paces for every worker at
// once: set up (connect; then report "ready"), start (measure), stop
// (report the results). New scenarios derive from HubScenario, which
// owns the connections and their setup.

#ifndef SIGNALR_BENCH_SCENARIO_H
#define SIGNALR_BENCH_SCENARIO_H

#include <netinet/in.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "event_loop.h"
#include "hub_connection.h"
#include "options.h"
#include "results.h"

namespace bench {

struct WorkerContext {
    EventLoop                             &loop;
    const Options                         &opts;
    size_t                                 first;    // global index
    size_t                                 count;
    std::function<void(const Results &)>   ready;    // setup done
    std::function<void(const Results &)>   finish;   // measured
};


class Scenario {
public:
    virtual ~Scenario() = default;

    virtual void setup() = 0;
    virtual void start() = 0;

    // The coordinator's stop: measure no more and call ctx.finish once
    // (a scenario that ended by itself has already).
    virtual void stop() = 0;

    // Closes every connection; true once all are closed.
    virtual bool teardown() = 0;
};


class HubScenario : public Scenario, public HubListener {
public:
    explicit HubScenario(WorkerContext &ctx);

    void setup() override;
    bool teardown() override;

    void on_hub_ready(HubConnection &hub) override;
    void on_hub_closed(HubConnection &hub,
                       const std::string &reason) override;

protected:
    // A connection finished its setup (still within the setup step).
    virtual void on_ready(HubConnection &hub) {}

    // Called once every connection is ready or has failed.
    virtual void on_setup_done() {}

    // A connection failed after setup.
    virtual void on_lost(HubConnection &hub, const std::string &reason);

    HubConnection &hub(size_t i) { return *hubs_[i]; }
    size_t hub_count() const { return hubs_.size(); }
    bool setting_up() const { return !setup_done_; }

    // Brackets the measured time: CPU used by this worker in between
    // goes into the results, which end_measurement() hands over.
    void begin_measurement();
    void end_measurement(int64_t window_ns);

    // For scenarios measured over a window after --warmup: sets
    // measure_from_ns_, and when it comes sets measuring_ and calls
    // begin_measurement().
    void start_warmup();

    // With defer_ready_ set (in the constructor), the setup step ends
    // when the scenario calls report_ready(), not when the last
    // connection is ready: for work of its own after on_setup_done().
    void report_ready() { ctx_.ready(setup_results_); }

    WorkerContext  &ctx_;
    HubTarget       target_;
    Results         results_;
    Results         setup_results_;
    bool            finished_ = false;
    bool            defer_ready_ = false;
    int64_t         measure_from_ns_ = 0;   // see start_warmup()
    bool            measuring_ = false;

private:
    void start_next_setups();
    void fail_setup(size_t i, const std::string &reason);
    void settle(size_t i);
    void sweep();
    void fetch_tokens();

    std::vector<std::unique_ptr<HubConnection>>  hubs_;
    std::vector<std::string>                     tokens_;
    std::vector<bool>                            settled_flags_;
    size_t                                       next_setup_ = 0;
    size_t                                       settled_ = 0;
    size_t                                       in_setup_ = 0;
    bool                                         setup_done_ = false;
    bool                                         tearing_down_ = false;
    bool                                         starting_ = false;
    int64_t                                      cpu_user_start_ = 0;
    int64_t                                      cpu_system_start_ = 0;
};


std::unique_ptr<Scenario> make_chat_scenario(WorkerContext &ctx);
std::unique_ptr<Scenario> make_invoke_scenario(WorkerContext &ctx);
std::unique_ptr<Scenario> make_idle_scenario(WorkerContext &ctx);
std::unique_ptr<Scenario> make_broadcast_scenario(WorkerContext &ctx);

}  // namespace bench

#endif  // SIGNALR_BENCH_SCENARIO_H
