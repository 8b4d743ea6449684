#include "conversation_store.h"

#include "uuid.h"

namespace signalrd {

namespace {

// Bounds a backlog should a reply run away; far above any reply the providers make.
const char *const backlog_max_len = "100000";

// KEYS: conversation, messages, backlog, lease. ARGV: owner, lease value, lease ms,
// message record (parent unset), message id, text, fragment id. The parent is read here,
// inside the script, so that a reply finishing meanwhile cannot leave it stale.
const char *const add_turn_script = R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return {'missing'} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'busy'} end
local parent = ''
local last = redis.call('LINDEX', KEYS[2], -1)
if last then parent = cjson.decode(last)['id'] end
local msg = cjson.decode(ARGV[4])
if parent ~= '' then msg['parentMessageId'] = parent end
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
redis.call('RPUSH', KEYS[2], cjson.encode(msg))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[5], 'sender', 'user',
           'text', ARGV[6], 'fragmentId', ARGV[7], 'isFinal', '1')
redis.call('PERSIST', KEYS[3])
return {'ok', parent}
)lua";

// KEYS: conversation, backlog. ARGV: max length, then five fields (id, sender, text,
// fragmentId, isFinal) per fragment, in order. A conversation deleted mid-reply must
// not get its backlog back.
const char *const append_script = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 5 do
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'id', ARGV[i],
               'sender', ARGV[i + 1], 'text', ARGV[i + 2], 'fragmentId', ARGV[i + 3],
               'isFinal', ARGV[i + 4])
end
return 1
)lua";

// KEYS: conversation, messages, backlog, lease. ARGV: the final fragment's five fields,
// max length, message record, backlog ttl, lease value.
const char *const complete_script = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[1], 'sender', ARGV[2],
           'text', ARGV[3], 'fragmentId', ARGV[4], 'isFinal', ARGV[5])
redis.call('RPUSH', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[8])
if redis.call('GET', KEYS[4]) == ARGV[9] then redis.call('DEL', KEYS[4]) end
return 1
)lua";

// KEYS: lease. ARGV: value, ms, instance prefix ("<instance> ") of a lease we may take over.
const char *const claim_script = R"lua(
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[3])) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua";

// KEYS: lease. ARGV: value, ms.
const char *const renew_script = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
)lua";

std::string lease_ms()
{
    return std::to_string(reply_lease_duration.count());
}

const RedisValue *field(const RedisValue &flat_pairs, const std::string &name)
{
    for (size_t i = 0; i + 1 < flat_pairs.elements.size(); i += 2) {
        if (flat_pairs.elements[i].str == name) {
            return &flat_pairs.elements[i + 1];
        }
    }
    return nullptr;
}

// Fills the hash fields of a conversation from an HGETALL reply.
void read_header(const RedisValue &hash, ConversationSnapshot &s)
{
    const RedisValue *owner = field(hash, "owner");
    const RedisValue *name = field(hash, "name");
    const RedisValue *created = field(hash, "createdMs");

    s.exists = owner != nullptr;
    s.owner = owner ? owner->str : "";
    s.name = name ? name->str : "";
    s.created_ms = created ? std::strtoll(created->str.c_str(), nullptr, 10) : 0;
}

Status read_messages(const RedisValue &list, std::vector<StoredMessage> &out)
{
    for (const RedisValue &record : list.elements) {
        Result<StoredMessage> m = message_from_record(record.str);
        if (!m.is_ok()) {
            return m.status();
        }
        out.push_back(std::move(*m));
    }
    return Status::ok();
}

void read_backlog(const RedisValue &entries, std::vector<Fragment> &out)
{
    for (const RedisValue &entry : entries.elements) {
        if (entry.elements.size() != 2) {
            continue;
        }
        const RedisValue &fields = entry.elements[1];
        const RedisValue *id = field(fields, "id");
        const RedisValue *sender = field(fields, "sender");
        const RedisValue *text = field(fields, "text");
        const RedisValue *fid = field(fields, "fragmentId");
        const RedisValue *fin = field(fields, "isFinal");
        if (!id || !sender || !text || !fid || !fin) {
            continue;
        }
        out.push_back({id->str, sender->str, text->str, fid->str, fin->str == "1"});
    }
}

RedisArgs fragment_args(const Fragment &f)
{
    return {f.message_id, f.sender, f.text, f.fragment_id, f.is_final ? "1" : "0"};
}

std::vector<ChatTurn> turns_of(const std::vector<StoredMessage> &messages)
{
    std::vector<ChatTurn> turns;
    for (const StoredMessage &m : messages) {
        turns.push_back({m.role, m.text});
    }
    return turns;
}

}  // namespace

ConversationStore::ConversationStore(RedisClient &redis, std::string prefix, std::string instance,
                                     uint32_t history_messages, uint32_t backlog_ttl)
    : redis_(redis),
      prefix_(std::move(prefix)),
      instance_(std::move(instance)),
      history_messages_(history_messages),
      backlog_ttl_(backlog_ttl)
{
}

std::string ConversationStore::conversation_key(const std::string &id) const
{
    return prefix_ + ":conversation:{" + id + "}";
}

std::string ConversationStore::messages_key(const std::string &id) const
{
    return conversation_key(id) + ":messages";
}

std::string ConversationStore::backlog_key(const std::string &id) const
{
    return conversation_key(id) + ":backlog";
}

std::string ConversationStore::lease_key(const std::string &id) const
{
    return conversation_key(id) + ":reply";
}

std::string ConversationStore::user_key(const std::string &owner) const
{
    return prefix_ + ":user:" + owner + ":conversations";
}

std::string ConversationStore::lease_value(const std::string &reply_id) const
{
    return instance_ + " " + reply_id;
}

asio::awaitable<Result<NewTurn>> ConversationStore::create(const std::string &owner,
                                                           const std::string &text)
{
    NewTurn turn;
    int64_t now = unix_now_ms();

    turn.conversation_id = new_uuid_v7();
    turn.user_message = {new_uuid_v7(), sender_user, text, "", now, {}};
    turn.user_fragment = {turn.user_message.id, sender_user, text, new_uuid_v7(), true};
    turn.user_message.fragments.emplace_back(turn.user_fragment.fragment_id, text.size());
    turn.reply_id = new_uuid_v7();
    turn.history = {{sender_user, text}};

    const std::string &id = turn.conversation_id;
    RedisArgs xadd = {"XADD", backlog_key(id), "MAXLEN", "~", backlog_max_len, "*",
                      "id", turn.user_fragment.message_id, "sender", sender_user,
                      "text", text, "fragmentId", turn.user_fragment.fragment_id,
                      "isFinal", "1"};
    std::vector<RedisArgs> commands = {
        {"HSET", conversation_key(id), "owner", owner, "name", conversation_name(text),
         "createdAt", format_timestamp(now), "createdMs", std::to_string(now)},
        {"ZADD", user_key(owner), std::to_string(now), id},
        {"RPUSH", messages_key(id), message_to_record(turn.user_message)},
        xadd,
        {"SET", lease_key(id), lease_value(turn.reply_id), "PX", lease_ms()},
    };
    Result<RedisValue> r = co_await redis_.transaction(std::move(commands));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return turn;
}

asio::awaitable<Result<NewTurn>> ConversationStore::add_turn(const std::string &id,
                                                             const std::string &owner,
                                                             const std::string &text)
{
    NewTurn turn;

    turn.conversation_id = id;
    turn.user_message = {new_uuid_v7(), sender_user, text, "", unix_now_ms(), {}};
    turn.user_fragment = {turn.user_message.id, sender_user, text, new_uuid_v7(), true};
    turn.user_message.fragments.emplace_back(turn.user_fragment.fragment_id, text.size());
    turn.reply_id = new_uuid_v7();

    RedisArgs command = {"EVAL", add_turn_script, "4",
                         conversation_key(id), messages_key(id), backlog_key(id), lease_key(id),
                         owner, lease_value(turn.reply_id), lease_ms(),
                         message_to_record(turn.user_message), turn.user_message.id, text,
                         turn.user_fragment.fragment_id, backlog_max_len};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (r->elements.empty() || r->elements[0].str == "missing") {
        co_return Status::not_found("conversation not found");
    }
    if (r->elements[0].str == "busy") {
        co_return Status::conflict("a reply is already being generated");
    }
    if (r->elements.size() > 1) {
        turn.user_message.parent_id = r->elements[1].str;
    }

    Result<std::vector<ChatTurn>> h = co_await history(id);
    if (!h.is_ok()) {
        co_return h.status();
    }
    turn.history = std::move(*h);
    co_return turn;
}

asio::awaitable<Result<ConversationSnapshot>> ConversationStore::load(const std::string &id)
{
    ConversationSnapshot s;

    std::vector<RedisArgs> commands = {
        {"HGETALL", conversation_key(id)},
        {"LRANGE", messages_key(id), "0", "-1"},
        {"XRANGE", backlog_key(id), "-", "+"},
        {"GET", lease_key(id)},
    };
    Result<RedisValue> r = co_await redis_.transaction(std::move(commands));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (r->elements.size() != 4) {
        co_return Status::internal("unexpected transaction reply");
    }

    s.id = id;
    read_header(r->elements[0], s);
    if (!s.exists) {
        co_return s;
    }
    Status st = read_messages(r->elements[1], s.messages);
    if (!st.is_ok()) {
        co_return st;
    }
    read_backlog(r->elements[2], s.backlog);
    const RedisValue &lease = r->elements[3];
    s.reply_running = lease.is_string();
    s.lease_is_ours = lease.is_string() && lease.str.rfind(instance_ + " ", 0) == 0;
    co_return s;
}

asio::awaitable<Result<std::vector<ConversationSnapshot>>> ConversationStore::list(
    const std::string &owner, bool with_messages)
{
    std::vector<ConversationSnapshot> out;

    // the newest thousand: a bound on one answer, not on what a user may keep
    RedisArgs command = {"ZRANGE", user_key(owner), "-1000", "-1"};
    Result<RedisValue> ids = co_await redis_.command(std::move(command));
    if (!ids.is_ok()) {
        co_return ids.status();
    }
    if (ids->elements.empty()) {
        co_return out;
    }

    std::vector<RedisArgs> reads;
    for (const RedisValue &id : ids->elements) {
        reads.push_back({"HGETALL", conversation_key(id.str)});
        if (with_messages) {
            reads.push_back({"LRANGE", messages_key(id.str), "0", "-1"});
        }
    }
    Result<RedisValue> r = co_await redis_.transaction(std::move(reads));
    if (!r.is_ok()) {
        co_return r.status();
    }

    size_t step = with_messages ? 2 : 1;
    for (size_t i = 0; i < ids->elements.size() && i * step < r->elements.size(); i++) {
        ConversationSnapshot s;
        s.id = ids->elements[i].str;
        read_header(r->elements[i * step], s);
        if (!s.exists || s.owner != owner) {
            continue;
        }
        if (with_messages) {
            Status st = read_messages(r->elements[i * step + 1], s.messages);
            if (!st.is_ok()) {
                co_return st;
            }
        }
        out.push_back(std::move(s));
    }
    co_return out;
}

asio::awaitable<Status> ConversationStore::remove(const std::string &id, const std::string &owner)
{
    RedisArgs command = {"HGET", conversation_key(id), "owner"};
    Result<RedisValue> o = co_await redis_.command(std::move(command));
    if (!o.is_ok()) {
        co_return o.status();
    }
    if (!o->is_string() || o->str != owner) {
        co_return Status::not_found("conversation not found");
    }

    std::vector<RedisArgs> commands = {
        {"DEL", conversation_key(id), messages_key(id), backlog_key(id), lease_key(id)},
        {"ZREM", user_key(owner), id},
    };
    Result<RedisValue> r = co_await redis_.transaction(std::move(commands));
    co_return r.is_ok() ? Status::ok() : r.status();
}

asio::awaitable<Status> ConversationStore::append_fragment(const std::string &id,
                                                           const Fragment &f)
{
    std::vector<Fragment> one(1, f);
    co_return co_await append_fragments(id, one);
}

asio::awaitable<Status> ConversationStore::append_fragments(const std::string &id,
                                                            const std::vector<Fragment> &fs)
{
    RedisArgs args = {"EVAL", append_script, "2", conversation_key(id), backlog_key(id),
                      backlog_max_len};
    for (const Fragment &f : fs) {
        for (std::string &a : fragment_args(f)) {
            args.push_back(std::move(a));
        }
    }

    Result<RedisValue> r = co_await redis_.command(std::move(args));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1 ? Status::ok() : Status::not_found("conversation not found");
}

asio::awaitable<Status> ConversationStore::complete_reply(const std::string &id,
                                                          const StoredMessage &message,
                                                          const Fragment &final_fragment)
{
    RedisArgs args = {"EVAL", complete_script, "4", conversation_key(id), messages_key(id),
                      backlog_key(id), lease_key(id)};
    for (std::string &a : fragment_args(final_fragment)) {
        args.push_back(std::move(a));
    }
    args.push_back(backlog_max_len);
    args.push_back(message_to_record(message));
    args.push_back(std::to_string(backlog_ttl_));
    args.push_back(lease_value(message.id));

    Result<RedisValue> r = co_await redis_.command(std::move(args));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1 ? Status::ok() : Status::not_found("conversation not found");
}

asio::awaitable<Status> ConversationStore::renew_lease(const std::string &id,
                                                       const std::string &reply_id)
{
    RedisArgs command = {"EVAL", renew_script, "1", lease_key(id), lease_value(reply_id),
                         lease_ms()};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1 ? Status::ok() : Status::not_found("reply lease lost");
}

asio::awaitable<Status> ConversationStore::claim_lease(const std::string &id,
                                                       const std::string &reply_id)
{
    RedisArgs command = {"EVAL", claim_script, "1", lease_key(id), lease_value(reply_id),
                         lease_ms(), instance_ + " "};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1 ? Status::ok()
                              : Status::conflict("a reply is already being generated");
}

asio::awaitable<Result<std::vector<ChatTurn>>> ConversationStore::history(const std::string &id)
{
    std::string from = "-" + std::to_string(history_messages_);
    RedisArgs command = {"LRANGE", messages_key(id), from, "-1"};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }

    std::vector<StoredMessage> messages;
    Status st = read_messages(*r, messages);
    if (!st.is_ok()) {
        co_return st;
    }
    co_return turns_of(messages);
}

}  // namespace signalrd
