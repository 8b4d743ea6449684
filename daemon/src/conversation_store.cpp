#include "conversation_store.h"

#include <charconv>
#include <cstdlib>

#include "uuid.h"

namespace signalrd {

namespace {

// Bounds a backlog should a reply run away; far above any reply the providers make.
const char *const backlog_max_len = "100000";

// Called right after the first entry of a new message (EID) went into the backlog: notes
// where that message starts and keeps the backlog to the last KEEP messages. The starts
// list holds the first entry id of the newest KEEP messages, so the oldest one kept is
// its head once it is full, and XTRIM MINID drops exactly the older messages' entries;
// nothing need walk the stream. A conversation's first message is not noted (create
// runs no script); it is the oldest anyway, and the list, counted from its tail, still
// names the right start. Exact trimming ('=') so that the bound holds to the message.
#define SIGNALRD_LUA_BOUND_BACKLOG \
    "local function bound_backlog(stream, starts, eid, keep)\n" \
    "  redis.call('RPUSH', starts, eid)\n" \
    "  redis.call('LTRIM', starts, -tonumber(keep), -1)\n" \
    "  if redis.call('LLEN', starts) == tonumber(keep) then\n" \
    "    redis.call('XTRIM', stream, 'MINID', '=', redis.call('LINDEX', starts, 0))\n" \
    "  end\n" \
    "end\n"

// KEYS: conversation, messages, backlog, lease, replies, starts. ARGV: owner, lease
// value, lease ms, message record (parent unset), message id, text, fragment id, max
// length, lease deadline, conversation id, channel, payload, history length. The parent
// is read here, inside the script, so that a reply finishing meanwhile cannot leave it
// stale.
const char *const add_turn_text = SIGNALRD_LUA_BOUND_BACKLOG R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return {'missing'} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'busy'} end
local parent = ''
local last = redis.call('LINDEX', KEYS[2], -1)
if last then parent = cjson.decode(last)['id'] end
local msg = cjson.decode(ARGV[4])
if parent ~= '' then msg['parentMessageId'] = parent end
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[9], ARGV[10])
redis.call('RPUSH', KEYS[2], cjson.encode(msg))
local eid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[5],
                       'sender', 'user', 'text', ARGV[6], 'fragmentId', ARGV[7], 'isFinal', '1')
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[6])
bound_backlog(KEYS[3], KEYS[6], eid, ARGV[13])
redis.call('PUBLISH', ARGV[11], eid .. ' ' .. ARGV[12])
return {'ok', parent}
)lua";

// KEYS: conversation, backlog. ARGV: id, sender, text, fragmentId, isFinal, max length.
// A conversation deleted mid-reply must not get its backlog back.
const char *const append_text = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[1], 'sender', ARGV[2],
           'text', ARGV[3], 'fragmentId', ARGV[4], 'isFinal', ARGV[5])
return 1
)lua";

// Reads the newest backlog entry: whether its fragmentId is fragment_id (the write being
// made is a repeat) and whether its message id differs from message_id (the write being
// made starts a message). Returns the entry, repeated, starts.
#define SIGNALRD_LUA_READ_TOP \
    "local function read_top(stream, message_id, fragment_id)\n" \
    "  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]\n" \
    "  local repeated, starts = false, true\n" \
    "  if top then for i = 1, #top[2], 2 do\n" \
    "    if top[2][i] == 'fragmentId' and top[2][i + 1] == fragment_id then repeated = true end\n" \
    "    if top[2][i] == 'id' and top[2][i + 1] == message_id then starts = false end\n" \
    "  end end\n" \
    "  return top, repeated, starts\n" \
    "end\n"

// KEYS: conversation, messages, backlog, lease, cancel, replies, starts. ARGV: message id,
// sender, text, last fragment id, parts, max length, lease value, lease ms, channel,
// payload, lease deadline, conversation id, history length, first send ("1": the writer
// never sent this batch before), starts a message ("1"/"0", for a first send).
//
// Design note: this runs for every batch, so it checks no more than it must. While the
// lease holds this reply's value the conversation exists and the reply has not ended
// (every script that sets the lease checks both, and ending or deleting deletes it; see
// the header), so the existence and end checks run only when the lease is not ours,
// which is rare. A batch sent for the first time cannot be a repeat, and its writer
// knows whether it starts its message: the newest entry is read (XREVRANGE, a third of
// the script's cost) only for a batch sent again, or when the lease is not ours. One
// MGET reads the lease and the cancel key together.
const char *const append_batch_text = SIGNALRD_LUA_BOUND_BACKLOG SIGNALRD_LUA_READ_TOP R"lua(
local held = redis.call('MGET', KEYS[4], KEYS[5])
local lease = held[1]
local ours = lease == ARGV[7]
if not ours and redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local repeated = false
local starts = ARGV[15] == '1'
local top = nil
if ARGV[14] ~= '1' or not ours then
  top, repeated, starts = read_top(KEYS[3], ARGV[1], ARGV[4])
end
if repeated then return {'ok', top[1], '0'} end
if not ours then
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last and cjson.decode(last)['id'] == ARGV[1] then return {'ended'} end
  if lease then return {'lost'} end
  redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[8])
  redis.call('ZADD', KEYS[6], ARGV[11], ARGV[12])
end
local eid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[1],
                       'sender', ARGV[2], 'text', ARGV[3], 'fragmentId', ARGV[4],
                       'isFinal', '0', 'parts', ARGV[5])
if starts then bound_backlog(KEYS[3], KEYS[7], eid, ARGV[13]) end
redis.call('PUBLISH', ARGV[9], eid .. ' ' .. ARGV[10])
local cancel = '0'
if held[2] == ARGV[1] then cancel = '1' end
return {'ok', eid, cancel}
)lua";

// KEYS: conversation, messages, backlog, lease, cancel, replies, starts. ARGV: the final
// fragment's five fields, max length, message record, backlog ttl, lease value, channel,
// payload, conversation id, history length, first send ("1": never sent before), starts
// a message ("1"/"0", for a first send: the reply ended before it stored anything).
//
// Design note: as in append_batch_text, a first send whose lease is this reply's checks
// nothing more (the lease says the conversation exists and the reply has not ended).
// When a thousand replies end together, the checks (the newest entry, the last message
// decoded) were about a third of each call, and the calls held up the fragments of the
// replies still streaming.
const char *const complete_text = SIGNALRD_LUA_BOUND_BACKLOG SIGNALRD_LUA_READ_TOP R"lua(
local lease = redis.call('GET', KEYS[4])
local starts = ARGV[15] == '1'
if ARGV[14] ~= '1' or lease ~= ARGV[9] then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
  local top, repeated
  top, repeated, starts = read_top(KEYS[3], ARGV[1], ARGV[4])
  if repeated then return 'ok' end
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last and cjson.decode(last)['id'] == ARGV[1] then return 'ended' end
  if lease and lease ~= ARGV[9] then return 'lost' end
end
local eid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[1],
                       'sender', ARGV[2], 'text', ARGV[3], 'fragmentId', ARGV[4],
                       'isFinal', ARGV[5])
if starts then bound_backlog(KEYS[3], KEYS[7], eid, ARGV[13]) end
redis.call('RPUSH', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[8])
redis.call('EXPIRE', KEYS[7], ARGV[8])
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[12])
redis.call('PUBLISH', ARGV[10], eid .. ' ' .. ARGV[11])
return 'ok'
)lua";

#undef SIGNALRD_LUA_READ_TOP
#undef SIGNALRD_LUA_BOUND_BACKLOG

// KEYS: lease, replies, conversation, messages. ARGV: value, ms, instance prefix
// ("<instance> ") of a lease we may take over, lease deadline, conversation id, reply id.
// Like every script that sets a lease, it checks that the conversation exists and the
// reply has not ended (append_batch_text relies on it).
const char *const claim_text = R"lua(
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[3])) ~= ARGV[3] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local last = redis.call('LINDEX', KEYS[4], -1)
if last and cjson.decode(last)['id'] == ARGV[6] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return 1
)lua";

// KEYS: lease, cancel, replies, messages, conversation. ARGV: value, ms, reply id, lease
// deadline, conversation id. Returns 0 (not ours), 1 (renewed) or 2 (renewed, cancel
// asked for). A lease that ran out is taken back only for a reply that has not ended, in
// a conversation that still exists.
const char *const renew_text = R"lua(
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] then
  if v then return 0 end
  if redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
  local last = redis.call('LINDEX', KEYS[4], -1)
  if last and cjson.decode(last)['id'] == ARGV[3] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
if redis.call('GET', KEYS[2]) == ARGV[3] then return 2 end
return 1
)lua";

// KEYS: lease, cancel. ARGV: instance channel prefix, conversation id. The lease value is
// "<instance> <reply id>"; the instance may itself contain spaces, the reply id not.
const char *const cancel_text = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local at = string.match(v, '^.* ()')
if not at then return 0 end
local reply = string.sub(v, at)
redis.call('SET', KEYS[2], reply, 'PX', 60000)
redis.call('PUBLISH', ARGV[1] .. string.sub(v, 1, at - 2),
           cjson.encode({type = 'cancel', conversation = ARGV[2], reply = reply}))
return 1
)lua";

// The scripts, named by their SHA1 once, on first use.
#define SIGNALRD_SCRIPT(name) \
    const RedisScript &name##_script() \
    { \
        static const RedisScript script(name##_text); \
        return script; \
    }
SIGNALRD_SCRIPT(add_turn)
SIGNALRD_SCRIPT(append)
SIGNALRD_SCRIPT(append_batch)
SIGNALRD_SCRIPT(complete)
SIGNALRD_SCRIPT(claim)
SIGNALRD_SCRIPT(renew)
SIGNALRD_SCRIPT(cancel)
#undef SIGNALRD_SCRIPT

// A P:replies member: the conversation and the reply, so that a reply whose instance died
// before its first fragment can still be ended under its own id.
std::string reply_member(const std::string &id, const std::string &reply_id)
{
    return id + " " + reply_id;
}

std::string random_origin()
{
    std::string id = new_uuid_v7();
    // the random tail only: the time part would be the same for instances started together
    return id.substr(id.size() - 12);
}

int64_t lease_deadline()
{
    return unix_now_ms() + reply_lease_duration.count();
}

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

// "fid:end,fid:end" into (id, end offset) pairs; false when it is malformed or its ends
// do not increase up to the text's length.
bool parse_parts(const std::string &parts, size_t text_size,
                 std::vector<std::pair<std::string, size_t>> &out)
{
    size_t pos = 0;
    size_t prev_end = 0;

    while (pos < parts.size()) {
        size_t comma = parts.find(',', pos);
        std::string item = parts.substr(pos, comma == std::string::npos ? std::string::npos
                                                                         : comma - pos);
        size_t colon = item.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) {
            return false;
        }
        char *end = nullptr;
        unsigned long long offset = std::strtoull(item.c_str() + colon + 1, &end, 10);
        if (*end != '\0' || offset < prev_end || offset > text_size) {
            return false;
        }
        out.emplace_back(item.substr(0, colon), static_cast<size_t>(offset));
        prev_end = static_cast<size_t>(offset);
        pos = comma == std::string::npos ? parts.size() : comma + 1;
    }
    return !out.empty() && prev_end == text_size;
}

// Adds a fragment to an entry's text and its "fragmentId:endOffset" to the entry's parts.
void append_part(std::string &text, std::string &parts, const Fragment &f)
{
    char digits[24];

    text += f.text;
    if (!parts.empty()) {
        parts += ',';
    }
    parts += f.fragment_id;
    parts += ':';
    parts.append(digits, std::to_chars(digits, digits + sizeof(digits), text.size()).ptr);
}

// One backlog entry into its fragments; false when it lacks a field.
bool expand_entry(const RedisValue &entry, std::vector<Fragment> &out)
{
    if (entry.elements.size() != 2) {
        return false;
    }
    const RedisValue &fields = entry.elements[1];
    const RedisValue *id = field(fields, "id");
    const RedisValue *sender = field(fields, "sender");
    const RedisValue *text = field(fields, "text");
    const RedisValue *fid = field(fields, "fragmentId");
    const RedisValue *fin = field(fields, "isFinal");
    const RedisValue *parts = field(fields, "parts");
    if (!id || !sender || !text || !fid || !fin) {
        return false;
    }

    std::vector<std::pair<std::string, size_t>> split;
    if (parts == nullptr || !parse_parts(parts->str, text->str.size(), split) ||
        split.back().first != fid->str) {
        out.push_back({id->str, sender->str, text->str, fid->str, fin->str == "1"});
        return true;
    }
    size_t begin = 0;
    for (size_t i = 0; i < split.size(); i++) {
        bool last = i + 1 == split.size();
        out.push_back({id->str, sender->str, text->str.substr(begin, split[i].second - begin),
                       split[i].first, last && fin->str == "1"});
        begin = split[i].second;
    }
    return true;
}

void read_backlog(const RedisValue &entries, std::vector<Fragment> &out)
{
    for (const RedisValue &entry : entries.elements) {
        expand_entry(entry, out);
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
      backlog_ttl_(backlog_ttl),
      origin_(random_origin()),
      batcher_(redis, backlog_max_len)
{
    own_fragments_prefix_ = "{\"type\":\"fragments\",\"origin\":";
    append_json_string(own_fragments_prefix_, origin_);

    // in Redis before the first command of every connection (see RedisClient::preload)
    for (const RedisScript *script : {&add_turn_script(), &append_script(),
                                      &append_batch_script(), &complete_script(),
                                      &claim_script(), &renew_script(), &cancel_script()}) {
        redis_.preload(*script);
    }
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

std::string ConversationStore::starts_key(const std::string &id) const
{
    return conversation_key(id) + ":starts";
}

std::string ConversationStore::lease_key(const std::string &id) const
{
    return conversation_key(id) + ":reply";
}

std::string ConversationStore::user_key(const std::string &owner) const
{
    return prefix_ + ":user:" + owner + ":conversations";
}

std::string ConversationStore::cancel_key(const std::string &id) const
{
    return conversation_key(id) + ":cancel";
}

std::string ConversationStore::replies_key() const
{
    return prefix_ + ":replies";
}

std::string ConversationStore::conversation_channel(const std::string &id) const
{
    return conversation_key(id) + ":channel";
}

std::string ConversationStore::instance_channel(const std::string &instance) const
{
    return prefix_ + ":instance:" + instance;
}

std::string ConversationStore::fragments_payload(const std::vector<Fragment> &fragments) const
{
    // written directly (see append_fragment_json); the same text as below, which is left
    // for a text that is not valid UTF-8
    std::string out = own_fragments_prefix_;
    bool ok = true;
    out += ",\"fragments\":[";
    for (size_t i = 0; ok && i < fragments.size(); i++) {
        if (i > 0) {
            out += ',';
        }
        ok = append_fragment_json(out, fragments[i]);
    }
    if (ok) {
        out += "]}";
        return out;
    }

    Json obj = Json::object();
    Json list = Json::array();

    for (const Fragment &f : fragments) {
        json_array_append_new(list.get(), fragment_to_json(f).release());
    }
    json_set_string(obj.get(), "type", "fragments");
    json_set_string(obj.get(), "origin", origin_);
    json_object_set(obj.get(), "fragments", list.get());
    return json_text(obj.get());
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
        {"ZADD", replies_key(), std::to_string(lease_deadline()),
         reply_member(id, turn.reply_id)},
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

    RedisArgs command = {"6", conversation_key(id), messages_key(id), backlog_key(id),
                         lease_key(id), replies_key(), starts_key(id),
                         owner, lease_value(turn.reply_id), lease_ms(),
                         message_to_record(turn.user_message), turn.user_message.id, text,
                         turn.user_fragment.fragment_id, backlog_max_len,
                         std::to_string(lease_deadline()), reply_member(id, turn.reply_id),
                         conversation_channel(id), fragments_payload({turn.user_fragment}),
                         std::to_string(history_messages_)};
    Result<RedisValue> r = co_await redis_.eval(add_turn_script(), std::move(command));
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

    // the running reply's P:replies member, named by its lease; without a lease, the
    // sweeper drops a member whose conversation is gone
    RedisArgs get_lease = {"GET", lease_key(id)};
    Result<RedisValue> lease = co_await redis_.command(std::move(get_lease));
    if (!lease.is_ok()) {
        co_return lease.status();
    }
    size_t space = lease->str.rfind(' ');
    std::string member = lease->is_string() && space != std::string::npos
                             ? reply_member(id, lease->str.substr(space + 1))
                             : reply_member(id, "");

    Json deleted = Json::object();
    json_set_string(deleted.get(), "type", "deleted");
    json_set_string(deleted.get(), "origin", origin_);
    std::vector<RedisArgs> commands = {
        {"DEL", conversation_key(id), messages_key(id), backlog_key(id), lease_key(id),
         cancel_key(id), starts_key(id)},
        {"ZREM", user_key(owner), id},
        {"ZREM", replies_key(), member},
        {"PUBLISH", conversation_channel(id), "0-0 " + json_text(deleted.get())},
    };
    Result<RedisValue> r = co_await redis_.transaction(std::move(commands));
    co_return r.is_ok() ? Status::ok() : r.status();
}

asio::awaitable<Status> ConversationStore::append_fragment(const std::string &id,
                                                           const Fragment &f)
{
    RedisArgs args = {"2", conversation_key(id), backlog_key(id)};
    for (std::string &a : fragment_args(f)) {
        args.push_back(std::move(a));
    }
    args.push_back(backlog_max_len);

    Result<RedisValue> r = co_await redis_.eval(append_script(), std::move(args));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1 ? Status::ok() : Status::not_found("conversation not found");
}

asio::awaitable<Result<AppendResult>> ConversationStore::append_batch(
    const std::string &id, const std::vector<Fragment> &batch, AppendHints hints)
{
    std::string text;
    std::string parts;

    if (batch.empty()) {
        co_return Status::internal("append_batch: empty batch");
    }
    const Fragment &last = batch.back();
    for (const Fragment &f : batch) {
        append_part(text, parts, f);
    }

    const std::string &reply_id = last.message_id;
    const std::string conv = conversation_key(id);
    std::string payload = fragments_payload(batch);
    if (hints.first_send && !hints.starts_message) {
        // the usual case, with the batches of other replies (backlog_batcher.h)
        const std::string lease = lease_value(reply_id);
        BacklogBatcher::Outcome quick = co_await batcher_.append(
            {conv, lease, reply_id, last.sender, text, last.fragment_id, parts, payload});
        if (!quick.is_ok()) {
            co_return quick.status();
        }
        if (quick->has_value()) {
            co_return std::move(**quick);
        }
        // the lease is not this reply's: the full script finds out why, and takes it back
        // when it may. Nothing was written, so the batch is still a first send.
    }

    // the keys as messages_key() and the others name them, from one prefix. Pushed one by
    // one rather than from a braced list, whose strings would each be copied once more.
    RedisArgs args;
    args.reserve(23);   // the key count, 7 keys, 15 arguments
    args.emplace_back("7");
    args.push_back(conv);
    args.push_back(conv + ":messages");
    args.push_back(conv + ":backlog");
    args.push_back(conv + ":reply");
    args.push_back(conv + ":cancel");
    args.push_back(replies_key());
    args.push_back(conv + ":starts");
    args.push_back(reply_id);
    args.push_back(last.sender);
    args.push_back(std::move(text));
    args.push_back(last.fragment_id);
    args.push_back(std::move(parts));
    args.emplace_back(backlog_max_len);
    args.push_back(lease_value(reply_id));
    args.push_back(lease_ms());
    args.push_back(conversation_channel(id));
    args.push_back(std::move(payload));
    args.push_back(std::to_string(lease_deadline()));
    args.push_back(reply_member(id, reply_id));
    args.push_back(std::to_string(history_messages_));
    args.emplace_back(hints.first_send ? "1" : "0");
    args.emplace_back(hints.starts_message ? "1" : "0");
    Result<RedisValue> r = co_await redis_.eval(append_batch_script(), std::move(args));
    if (!r.is_ok()) {
        co_return r.status();
    }
    std::string_view verdict = r->elements.empty() ? "" : std::string_view(r->elements[0].str);
    if (verdict == "missing") {
        co_return Status::not_found("conversation not found");
    }
    if (verdict != "ok" || r->elements.size() < 3) {
        co_return Status::conflict(verdict == "lost" ? "the reply was taken over"
                                                     : "the reply has ended");
    }
    co_return AppendResult{std::move(r->elements[1].str), r->elements[2].str == "1"};
}

asio::awaitable<Status> ConversationStore::complete_reply(const std::string &id,
                                                          const StoredMessage &message,
                                                          const Fragment &final_fragment,
                                                          AppendHints hints)
{
    RedisArgs args = {"7", conversation_key(id), messages_key(id), backlog_key(id),
                      lease_key(id), cancel_key(id), replies_key(), starts_key(id)};
    for (std::string &a : fragment_args(final_fragment)) {
        args.push_back(std::move(a));
    }
    args.push_back(backlog_max_len);
    args.push_back(message_to_record(message));
    args.push_back(std::to_string(backlog_ttl_));
    args.push_back(lease_value(message.id));
    args.push_back(conversation_channel(id));
    args.push_back(fragments_payload({final_fragment}));
    args.push_back(reply_member(id, message.id));
    args.push_back(std::to_string(history_messages_));
    args.emplace_back(hints.first_send ? "1" : "0");
    args.emplace_back(hints.starts_message ? "1" : "0");

    Result<RedisValue> r = co_await redis_.eval(complete_script(), std::move(args));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (r->str == "missing") {
        co_return Status::not_found("conversation not found");
    }
    if (r->str != "ok") {
        co_return Status::conflict(r->str == "lost" ? "the reply was taken over"
                                                    : "the reply has ended");
    }
    co_return Status::ok();
}

asio::awaitable<Result<bool>> ConversationStore::renew_lease(const std::string &id,
                                                             const std::string &reply_id)
{
    RedisArgs command = {"5", lease_key(id), cancel_key(id), replies_key(), messages_key(id),
                         conversation_key(id), lease_value(reply_id), lease_ms(),
                         reply_id, std::to_string(lease_deadline()),
                         reply_member(id, reply_id)};
    Result<RedisValue> r = co_await redis_.eval(renew_script(), std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (r->integer == 0) {
        co_return Status::not_found("reply lease lost");
    }
    co_return r->integer == 2;
}

asio::awaitable<Status> ConversationStore::claim_lease(const std::string &id,
                                                       const std::string &reply_id)
{
    RedisArgs command = {"4", lease_key(id), replies_key(), conversation_key(id),
                         messages_key(id), lease_value(reply_id), lease_ms(), instance_ + " ",
                         std::to_string(lease_deadline()), reply_member(id, reply_id),
                         reply_id};
    Result<RedisValue> r = co_await redis_.eval(claim_script(), std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1 ? Status::ok()
                              : Status::conflict("a reply is already being generated");
}

asio::awaitable<Result<bool>> ConversationStore::request_cancel(const std::string &id)
{
    RedisArgs command = {"2", lease_key(id), cancel_key(id), prefix_ + ":instance:", id};
    Result<RedisValue> r = co_await redis_.eval(cancel_script(), std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    co_return r->integer == 1;
}

asio::awaitable<Result<std::vector<ListedReply>>> ConversationStore::listed_replies(
    int64_t now_ms, size_t limit)
{
    std::string until = now_ms == 0 ? "+inf" : "(" + std::to_string(now_ms);
    RedisArgs command = {"ZRANGEBYSCORE", replies_key(), "-inf", until, "LIMIT", "0",
                         std::to_string(limit)};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    std::vector<ListedReply> listed;
    for (const RedisValue &v : r->elements) {
        size_t space = v.str.find(' ');
        if (space == std::string::npos) {
            listed.push_back({v.str, ""});
        } else {
            listed.push_back({v.str.substr(0, space), v.str.substr(space + 1)});
        }
    }
    co_return listed;
}

asio::awaitable<Status> ConversationStore::unlist_reply(const ListedReply &reply)
{
    std::string member = reply.reply_id.empty() ? reply.conversation_id
                                                : reply_member(reply.conversation_id,
                                                               reply.reply_id);
    RedisArgs command = {"ZREM", replies_key(), member};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    co_return r.is_ok() ? Status::ok() : r.status();
}

asio::awaitable<Result<BacklogRead>> ConversationStore::backlog_since(
    const std::string &id, const std::string &after_entry_id, size_t count)
{
    std::string from = after_entry_id.empty() ? "-" : "(" + after_entry_id;
    RedisArgs command = {"XRANGE", backlog_key(id), from, "+", "COUNT", std::to_string(count)};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    BacklogRead read;
    for (const RedisValue &entry : r->elements) {
        // an entry that cannot be read is skipped, but never read again
        if (!entry.elements.empty()) {
            read.last_entry_id = entry.elements[0].str;
        }
        expand_entry(entry, read.fragments);
        read.entries++;
    }
    co_return read;
}

asio::awaitable<Result<std::string>> ConversationStore::last_backlog_entry(const std::string &id)
{
    RedisArgs command = {"XREVRANGE", backlog_key(id), "+", "-", "COUNT", "1"};
    Result<RedisValue> r = co_await redis_.command(std::move(command));
    if (!r.is_ok()) {
        co_return r.status();
    }
    if (r->elements.empty() || r->elements[0].elements.empty()) {
        co_return std::string();
    }
    co_return r->elements[0].elements[0].str;
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

bool split_channel_payload(const std::string &payload, std::string &entry_id, std::string &json)
{
    size_t space = payload.find(' ');
    if (space == std::string::npos || space == 0) {
        return false;
    }
    entry_id = payload.substr(0, space);
    json = payload.substr(space + 1);
    return true;
}

int compare_entry_ids(const std::string &a, const std::string &b)
{
    auto parse = [](const std::string &id) {
        char *end = nullptr;
        unsigned long long ms = std::strtoull(id.c_str(), &end, 10);
        unsigned long long seq = *end == '-' ? std::strtoull(end + 1, nullptr, 10) : 0;
        return std::make_pair(ms, seq);
    };
    auto pa = parse(a);
    auto pb = parse(b);
    return pa < pb ? -1 : (pa > pb ? 1 : 0);
}

}  // namespace signalrd
