#include "backlog_batcher.h"

#include <string_view>

namespace signalrd {

namespace {

// KEYS: the lease and cancel keys of every entry in turn, then every entry's backlog.
// ARGV: the max length, then for each entry its lease value, message id, sender, text,
// last fragment id, parts, channel and payload. Answers one string an entry: "again"
// (the lease is not that reply's: nothing written), or "<entry id> 0", "<entry id> 1"
// (stored and published; 1: a cancel of the reply was asked for). Why the lease alone
// is enough, and what the full script does besides: conversation_store.cpp.
const char *const batched_text = R"lua(
local n = #KEYS / 3
local held = redis.call('MGET', unpack(KEYS, 1, 2 * n))
local out = {}
for i = 1, n do
  local a = (i - 1) * 8 + 1
  if held[2 * i - 1] ~= ARGV[a + 1] then
    out[i] = 'again'
  else
    local eid = redis.call('XADD', KEYS[2 * n + i], 'MAXLEN', '~', ARGV[1], '*',
                           'id', ARGV[a + 2], 'sender', ARGV[a + 3], 'text', ARGV[a + 4],
                           'fragmentId', ARGV[a + 5], 'isFinal', '0', 'parts', ARGV[a + 6])
    redis.call('PUBLISH', ARGV[a + 7], eid .. ' ' .. ARGV[a + 8])
    if held[2 * i] == ARGV[a + 2] then out[i] = eid .. ' 1' else out[i] = eid .. ' 0' end
  end
end
return out
)lua";

const RedisScript &batched_script()
{
    static const RedisScript script(batched_text);
    return script;
}

// One entry's answer into its outcome.
BacklogBatcher::Outcome read_answer(const RedisValue &answer)
{
    if (!answer.is_string()) {
        return Status::internal("redis: the batched backlog write answered no string");
    }
    if (answer.str == "again") {
        return std::optional<AppendResult>();
    }
    size_t space = answer.str.rfind(' ');
    if (space == std::string::npos || space == 0) {
        return Status::internal("redis: bad answer from the batched backlog write");
    }
    AppendResult r{answer.str.substr(0, space), answer.str.compare(space + 1, 1, "1") == 0};
    return std::optional<AppendResult>(std::move(r));
}

}  // namespace

// An append waiting for its call's answer; completed exactly once.
struct BacklogBatcher::Waiter {
    virtual ~Waiter() = default;
    virtual void complete(Outcome outcome) = 0;
};

namespace {

template <typename Handler>
struct HandlerWaiter final : BacklogBatcher::Waiter {
    explicit HandlerWaiter(Handler h) : handler(std::move(h)) {}

    void complete(BacklogBatcher::Outcome outcome) override
    {
        auto ex = asio::get_associated_executor(handler);
        asio::post(ex, [h = std::move(handler), o = std::move(outcome)]() mutable {
            std::move(h)(std::move(o));
        });
    }

    Handler handler;
};

}  // namespace

BacklogBatcher::BacklogBatcher(RedisClient &redis, std::string_view backlog_max_len)
    : redis_(redis), backlog_max_len_(backlog_max_len), alive_(std::make_shared<bool>(true))
{
    redis_.preload(batched_script());
}

BacklogBatcher::~BacklogBatcher()
{
    *alive_ = false;
    for (Call &c : pending_) {
        for (auto &w : c.waiters) {
            w->complete(Status::unavailable("the backlog writer stopped"));
        }
    }
}

asio::awaitable<BacklogBatcher::Outcome> BacklogBatcher::append(EntryRef entry)
{
    auto executor = co_await asio::this_coro::executor;

    // the initiation runs before this coroutine suspends, so entry's views are still good
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Outcome)>(
        [this, executor, &entry](auto handler) {
            using Handler = decltype(handler);
            const EntryRef &e = entry;

            if (pending_.empty() || pending_.back().waiters.size() >= max_entries) {
                pending_.emplace_back();
            }
            Call &c = pending_.back();
            append_resp_bulk_parts(c.leases, {e.conversation_key, ":reply"});
            append_resp_bulk_parts(c.leases, {e.conversation_key, ":cancel"});
            append_resp_bulk_parts(c.backlogs, {e.conversation_key, ":backlog"});
            append_resp_bulk_parts(c.args, {e.lease});
            append_resp_bulk_parts(c.args, {e.message_id});
            append_resp_bulk_parts(c.args, {e.sender});
            append_resp_bulk_parts(c.args, {e.text});
            append_resp_bulk_parts(c.args, {e.fragment_id});
            append_resp_bulk_parts(c.args, {e.parts});
            append_resp_bulk_parts(c.args, {e.conversation_key, ":channel"});
            append_resp_bulk_parts(c.args, {e.payload});
            c.waiters.push_back(std::make_unique<HandlerWaiter<Handler>>(std::move(handler)));

            if (!flush_posted_) {
                flush_posted_ = true;
                asio::post(executor, [this, alive = alive_] {
                    if (*alive) {
                        flush();
                    }
                });
            }
        },
        asio::use_awaitable);
}

void BacklogBatcher::flush()
{
    std::vector<Call> calls = std::move(pending_);
    auto executor = redis_.executor();

    pending_.clear();
    flush_posted_ = false;
    for (Call &c : calls) {
        spawn_detached(executor, send(std::move(c)), "batched backlog write");
    }
}

asio::awaitable<void> BacklogBatcher::send(Call call)
{
    const size_t n = call.waiters.size();
    std::string args = std::move(call.leases);

    args += call.backlogs;
    append_resp_bulk_parts(args, {backlog_max_len_});
    args += call.args;

    Result<RedisValue> r = co_await redis_.eval_resp(batched_script(), n * 3, n * 3 + 1 + n * 8,
                                                     args);
    for (size_t i = 0; i < n; i++) {
        if (!r.is_ok()) {
            call.waiters[i]->complete(r.status());
        } else if (!r->is_array() || r->elements.size() != n) {
            call.waiters[i]->complete(Status::internal("redis: the batched backlog write "
                                                       "answered another number of entries"));
        } else {
            call.waiters[i]->complete(read_answer(r->elements[i]));
        }
    }
}

}  // namespace signalrd
