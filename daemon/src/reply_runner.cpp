#include "reply_runner.h"

#include "uuid.h"

namespace signalrd {

struct ReplyRunner::Reply {
    Reply(asio::any_io_executor ex, std::string conv, std::string id, std::string parent,
          int64_t created)
        : conversation_id(std::move(conv)),
          reply_id(std::move(id)),
          parent_id(std::move(parent)),
          created_ms(created),
          control(ex),
          lease_timer(ex),
          flushed(ex)
    {
    }

    std::string conversation_id;
    std::string reply_id;
    std::string parent_id;
    int64_t created_ms;
    ReplyControl control;
    asio::steady_timer lease_timer;
    std::string text;                                   // what was published so far
    std::vector<std::pair<std::string, size_t>> fragments;
    std::optional<std::string> held;                    // the token not yet published
    std::vector<Fragment> queued;                       // waiting for their write
    bool flushing = false;                              // a flush() runs
    asio::steady_timer flushed;                         // cancelled when a flush() ends
    Status write_error;                                 // the first failed write
    size_t emitted = 0;                                 // tokens given to emit()
    bool interrupted = false;                           // cancelled by a shutdown
    bool done = false;
};

ReplyRunner::ReplyRunner(asio::any_io_executor executor, ConversationStore &store,
                         FragmentBus &bus, Provider &provider)
    : executor_(executor), store_(store), bus_(bus), provider_(provider)
{
}

void ReplyRunner::start(const NewTurn &turn)
{
    auto reply = std::make_shared<Reply>(executor_, turn.conversation_id, turn.reply_id,
                                         turn.user_message.id, unix_now_ms());
    ConversationEvent user_turn{ConversationEvent::Kind::fragment, turn.user_fragment};

    replies_[turn.conversation_id] = reply;
    bus_.publish(turn.conversation_id, user_turn);

    ReplyRequest request{turn.conversation_id, turn.history};
    spawn_detached(executor_, run(reply, std::move(request)), "reply");
    spawn_detached(executor_, keep_lease(reply), "reply lease");
}

bool ReplyRunner::cancel(const std::string &conversation_id)
{
    auto it = replies_.find(conversation_id);
    if (it == replies_.end()) {
        return false;
    }
    it->second->control.cancel();
    return true;
}

bool ReplyRunner::running(const std::string &conversation_id) const
{
    return replies_.count(conversation_id) != 0;
}

void ReplyRunner::shutdown()
{
    for (auto &[id, reply] : replies_) {
        reply->interrupted = true;
        reply->control.cancel();
    }
}

asio::awaitable<void> ReplyRunner::run(std::shared_ptr<Reply> reply, ReplyRequest request)
{
    TokenSink sink = [this, reply](std::string token) -> asio::awaitable<Status> {
        if (live_tokens_) {
            co_return emit(reply, std::move(token));
        }
        if (reply->held) {
            Status s = emit(reply, std::move(*reply->held));
            if (!s.is_ok()) {
                co_return s;
            }
        }
        reply->held = std::move(token);
        co_return Status::ok();
    };

    Status status = co_await provider_.generate(request, reply->control, sink);
    co_await drain(*reply);
    if (status.is_ok() && !reply->write_error.is_ok()) {
        status = reply->write_error;
    }

    // a held token was never shown: on cancel or failure it is simply dropped
    std::string final_text;
    bool produced = reply->held || (live_tokens_ && reply->emitted > 0);
    if (reply->control.cancelled()) {
        final_text = reply->interrupted ? interrupted_text : cancelled_text;
    } else if (!status.is_ok() || !produced) {
        if (status.code() != StatusCode::not_found) {
            log_warn("reply %s in conversation %s failed: %s", reply->reply_id.c_str(),
                     reply->conversation_id.c_str(),
                     status.is_ok() ? "the model sent no text" : status.message().c_str());
        }
        final_text = failed_text;
    } else if (reply->held) {
        final_text = std::move(*reply->held);
    }

    co_await finish(*reply, std::move(final_text));
}

asio::awaitable<void> ReplyRunner::keep_lease(std::shared_ptr<Reply> reply)
{
    while (!reply->done) {
        reply->lease_timer.expires_after(reply_lease_duration / 3);
        co_await reply->lease_timer.async_wait(use_nothrow);
        if (reply->done) {
            break;
        }
        Status s = co_await store_.renew_lease(reply->conversation_id, reply->reply_id);
        if (!s.is_ok() && s.code() != StatusCode::unavailable) {
            log_warn("reply %s lost its lease: %s", reply->reply_id.c_str(), s.message().c_str());
            reply->control.cancel();
        }
    }
}

Status ReplyRunner::emit(const std::shared_ptr<Reply> &reply, std::string text)
{
    if (!reply->write_error.is_ok()) {
        return reply->write_error;
    }
    reply->emitted++;
    reply->queued.push_back(
        Fragment{reply->reply_id, sender_assistant, std::move(text), new_uuid_v7(), false});
    if (!reply->flushing) {
        reply->flushing = true;
        spawn_detached(executor_, flush(reply), "backlog write");
    }
    return Status::ok();
}

asio::awaitable<void> ReplyRunner::flush(std::shared_ptr<Reply> reply)
{
    if (batching_.max_delay.count() > 0) {
        asio::steady_timer linger(executor_, batching_.max_delay);
        co_await linger.async_wait(use_nothrow);
    }

    while (!reply->queued.empty() && reply->write_error.is_ok()) {
        size_t n = std::min<size_t>(reply->queued.size(), std::max(1u, batching_.max_fragments));
        std::vector<Fragment> batch(std::make_move_iterator(reply->queued.begin()),
                                    std::make_move_iterator(reply->queued.begin() + n));
        reply->queued.erase(reply->queued.begin(), reply->queued.begin() + n);

        Status s = co_await store_.append_fragments(reply->conversation_id, batch);
        if (!s.is_ok()) {
            // nothing of this batch or after it was shown; the reply ends as failed
            reply->write_error = s;
            reply->queued.clear();
            break;
        }
        for (Fragment &f : batch) {
            reply->text += f.text;
            reply->fragments.emplace_back(f.fragment_id, reply->text.size());
            bus_.publish(reply->conversation_id, {ConversationEvent::Kind::fragment, f});
        }
    }
    reply->flushing = false;
    reply->flushed.cancel();
}

asio::awaitable<void> ReplyRunner::drain(Reply &reply)
{
    while (reply.flushing) {
        reply.flushed.expires_after(std::chrono::seconds(1));
        co_await reply.flushed.async_wait(use_nothrow);
    }
}

asio::awaitable<void> ReplyRunner::finish(Reply &reply, std::string final_text)
{
    Fragment f{reply.reply_id, sender_assistant, std::move(final_text), new_uuid_v7(), true};
    StoredMessage m{reply.reply_id, sender_assistant, reply.text + f.text, reply.parent_id,
                    reply.created_ms, reply.fragments};

    m.fragments.emplace_back(f.fragment_id, m.text.size());
    Status s = co_await store_.complete_reply(reply.conversation_id, m, f);
    if (!s.is_ok() && s.code() != StatusCode::not_found) {
        log_warn("storing the end of reply %s failed: %s", reply.reply_id.c_str(),
                 s.message().c_str());
    }

    // published even when it could not be stored, so that live streams see the end
    bus_.publish(reply.conversation_id, {ConversationEvent::Kind::fragment, f});

    reply.done = true;
    reply.lease_timer.cancel();
    auto it = replies_.find(reply.conversation_id);
    if (it != replies_.end() && it->second.get() == &reply) {
        replies_.erase(it);
    }
}

bool ReplyRunner::abandoned(const ConversationSnapshot &snapshot) const
{
    if (running(snapshot.id) || unfinished_fragments(snapshot).empty()) {
        return false;
    }
    return !snapshot.reply_running || snapshot.lease_is_ours;
}

asio::awaitable<Status> ReplyRunner::recover(const ConversationSnapshot &snapshot)
{
    if (!abandoned(snapshot)) {
        co_return Status::ok();
    }
    std::vector<Fragment> unfinished = unfinished_fragments(snapshot);

    const std::string reply_id = unfinished.front().message_id;
    Status s = co_await store_.claim_lease(snapshot.id, reply_id);
    if (!s.is_ok()) {
        co_return s.code() == StatusCode::conflict ? Status::ok() : s;
    }

    std::string parent = snapshot.messages.empty() ? "" : snapshot.messages.back().id;
    int64_t created = static_cast<int64_t>(uuid_v7_time(reply_id).value_or(unix_now_ms()));
    Reply reply(executor_, snapshot.id, reply_id, parent, created);
    for (const Fragment &f : unfinished) {
        if (f.message_id == reply_id) {
            reply.text += f.text;
            reply.fragments.emplace_back(f.fragment_id, reply.text.size());
        }
    }

    log_info("ending reply %s of conversation %s, left unfinished", reply_id.c_str(),
             snapshot.id.c_str());
    co_await finish(reply, interrupted_text);
    co_return Status::ok();
}

}  // namespace signalrd
