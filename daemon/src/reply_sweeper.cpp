#include "reply_sweeper.h"

namespace signalrd {

namespace {

// Replies looked at per pass; the rest wait for the next one.
constexpr size_t sweep_batch = 100;

}  // namespace

ReplySweeper::ReplySweeper(asio::any_io_executor executor, ConversationStore &store,
                           ReplyRunner &runner, RedisClient &redis)
    : executor_(executor), store_(store), runner_(runner), redis_(redis), timer_(executor)
{
}

void ReplySweeper::start()
{
    alive_ = std::make_shared<bool>(true);
    spawn_detached(executor_, loop(alive_), "reply sweeper");
}

void ReplySweeper::stop()
{
    if (alive_) {
        *alive_ = false;
        alive_.reset();
    }
    timer_.cancel();
}

void ReplySweeper::on_redis_up()
{
    up_since_ = std::chrono::steady_clock::now();
    own_pass_due_ = true;
    timer_.cancel();
}

asio::awaitable<void> ReplySweeper::loop(std::shared_ptr<bool> alive)
{
    while (*alive) {
        if (redis_.connected()) {
            if (own_pass_due_) {
                own_pass_due_ = false;
                co_await sweep(true);
            } else if (std::chrono::steady_clock::now() - up_since_ >= grace_after_reconnect) {
                co_await sweep(false);
            }
        }
        if (!*alive) {
            break;
        }
        timer_.expires_after(period);
        co_await timer_.async_wait(use_nothrow);
    }
}

asio::awaitable<void> ReplySweeper::sweep(bool own_only)
{
    Result<std::vector<ListedReply>> listed =
        co_await store_.listed_replies(own_only ? 0 : unix_now_ms(), own_only ? 1000 : sweep_batch);
    if (!listed.is_ok()) {
        if (own_only) {
            own_pass_due_ = true;
        }
        co_return;
    }
    for (const ListedReply &reply : *listed) {
        if (!runner_.running(reply.conversation_id)) {
            co_await check(reply, own_only);
        }
    }
}

asio::awaitable<void> ReplySweeper::check(const ListedReply &reply, bool own_only)
{
    Result<ConversationSnapshot> snapshot = co_await store_.load(reply.conversation_id);
    if (!snapshot.is_ok()) {
        co_return;
    }
    bool ended = std::any_of(snapshot->messages.begin(), snapshot->messages.end(),
                             [&](const StoredMessage &m) { return m.id == reply.reply_id; });
    if (!snapshot->exists || reply.reply_id.empty() || ended) {
        co_await store_.unlist_reply(reply);
        co_return;
    }
    if (own_only ? !snapshot->lease_is_ours
                 : snapshot->reply_running && !snapshot->lease_is_ours) {
        co_return;   // a live instance holds it
    }

    Status s = co_await runner_.recover(*snapshot, reply.reply_id);
    if (!s.is_ok()) {
        log_warn("ending the unfinished reply %s of conversation %s failed: %s",
                 reply.reply_id.c_str(), reply.conversation_id.c_str(), s.message().c_str());
        co_return;
    }
    ended_++;
}

}  // namespace signalrd
