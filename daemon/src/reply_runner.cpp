#include "reply_runner.h"

#include <algorithm>
#include <deque>
#include <iterator>

#include "uuid.h"

namespace signalrd {

namespace {

// While shutting down, a write Redis cannot take is given up after this many tries.
constexpr int stopping_attempts = 10;

}  // namespace

struct ReplyRunner::Reply {
    Reply(asio::any_io_executor ex, std::string conv, std::string id, std::string parent,
          int64_t created)
        : conversation_id(std::move(conv)),
          reply_id(std::move(id)),
          parent_id(std::move(parent)),
          created_ms(created),
          control(ex),
          lease_timer(ex),
          work(ex),
          room(ex),
          drained(ex),
          pause(ex)
    {
    }

    std::string conversation_id;
    std::string reply_id;
    std::string parent_id;
    int64_t created_ms;
    ReplyControl control;
    asio::steady_timer lease_timer;
    // Timers used as wake-ups on the one loop thread: waits are for "forever" and
    // cancel() wakes them; every waiter checks its condition again after waking.
    asio::steady_timer work;                            // the writer: something queued
    asio::steady_timer room;                            // the sink: the queue has room
    asio::steady_timer drained;                         // finish(): the writer is done
    asio::steady_timer pause;                           // between retries
    std::string text;                                   // what was stored and shown so far
    std::vector<std::pair<std::string, size_t>> fragments;
    std::optional<std::string> held;                    // the token not yet queued
    size_t tokens = 0;                                  // tokens queued, over the reply
    std::deque<Fragment> queued;                        // the hold-back queue
    std::vector<Fragment> writing;                      // the batch being written
    std::optional<Fragment> ending;                     // the final, shown, being stored
    bool writer_running = false;
    bool closing = false;                               // no more tokens: drain and stop
    Status write_failure;                               // why the writer gave up
    bool interrupted = false;                           // cancelled by a shutdown
    bool done = false;

    // Cancels the reply (the provider's hook runs at once) and wakes a sink that waits
    // for room, so that the provider sees the cancel even while Redis is away.
    void stop()
    {
        control.cancel();
        room.cancel();
    }
};

namespace {

asio::awaitable<void> wait_for_wake(asio::steady_timer &timer)
{
    timer.expires_at(asio::steady_timer::time_point::max());
    co_await timer.async_wait(use_nothrow);
}

}  // namespace

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
    reply->writer_running = true;
    spawn_detached(executor_, write_queue(reply), "reply writer");
    spawn_detached(executor_, run(reply, std::move(request)), "reply");
    spawn_detached(executor_, keep_lease(reply), "reply lease");
}

bool ReplyRunner::cancel(const std::string &conversation_id)
{
    auto it = replies_.find(conversation_id);
    if (it == replies_.end()) {
        return false;
    }
    it->second->stop();
    return true;
}

bool ReplyRunner::cancel_reply(const std::string &conversation_id, const std::string &reply_id)
{
    auto it = replies_.find(conversation_id);
    if (it == replies_.end() || it->second->reply_id != reply_id) {
        return false;
    }
    it->second->stop();
    return true;
}

bool ReplyRunner::running(const std::string &conversation_id) const
{
    return replies_.count(conversation_id) != 0;
}

bool ReplyRunner::ending(const std::string &conversation_id) const
{
    auto it = replies_.find(conversation_id);
    return it != replies_.end() && it->second->ending.has_value();
}

std::vector<Fragment> ReplyRunner::unstored(const std::string &conversation_id) const
{
    std::vector<Fragment> out;
    auto it = replies_.find(conversation_id);

    if (it == replies_.end() || store_before_show_) {
        return out;
    }
    const Reply &reply = *it->second;
    out.insert(out.end(), reply.writing.begin(), reply.writing.end());
    out.insert(out.end(), reply.queued.begin(), reply.queued.end());
    if (reply.ending) {
        out.push_back(*reply.ending);
    }
    return out;
}

size_t ReplyRunner::held_back() const
{
    size_t n = 0;
    for (const auto &[id, reply] : replies_) {
        n += reply->queued.size() + reply->writing.size();
    }
    return n;
}

void ReplyRunner::on_redis_up()
{
    for (auto &[id, reply] : replies_) {
        reply->lease_timer.cancel();
        reply->pause.cancel();
    }
}

void ReplyRunner::shutdown()
{
    stopping_ = true;
    for (auto &[id, reply] : replies_) {
        reply->interrupted = true;
        reply->stop();
    }
}

asio::awaitable<void> ReplyRunner::run(std::shared_ptr<Reply> reply, ReplyRequest request)
{
    TokenSink sink = [this, reply](std::string token) -> asio::awaitable<Status> {
        if (!live_tokens_) {
            if (!reply->held) {
                reply->held = std::move(token);
                co_return Status::ok();
            }
            std::swap(*reply->held, token);   // queue the held token, hold this one
        }
        if (must_wait(*reply)) {
            co_await wait_for_room(*reply);
        }
        co_return push(*reply, std::move(token));
    };

    Status status = co_await provider_.generate(request, reply->control, sink);

    // a held token was never shown: on cancel or failure it is simply dropped; with
    // live tokens the final fragment of a finished reply is empty
    std::string final_text;
    bool produced = reply->held || (live_tokens_ && reply->tokens > 0);
    if (reply->control.cancelled()) {
        final_text = reply->interrupted ? interrupted_text : cancelled_text;
    } else if (!status.is_ok() || !produced) {
        if (status.code() != StatusCode::not_found && status.code() != StatusCode::conflict) {
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
        Result<bool> r = co_await store_.renew_lease(reply->conversation_id, reply->reply_id);
        if (r.is_ok() && *r) {
            reply->stop();
        } else if (!r.is_ok() && r.status().code() != StatusCode::unavailable) {
            log_warn("reply %s lost its lease: %s", reply->reply_id.c_str(),
                     r.status().message().c_str());
            reply->stop();
        }
    }
}

// Whether a token must wait for room in the hold-back queue (this is the bound) before
// push() queues it. A token that comes after a cancel is dropped: the reply ends saying
// it was cancelled. Design note: plain functions, with a coroutine only for the wait, as
// the queue mostly has room: a coroutine frame less for every token.
bool ReplyRunner::must_wait(const Reply &reply) const
{
    return reply.queued.size() + reply.writing.size() >= hold_back_limit_ &&
           reply.write_failure.is_ok() && !reply.control.cancelled();
}

asio::awaitable<void> ReplyRunner::wait_for_room(Reply &reply)
{
    while (must_wait(reply)) {
        co_await wait_for_wake(reply.room);
    }
}

Status ReplyRunner::push(Reply &reply, std::string text)
{
    if (!reply.write_failure.is_ok()) {
        return reply.write_failure;
    }
    if (reply.control.cancelled()) {
        return Status::ok();
    }
    reply.tokens++;
    ConversationEvent event{ConversationEvent::Kind::fragment,
                            {reply.reply_id, sender_assistant, std::move(text), new_uuid_v7(),
                             false}};
    if (!store_before_show_) {
        bus_.publish(reply.conversation_id, event);
    }
    reply.queued.push_back(std::move(event.fragment));
    reply.work.cancel();
    return Status::ok();
}

asio::awaitable<void> ReplyRunner::write_queue(std::shared_ptr<Reply> reply)
{
    const size_t max_batch = std::max<size_t>(1, batching_.max_fragments);
    bool idle = true;

    for (;;) {
        if (reply->queued.empty()) {
            if (reply->closing) {
                break;
            }
            idle = true;
            co_await wait_for_wake(reply->work);
            continue;
        }
        if (idle) {
            // tokens that queued behind a write have waited already; only a first one
            // lingers for company
            co_await gather(*reply);
            idle = false;
        }

        // reused: one allocation for the reply, not one a write
        size_t n = std::min(reply->queued.size(), max_batch);
        reply->writing.assign(std::make_move_iterator(reply->queued.begin()),
                              std::make_move_iterator(reply->queued.begin() + n));
        reply->queued.erase(reply->queued.begin(), reply->queued.begin() + n);

        Status s = co_await write_batch(*reply, reply->writing);
        reply->writing.clear();
        reply->room.cancel();
        if (!s.is_ok()) {
            // what is still queued can no longer be stored in order: it is dropped
            reply->write_failure = s;
            reply->queued.clear();
            reply->stop();
            break;
        }
    }
    reply->writer_running = false;
    reply->drained.cancel();
}

// Lets a write wait up to max_delay for more tokens, unless it is full already, the
// hold-back queue is, or the reply is ending.
asio::awaitable<void> ReplyRunner::gather(Reply &reply)
{
    if (batching_.max_delay.count() <= 0) {
        co_return;
    }
    const size_t enough = std::min<size_t>(std::max<uint32_t>(1, batching_.max_fragments),
                                           hold_back_limit_);
    auto deadline = std::chrono::steady_clock::now() + batching_.max_delay;

    while (reply.queued.size() < enough && !reply.closing && !reply.control.cancelled() &&
           std::chrono::steady_clock::now() < deadline) {
        // queue() and finish() cancel the timer; each wake checks again
        reply.work.expires_at(deadline);
        co_await reply.work.async_wait(use_nothrow);
    }
}

// Pauses before another try; false when it is time to give up.
asio::awaitable<bool> ReplyRunner::retry_pause(Reply &reply, int attempt)
{
    if (stopping_ && attempt >= stopping_attempts) {
        co_return false;
    }
    // 50 ms doubling to 1 s; on_redis_up() cuts a pause short
    auto delay = std::chrono::milliseconds(std::min(1000, 50 << std::min(attempt, 5)));
    reply.pause.expires_after(delay);
    co_await reply.pause.async_wait(use_nothrow);
    co_return true;
}

asio::awaitable<Status> ReplyRunner::write_batch(Reply &reply, std::vector<Fragment> &batch)
{
    for (int attempt = 0;; attempt++) {
        // the first send of a batch cannot be a repeat, and it starts the message when
        // nothing of the reply is stored yet
        AppendHints hints{attempt == 0, reply.fragments.empty()};
        Result<AppendResult> r = co_await store_.append_batch(reply.conversation_id, batch,
                                                              hints);
        if (r.is_ok()) {
            // stored: streams that wait for that are shown the batch now, each event
            // taking its fragment, as the batch is not needed again
            ConversationEvent event;
            for (Fragment &f : batch) {
                reply.text += f.text;
                reply.fragments.emplace_back(f.fragment_id, reply.text.size());
                if (store_before_show_) {
                    event.fragment = std::move(f);
                    bus_.publish(reply.conversation_id, event);
                }
            }
            if (r->cancel_requested) {
                reply.stop();
            }
            co_return Status::ok();
        }
        if (r.status().code() != StatusCode::unavailable) {
            co_return r.status();
        }
        if (!co_await retry_pause(reply, attempt)) {
            co_return r.status();
        }
    }
}

asio::awaitable<void> ReplyRunner::finish(Reply &reply, std::string final_text)
{
    reply.closing = true;
    reply.work.cancel();
    while (reply.writer_running) {
        co_await wait_for_wake(reply.drained);
    }

    Fragment f{reply.reply_id, sender_assistant, std::move(final_text), new_uuid_v7(), true};
    StoredMessage m{reply.reply_id, sender_assistant, reply.text + f.text, reply.parent_id,
                    reply.created_ms, reply.fragments};
    m.fragments.emplace_back(f.fragment_id, m.text.size());

    // The final fragment is shown first too, and its write is queued on the Redis
    // connection before this handler returns: whatever a client does once it saw the
    // final (read the chat, post the next turn) reaches Redis behind the write, on the
    // same connection, so it finds the reply ended (see the design note in the header).
    // A reply whose writes failed is left to whoever takes its lease over, which ends it
    // from what Redis holds: no final of its own is shown then.
    Status s = reply.write_failure;
    if (s.is_ok() && !store_before_show_) {
        reply.ending = f;
        bus_.publish(reply.conversation_id, {ConversationEvent::Kind::fragment, f});
    }
    if (s.is_ok()) {
        s = co_await store_end(reply, m, f);
    }
    reply.ending.reset();
    if (s.is_ok() && store_before_show_) {
        bus_.publish(reply.conversation_id, {ConversationEvent::Kind::fragment, f});
    } else if (s.code() == StatusCode::unavailable) {
        // the lease runs out and another instance (or this one, restarted) ends the reply
        log_warn("storing the end of reply %s failed: %s", reply.reply_id.c_str(),
                 s.message().c_str());
    } else if (s.code() == StatusCode::conflict) {
        log_info("reply %s was ended elsewhere: %s", reply.reply_id.c_str(),
                 s.message().c_str());
    }

    reply.done = true;
    reply.lease_timer.cancel();
    auto it = replies_.find(reply.conversation_id);
    if (it != replies_.end() && it->second.get() == &reply) {
        replies_.erase(it);
    }
}

asio::awaitable<Status> ReplyRunner::store_end(Reply &reply, const StoredMessage &m,
                                               const Fragment &f)
{
    for (int attempt = 0;; attempt++) {
        // the final starts its message when nothing of the reply was stored before it
        AppendHints hints{attempt == 0, reply.fragments.empty()};
        Status s = co_await store_.complete_reply(reply.conversation_id, m, f, hints);
        if (s.code() != StatusCode::unavailable || !co_await retry_pause(reply, attempt)) {
            co_return s;
        }
    }
}

bool ReplyRunner::abandoned(const ConversationSnapshot &snapshot) const
{
    if (running(snapshot.id) || unfinished_fragments(snapshot).empty()) {
        return false;
    }
    return !snapshot.reply_running || snapshot.lease_is_ours;
}

asio::awaitable<Status> ReplyRunner::recover(const ConversationSnapshot &snapshot,
                                             const std::string &listed_reply_id)
{
    std::vector<Fragment> unfinished = unfinished_fragments(snapshot);
    const std::string reply_id = unfinished.empty() ? listed_reply_id
                                                    : unfinished.front().message_id;
    bool finished = std::any_of(snapshot.messages.begin(), snapshot.messages.end(),
                                [&](const StoredMessage &m) { return m.id == reply_id; });
    if (reply_id.empty() || finished || running(snapshot.id) ||
        (snapshot.reply_running && !snapshot.lease_is_ours)) {
        co_return Status::ok();
    }

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
