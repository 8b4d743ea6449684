// broadcast: N subscribers on one group, one publisher sending payloads
// through the server's publish API at --rate messages/s (0: as fast as
// the server answers). Every subscriber times each delivery from the
// sender's clock in the payload (payload.h).
//
// With SignalR the subscribers are hub connections; --join (optional)
// puts each one in the group with PUT JOIN/<connectionId> once it is
// ready, before the worker reports ready, for servers whose groups are
// joined through an API rather than from the token. With
// --plain-websocket (nchan, a Node.js ws server, the floor program) the
// connection's URL names the channel and every message is a payload.
//
// Measured after the warm-up: "delivered" (payloads read in the
// measured window), "delivery" latency, and on the publishing worker
// (the one holding connection 0) "published" and "publish". Over the
// whole run, from the sequence numbers each subscriber reads: "lost"
// (numbers skipped) and "reordered" (a number below the last one). With
// one publishing connection nothing may be either; with several, a
// message overtaken counts in both. SignalR payloads are found in the
// hub message without decoding it (see on_hub_payload), as the peers'
// are read from the bare frame.

#include <cstring>

#include "clock.h"
#include "payload.h"
#include "publisher.h"
#include "scenario.h"

namespace bench {

namespace {

constexpr unsigned  kJoinAttempts = 40;

class BroadcastScenario : public HubScenario {
public:
    explicit BroadcastScenario(WorkerContext &ctx);

    void start() override;
    void stop() override;

    void on_hub_message(HubConnection &hub, const sr_message_t &msg,
                        int64_t now_ns) override;
    bool on_hub_payload(HubConnection &hub, const unsigned char *data,
                        size_t len, int64_t now_ns) override;
    void on_plain_message(HubConnection &hub, const unsigned char *data,
                          size_t len, int64_t now_ns) override;

protected:
    void on_ready(HubConnection &hub) override;
    void on_setup_done() override;

private:
    void join(HubConnection &conn, unsigned attempt);
    void joined();
    void deliver(HubConnection &hub, const char *data, size_t len,
                 int64_t now_ns);

    std::vector<uint64_t>                     last_seq_;   // per subscriber
    std::unique_ptr<Publisher>                publisher_;
    Endpoint                                  join_;
    std::vector<std::unique_ptr<HttpClient>>  join_clients_;
    size_t                                    joins_pending_ = 0;
    size_t                                    next_join_client_ = 0;
    bool                                      all_settled_ = false;
};


BroadcastScenario::BroadcastScenario(WorkerContext &ctx)
    : HubScenario(ctx), last_seq_(ctx.count, 0)
{
    if (!ctx.opts.join_url.empty()
        && parse_endpoint(ctx.opts.join_url, &join_).ok())
    {
        for (unsigned i = 0; i < 4; i++) {
            join_clients_.push_back(make_client(ctx.loop, join_));
        }
        defer_ready_ = true;
    }

    if (ctx.first == 0) {
        publisher_ = std::make_unique<Publisher>(ctx.loop, ctx.opts,
                                                 results_);
        Status  s = publisher_->init();
        if (!s.ok()) {
            results_.error(s.message());
            publisher_.reset();
        }
    }
}


void
BroadcastScenario::on_ready(HubConnection &hub)
{
    if (!join_clients_.empty()) {
        join(hub, 0);
    }
}


void
BroadcastScenario::join(HubConnection &conn, unsigned attempt)
{
    HttpClient   &c = *join_clients_[next_join_client_++
                                     % join_clients_.size()];
    std::string   target = join_.target + "/" + conn.connection_id();
    size_t        i = conn.index();

    if (attempt == 0) {
        joins_pending_++;
    }

    c.send(http_request("PUT", target, join_.host, {}, ""),
        [this, i, attempt](const Status &s, HttpResponse &r) {
            // The edge may hear of a connection a moment after its
            // handshake: a 404 then is worth a few more tries.
            if (s.ok() && r.status == 404 && attempt < kJoinAttempts) {
                ctx_.loop.add_timer(50 * kNsPerMs, [this, i, attempt] {
                    join(hub(i), attempt + 1);
                });
                return;
            }

            if (!s.ok() || r.status < 200 || r.status > 299) {
                setup_results_.count("join_failed");
                setup_results_.error(s.ok() ? "join: HTTP "
                                              + std::to_string(r.status)
                                            : "join: " + s.message());
            } else {
                setup_results_.count("joined");
            }
            joined();
        });
}


void
BroadcastScenario::joined()
{
    joins_pending_--;

    if (all_settled_ && joins_pending_ == 0) {
        report_ready();
    }
}


void
BroadcastScenario::on_setup_done()
{
    all_settled_ = true;

    if (defer_ready_ && joins_pending_ == 0) {
        report_ready();
    }
}


void
BroadcastScenario::start()
{
    start_warmup();

    if (publisher_ != nullptr) {
        size_t  ready = 0;

        for (size_t i = 0; i < hub_count(); i++) {
            ready += hub(i).state() == HubConnection::State::kReady;
        }
        publisher_->set_readers(ready > 0 ? ready : 1);
        publisher_->measure_from(measure_from_ns_);
        publisher_->start();
    }
}


void
BroadcastScenario::deliver(HubConnection &hub, const char *data, size_t len,
    int64_t now_ns)
{
    uint64_t  seq;
    int64_t   sent;

    if (!parse_payload(data, len, &seq, &sent)) {
        results_.count("unexpected_messages");
        return;
    }

    if (publisher_ != nullptr) {
        publisher_->delivered(seq);
    }

    // One publishing connection sends in order, and so must every path
    // deliver: a payload skipped is lost, one earlier than the last is
    // reordered (expected with several publishing connections).
    uint64_t  &last = last_seq_[hub.index()];

    if (last != 0 && seq > last + 1) {
        results_.count("lost", seq - last - 1);
    } else if (seq <= last) {
        results_.count("reordered");
    }
    last = seq > last ? seq : last;

    // Everything read in the window counts: what the server sustains.
    if (!measuring_) {
        return;
    }

    results_.count("delivered");
    results_.record("delivery", (now_ns - sent) / kNsPerUs);
}


void
BroadcastScenario::on_hub_message(HubConnection &hub,
    const sr_message_t &msg, int64_t now_ns)
{
    const char  *text;

    if (msg.type != SR_MSG_INVOCATION || msg.arguments == nullptr) {
        results_.count("unexpected_messages");
        return;
    }

    text = json_string_value(json_array_get(msg.arguments, 0));
    if (text == nullptr) {
        results_.count("unexpected_messages");
        return;
    }

    deliver(hub, text, strlen(text), now_ns);
}


// A payload is plain ASCII and carried as it is in a JSON string and in
// a MessagePack str: found in the hub message without decoding it, the
// way the peers' subscribers read theirs. Anything else (Pings, Close)
// is decoded as usual.
bool
BroadcastScenario::on_hub_payload(HubConnection &hub,
    const unsigned char *data, size_t len, int64_t now_ns)
{
    const void  *at = memmem(data, len, "bench ", 6);

    if (at == nullptr) {
        return false;
    }

    size_t  off = size_t(static_cast<const unsigned char *>(at) - data);

    deliver(hub, reinterpret_cast<const char *>(data) + off, len - off,
            now_ns);
    return true;
}


void
BroadcastScenario::on_plain_message(HubConnection &hub,
    const unsigned char *data, size_t len, int64_t now_ns)
{
    deliver(hub, reinterpret_cast<const char *>(data), len, now_ns);
}


void
BroadcastScenario::stop()
{
    uint64_t  open = 0;

    measuring_ = false;
    if (publisher_ != nullptr) {
        publisher_->stop();
    }

    for (size_t i = 0; i < hub_count(); i++) {
        if (hub(i).state() == HubConnection::State::kReady) {
            open++;
        }
    }
    results_.count("open_at_end", open);

    int64_t  now = monotonic_ns();
    end_measurement(now > measure_from_ns_ ? now - measure_from_ns_ : 0);
}

}  // namespace


std::unique_ptr<Scenario>
make_broadcast_scenario(WorkerContext &ctx)
{
    return std::make_unique<BroadcastScenario>(ctx);
}

}  // namespace bench
