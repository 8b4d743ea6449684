// chat: C concurrent conversations. Each connection POSTs a chat over
// its own keep-alive REST connection (opened during the setup), streams
// it with "Stream" and reads
// the reply to the assistant's final fragment.
//
// Measured: time to the first assistant fragment (from the POST, and
// from the Stream invocation), the gaps between assistant fragments
// against the nominal 1/rate of the demo provider (raw, and the excess
// over nominal), each fragment's lateness against the nominal schedule
// anchored at the first fragment, and each fragment's age at receipt
// from the timestamp in its UUIDv7 fragment id.

#include <cstdio>
#include <cstring>
#include <optional>

#include "clock.h"
#include "scenario.h"
#include "uuid7.h"

namespace bench {

namespace {

constexpr const char  *kStreamId = "1";

struct Conversation {
    enum class Phase { kIdle, kPosting, kStreaming, kDone, kFailed };

    std::unique_ptr<HttpClient>  rest;
    Phase                        phase = Phase::kIdle;
    std::string                  id;
    int64_t                      post_ns = 0;
    int64_t                      stream_ns = 0;
    int64_t                      first_ns = 0;
    int64_t                      last_ns = 0;
    uint64_t                     assistant_fragments = 0;
    std::string                  last_fragment_id;
    std::string                  text;
};


class ChatScenario : public HubScenario {
public:
    explicit ChatScenario(WorkerContext &ctx);
    ~ChatScenario() override;

    void start() override;
    void stop() override;

    void on_hub_message(HubConnection &hub, const sr_message_t &msg,
                        int64_t now_ns) override;

protected:
    void on_ready(HubConnection &hub) override;
    void on_lost(HubConnection &hub, const std::string &reason) override;

private:
    void post_chat(size_t i);
    void on_created(size_t i, const HttpResponse &r);
    void on_fragment(size_t i, const json_t *item, int64_t now_ns);
    void on_assistant_fragment(Conversation &c, int64_t now_ns);
    void end_conversation(size_t i, bool ok, const std::string &error);
    void maybe_finish();

    std::vector<Conversation>  convs_;
    size_t                     streaming_ = 0;  // conversations past their first fragment
    int64_t                    nominal_ns_;
    int64_t                    start_ns_ = 0;
    int64_t                    last_final_ns_ = 0;
    size_t                     running_ = 0;
    size_t                     ended_ = 0;      // conversations done or failed
    std::optional<std::string> first_text_;
    FILE                      *fragment_log_ = nullptr;   // --fragment-log
};


ChatScenario::ChatScenario(WorkerContext &ctx)
    : HubScenario(ctx), convs_(ctx.count),
      nominal_ns_(int64_t(double(kNsPerSec) / ctx.opts.token_rate))
{
    // Where a tail comes from shows in time, not in the histograms: a
    // line a fragment, written through stdio's buffer, read afterwards.
    if (!ctx.opts.fragment_log.empty()) {
        std::string  name = ctx.opts.fragment_log + "."
                            + std::to_string(ctx.first);

        fragment_log_ = fopen(name.c_str(), "w");
        if (fragment_log_ == nullptr) {
            results_.error("--fragment-log: cannot write " + name);
        }
    }

    for (size_t i = 0; i < ctx.count; i++) {
        size_t              global = ctx.first + i;
        const sockaddr_in  *source = nullptr;

        if (!ctx.opts.source_addrs.empty()) {
            source = &ctx.opts.source_addrs[global
                                            % ctx.opts.source_addrs.size()];
        }
        convs_[i].rest = std::make_unique<HttpClient>(ctx.loop,
                                                      ctx.opts.rest_addr,
                                                      source);
    }
}


void
ChatScenario::on_ready(HubConnection &hub)
{
    // All POSTs start together: connecting them then would overflow the
    // server's listen backlog and time the kernel's SYN retries.
    convs_[hub.index()].rest->preconnect();
}


void
ChatScenario::start()
{
    start_ns_ = monotonic_ns();
    begin_measurement();

    for (size_t i = 0; i < hub_count(); i++) {
        if (hub(i).state() == HubConnection::State::kReady) {
            running_++;
            post_chat(i);
        }
    }

    maybe_finish();
}


void
ChatScenario::post_chat(size_t i)
{
    Conversation  &c = convs_[i];
    json_t        *body;
    char          *text;

    body = json_pack("{s{ss}}", "prompt", "text",
                     ctx_.opts.prompt.c_str());
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    c.phase = Conversation::Phase::kPosting;
    c.post_ns = monotonic_ns();

    c.rest->send(
        http_request("POST", "/api/v1/chats", ctx_.opts.rest_host_header,
                     {"Authorization: Bearer " + hub(i).token(),
                      "Content-Type: application/json"},
                     text),
        [this, i](const Status &s, HttpResponse &r) {
            if (!s.ok()) {
                end_conversation(i, false, "POST /api/v1/chats: "
                                           + s.message());
                return;
            }
            on_created(i, r);
        });

    free(text);
}


void
ChatScenario::on_created(size_t i, const HttpResponse &r)
{
    Conversation  &c = convs_[i];
    json_t        *id;
    sr_message_t   msg;

    if (r.status != 201) {
        end_conversation(i, false, "POST /api/v1/chats: HTTP "
                                   + std::to_string(r.status));
        return;
    }

    id = json_loadb(r.body.data(), r.body.size(), JSON_DECODE_ANY, nullptr);
    if (!json_is_string(id)) {
        json_decref(id);
        end_conversation(i, false, "POST /api/v1/chats: body is not a "
                                   "JSON string");
        return;
    }
    c.id = json_string_value(id);
    json_decref(id);

    results_.record("post", (monotonic_ns() - c.post_ns) / kNsPerUs);

    sr_message_init(&msg, SR_MSG_STREAM_INVOCATION);
    msg.invocation_id = strdup(kStreamId);
    msg.target = strdup("Stream");
    msg.arguments = json_pack("[s{snsn}]", c.id.c_str(),
                              "lastMessageId", "lastFragmentId");

    c.phase = Conversation::Phase::kStreaming;
    c.stream_ns = monotonic_ns();
    Status  s = hub(i).send(msg);
    sr_message_clear(&msg);

    if (!s.ok()) {
        end_conversation(i, false, "Stream: " + s.message());
    }
}


void
ChatScenario::on_hub_message(HubConnection &hub, const sr_message_t &msg,
    int64_t now_ns)
{
    size_t         i = hub.index();
    Conversation  &c = convs_[i];

    if (msg.invocation_id == nullptr
        || strcmp(msg.invocation_id, kStreamId) != 0)
    {
        results_.count("unexpected_messages");
        return;
    }

    if (c.phase != Conversation::Phase::kStreaming) {
        // Crossed our CancelInvocation on the wire, or answer it.
        results_.count(msg.type == SR_MSG_COMPLETION
                       ? "completions_after_cancel" : "items_after_final");
        return;
    }

    if (msg.type == SR_MSG_STREAM_ITEM) {
        results_.count("delivered");
        on_fragment(i, msg.item, now_ns);
        return;
    }

    if (msg.type == SR_MSG_COMPLETION) {
        end_conversation(i, false, std::string("Stream completed: ")
                                   + (msg.error ? msg.error : "no error"));
        return;
    }

    results_.count("unexpected_messages");
}


void
ChatScenario::on_fragment(size_t i, const json_t *item, int64_t now_ns)
{
    Conversation  &c = convs_[i];
    const char    *sender, *fragment_id, *text;
    int            is_final;
    int64_t        sent_ns;

    if (json_unpack(const_cast<json_t *>(item), "{s:s,s:s,s:s,s:b}",
                    "sender", &sender, "fragmentId", &fragment_id,
                    "text", &text, "isFinal", &is_final) != 0)
    {
        results_.count("malformed_fragments");
        return;
    }

    // Fragment ids are UUIDv7: they must grow along one stream.
    if (!c.last_fragment_id.empty()
        && strcmp(fragment_id, c.last_fragment_id.c_str()) <= 0)
    {
        results_.count("fragments_out_of_order");
    }
    c.last_fragment_id = fragment_id;

    if (strcmp(sender, "assistant") != 0) {
        results_.count("user_fragments");
        return;
    }

    sent_ns = uuid7_unix_ns(fragment_id);
    if (sent_ns >= 0) {
        int64_t read_ns = wall_ns();
        int64_t age_us = (read_ns - sent_ns) / kNsPerUs;

        results_.record("fragment_age", age_us);

        if (fragment_log_ != nullptr) {
            fprintf(fragment_log_, "%lld %lld %zu %d\n",
                    (long long) read_ns,
                    (long long) age_us, ctx_.first + i, is_final ? 1 : 0);
        }

        // Apart: while every conversation of this process streams, once
        // the set-up of all (POSTs, Stream invocations, replays) and
        // before the end of any (the reply's final write, the cancel,
        // the REST connection's close) competes with the fragments for
        // the cores: the steady state.
        if (streaming_ == convs_.size() && ended_ == 0) {
            results_.record("fragment_age_streaming", age_us);
        }
    }

    c.text += text;
    on_assistant_fragment(c, now_ns);

    if (is_final) {
        end_conversation(i, true, "");
    }
}


void
ChatScenario::on_assistant_fragment(Conversation &c, int64_t now_ns)
{
    int64_t  gap, nominal_at;

    results_.count("assistant_fragments");

    if (c.assistant_fragments == 0) {
        streaming_++;
        c.first_ns = now_ns;
        results_.record("ttff", (now_ns - c.post_ns) / kNsPerUs);
        results_.record("ttff_stream", (now_ns - c.stream_ns) / kNsPerUs);
    } else {
        gap = now_ns - c.last_ns;
        results_.record("gap", gap / kNsPerUs);
        results_.record("gap_excess", (gap - nominal_ns_) / kNsPerUs);
        if (gap < nominal_ns_) {
            results_.count("gaps_below_nominal");
        }

        nominal_at = c.first_ns
                     + int64_t(c.assistant_fragments) * nominal_ns_;
        results_.record("schedule_lateness",
                        (now_ns - nominal_at) / kNsPerUs);
        if (now_ns < nominal_at) {
            results_.count("fragments_ahead_of_schedule");
        }
    }

    c.assistant_fragments++;
    c.last_ns = now_ns;
}


void
ChatScenario::end_conversation(size_t i, bool ok, const std::string &error)
{
    Conversation  &c = convs_[i];
    sr_message_t   cancel;

    if (c.phase == Conversation::Phase::kDone
        || c.phase == Conversation::Phase::kFailed)
    {
        return;
    }

    if (c.phase == Conversation::Phase::kStreaming
        && hub(i).state() == HubConnection::State::kReady)
    {
        // The stream follows the conversation forever: end it.
        sr_message_init(&cancel, SR_MSG_CANCEL_INVOCATION);
        cancel.invocation_id = strdup(kStreamId);
        hub(i).send(cancel);
        sr_message_clear(&cancel);
    }

    if (ok) {
        c.phase = Conversation::Phase::kDone;
        last_final_ns_ = monotonic_ns();
        results_.count("conversations_completed");
        results_.record("reply", (last_final_ns_ - c.post_ns) / kNsPerUs);

        // The demo provider is deterministic: one prompt, one reply.
        if (!first_text_) {
            first_text_ = c.text;
        } else if (*first_text_ != c.text) {
            results_.count("replies_differing");
        }
    } else {
        c.phase = Conversation::Phase::kFailed;
        results_.count("conversations_failed");
        results_.error(error);
    }

    c.rest->close();
    running_--;
    ended_++;
    maybe_finish();
}


void
ChatScenario::on_lost(HubConnection &hub, const std::string &reason)
{
    results_.count("connections_lost");

    if (convs_[hub.index()].phase == Conversation::Phase::kIdle) {
        results_.error(reason);
        return;
    }

    end_conversation(hub.index(), false, reason);
}


void
ChatScenario::maybe_finish()
{
    if (running_ == 0 && start_ns_ != 0) {
        end_measurement((last_final_ns_ ? last_final_ns_ : monotonic_ns())
                        - start_ns_);
    }
}


ChatScenario::~ChatScenario()
{
    if (fragment_log_ != nullptr) {
        fclose(fragment_log_);
    }
}


void
ChatScenario::stop()
{
    for (auto &c : convs_) {
        if (c.phase == Conversation::Phase::kPosting
            || c.phase == Conversation::Phase::kStreaming)
        {
            results_.count("conversations_unfinished");
        }
    }

    // the process may end without running destructors
    if (fragment_log_ != nullptr) {
        fclose(fragment_log_);
        fragment_log_ = nullptr;
    }

    end_measurement(monotonic_ns() - start_ns_);
}

}  // namespace


std::unique_ptr<Scenario>
make_chat_scenario(WorkerContext &ctx)
{
    return std::make_unique<ChatScenario>(ctx);
}

}  // namespace bench
