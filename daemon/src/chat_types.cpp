#include "chat_types.h"

#include <unordered_set>

#include <signalr/websocket.h>

namespace signalrd {

Json fragment_to_json(const Fragment &f)
{
    Json obj = Json::object();

    json_set_string(obj.get(), "id", f.message_id);
    json_set_string(obj.get(), "sender", f.sender);
    json_set_string(obj.get(), "text", f.text);
    json_set_string(obj.get(), "fragmentId", f.fragment_id);
    json_object_set_new(obj.get(), "isFinal", json_boolean(f.is_final));
    return obj;
}

// Design note: the backlog script's payload is written for every batch, and building a
// jansson object for it only to print it cost about as much as the rest of the write.
bool append_json_string(std::string &out, std::string_view s)
{
    static const char hex[] = "0123456789ABCDEF";   // jansson writes \u001F

    // the shared library's check, the one the hub codec applies
    if (!sr_utf8_valid(reinterpret_cast<const unsigned char *>(s.data()), s.size())) {
        return false;
    }

    out += '"';
    for (size_t i = 0; i < s.size(); i++) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0x0f];
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    out += '"';
    return true;
}

namespace {

// Appends what comes before a member's value (its name, the brace or comma before it),
// then the value as a JSON string; ok turns false for a value that is not UTF-8.
void append_string_member(std::string &out, bool &ok, std::string_view before,
                          std::string_view value)
{
    out += before;
    ok = ok && append_json_string(out, value);
}

}  // namespace

bool append_fragment_json(std::string &out, const Fragment &f)
{
    bool ok = true;

    append_string_member(out, ok, "{\"id\":", f.message_id);
    append_string_member(out, ok, ",\"sender\":", f.sender);
    append_string_member(out, ok, ",\"text\":", f.text);
    append_string_member(out, ok, ",\"fragmentId\":", f.fragment_id);
    out += f.is_final ? ",\"isFinal\":true}" : ",\"isFinal\":false}";
    return ok;
}

Json message_to_api(const StoredMessage &m)
{
    Json obj = Json::object();

    json_set_string(obj.get(), "id", m.id);
    json_set_string(obj.get(), "text", m.text);
    json_set_string(obj.get(), "role", m.role);
    if (m.parent_id.empty()) {
        json_object_set_new(obj.get(), "parentMessageId", json_null());
    } else {
        json_set_string(obj.get(), "parentMessageId", m.parent_id);
    }
    json_set_string(obj.get(), "createdAt", format_timestamp(m.created_ms));
    return obj;
}

namespace {

// The record through jansson: for texts that are not UTF-8, which the direct writer
// below refuses (not expected: prompts and model output are checked on the way in).
std::string message_to_record_checked(const StoredMessage &m)
{
    Json obj = message_to_api(m);
    Json fragments = Json::array();

    json_object_set_new(obj.get(), "createdMs", json_integer(m.created_ms));
    for (const auto &[fragment_id, end] : m.fragments) {
        json_t *pair = json_array();
        json_array_append_new(pair, json_stringn(fragment_id.data(), fragment_id.size()));
        json_array_append_new(pair, json_integer(static_cast<json_int_t>(end)));
        json_array_append_new(fragments.get(), pair);
    }
    json_object_set(obj.get(), "fragments", fragments.get());
    return json_text(obj.get());
}

}  // namespace

// Design note: a reply's record lists every fragment id (60 and more), and building it
// as jansson objects only to print it was four tenths of the daemon's time while many
// replies ended at once, holding up the fragments of the others. The same text is
// written directly; message_from_record() reads either.
std::string message_to_record(const StoredMessage &m)
{
    std::string out;
    bool ok = true;

    out.reserve(160 + m.text.size() + m.fragments.size() * 48);
    append_string_member(out, ok, "{\"id\":", m.id);
    append_string_member(out, ok, ",\"text\":", m.text);
    append_string_member(out, ok, ",\"role\":", m.role);
    if (m.parent_id.empty()) {
        out += ",\"parentMessageId\":null";
    } else {
        append_string_member(out, ok, ",\"parentMessageId\":", m.parent_id);
    }
    append_string_member(out, ok, ",\"createdAt\":", format_timestamp(m.created_ms));
    out += ",\"createdMs\":";
    out += std::to_string(m.created_ms);

    out += ",\"fragments\":[";
    for (size_t i = 0; i < m.fragments.size() && ok; i++) {
        out += i == 0 ? "[" : ",[";
        ok = append_json_string(out, m.fragments[i].first);
        out += ',';
        out += std::to_string(m.fragments[i].second);
        out += ']';
    }
    out += "]}";

    return ok ? out : message_to_record_checked(m);
}

Result<StoredMessage> message_from_record(const std::string &record)
{
    Result<Json> parsed = parse_json(record);
    if (!parsed.is_ok() || !json_is_object(parsed->get())) {
        return Status::internal("stored message is not a JSON object");
    }

    json_t *obj = parsed->get();
    StoredMessage m;
    const char *id = json_get_string(obj, "id");
    const char *text = json_get_string(obj, "text");
    const char *role = json_get_string(obj, "role");
    const char *parent = json_get_string(obj, "parentMessageId");
    json_t *fragments = json_object_get(obj, "fragments");

    if (id == nullptr || text == nullptr || role == nullptr || !json_is_array(fragments)) {
        return Status::internal("stored message lacks a field");
    }
    m.id = id;
    m.text.assign(text, json_string_length(json_object_get(obj, "text")));
    m.role = role;
    m.parent_id = parent ? parent : "";
    m.created_ms = json_integer_value(json_object_get(obj, "createdMs"));

    size_t i;
    json_t *pair;
    json_array_foreach(fragments, i, pair) {
        const char *fid = json_string_value(json_array_get(pair, 0));
        json_int_t end = json_integer_value(json_array_get(pair, 1));
        if (fid == nullptr || end < 0 || static_cast<size_t>(end) > m.text.size()) {
            return Status::internal("stored message has a bad fragment list");
        }
        m.fragments.emplace_back(fid, static_cast<size_t>(end));
    }
    if (m.fragments.empty()) {
        return Status::internal("stored message has no fragments");
    }
    return m;
}

std::vector<Fragment> unfinished_fragments(const ConversationSnapshot &snapshot)
{
    std::unordered_set<std::string> finished;
    std::vector<Fragment> out;

    for (const StoredMessage &m : snapshot.messages) {
        finished.insert(m.id);
    }
    for (const Fragment &f : snapshot.backlog) {
        if (finished.count(f.message_id) == 0) {
            out.push_back(f);
        }
    }
    return out;
}

Json conversation_to_api(const ConversationSnapshot &s, bool with_messages)
{
    Json obj = Json::object();

    json_set_string(obj.get(), "id", s.id);
    json_set_string(obj.get(), "name", s.name);
    json_set_string(obj.get(), "createdAt", format_timestamp(s.created_ms));
    if (with_messages) {
        Json messages = Json::array();
        for (const StoredMessage &m : s.messages) {
            json_array_append_new(messages.get(), message_to_api(m).release());
        }
        json_object_set(obj.get(), "messages", messages.get());
    }
    return obj;
}

std::string conversation_name(const std::string &prompt, size_t max_bytes)
{
    std::string out;
    bool pending_space = false;

    for (size_t i = 0; i < prompt.size();) {
        unsigned char c = static_cast<unsigned char>(prompt[i]);
        size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : 4;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            pending_space = !out.empty();
            i++;
            continue;
        }
        size_t need = len + (pending_space ? 1 : 0);
        if (out.size() + need > max_bytes || i + len > prompt.size()) {
            break;
        }
        if (pending_space) {
            out.push_back(' ');
            pending_space = false;
        }
        out.append(prompt, i, len);
        i += len;
    }
    return out;
}

}  // namespace signalrd
