#include "chat_hub.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include <strings.h>

#include "stream_item.h"
#include "uuid.h"

namespace signalrd {

namespace {

const char *const not_found_error = "Conversation not found.";
const char *const invalid_arguments_error = "Invalid arguments for 'Stream'.";

char *copy_string(const std::string &s)
{
    return strdup(s.c_str());
}

// An optional UUID field of the stream context into out; false when it is malformed.
bool optional_uuid(const json_t *context, const char *key, std::string &out)
{
    json_t *v = json_object_get(context, key);
    if (v == nullptr || json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v)) {
        return false;
    }
    auto id = normalize_uuid(std::string_view(json_string_value(v), json_string_length(v)));
    if (!id) {
        return false;
    }
    out = *id;
    return true;
}

}  // namespace

Result<std::pair<std::string, ResumePoint>> parse_stream_arguments(const json_t *arguments)
{
    size_t n = json_array_size(arguments);
    ResumePoint resume;

    if (!json_is_array(arguments) || n < 1 || n > 2) {
        return Status::invalid_argument(invalid_arguments_error);
    }

    json_t *id = json_array_get(arguments, 0);
    if (!json_is_string(id)) {
        return Status::invalid_argument(invalid_arguments_error);
    }
    auto conversation = normalize_uuid(std::string_view(json_string_value(id),
                                                        json_string_length(id)));
    if (!conversation) {
        return Status::invalid_argument(invalid_arguments_error);
    }

    json_t *context = n == 2 ? json_array_get(arguments, 1) : nullptr;
    if (context != nullptr && !json_is_null(context)) {
        if (!json_is_object(context) ||
            !optional_uuid(context, "lastMessageId", resume.last_message_id) ||
            !optional_uuid(context, "lastFragmentId", resume.last_fragment_id)) {
            return Status::invalid_argument(invalid_arguments_error);
        }
    }
    return std::make_pair(*conversation, resume);
}

struct ChatHub::Stream {
    std::string connection_id;
    std::string invocation_id;
    std::string conversation_id;
    std::string user;
    ResumePoint resume;
    uint64_t bus_handle = 0;
    bool active = true;
    bool live = false;                 // replay done: fragments go straight out
    std::vector<Fragment> held;        // live fragments that came during the replay
    std::string watermark;
};

ChatHub::ChatHub(asio::any_io_executor executor, ConversationStore &store, FragmentBus &bus,
                 ReplyRunner &runner, ConnectionSink &sink)
    : executor_(executor), store_(store), bus_(bus), runner_(runner), sink_(sink)
{
    sr_buf_init(&item_);
}

ChatHub::~ChatHub()
{
    sr_buf_free(&item_);
}

void ChatHub::on_connected(const ConnectionInfo &)
{
}

void ChatHub::on_message(const ConnectionInfo &connection, sr_message_t &msg)
{
    const char *target = msg.target ? msg.target : "";
    bool is_stream = strcasecmp(target, "Stream") == 0;

    switch (msg.type) {
    case SR_MSG_STREAM_INVOCATION:
        if (is_stream) {
            start_stream(connection, msg);
        } else {
            std::string error = std::string("Unknown method '") + target + "'.";
            send_completion(connection.id, msg.invocation_id, error.c_str());
        }
        return;
    case SR_MSG_INVOCATION:
        if (msg.invocation_id == nullptr) {
            return;   // nobody waits for an answer
        }
        if (is_stream) {
            send_completion(connection.id, msg.invocation_id,
                            "'Stream' is a streaming method: call it with stream().");
        } else {
            std::string error = std::string("Unknown method '") + target + "'.";
            send_completion(connection.id, msg.invocation_id, error.c_str());
        }
        return;
    case SR_MSG_CANCEL_INVOCATION:
        if (msg.invocation_id != nullptr) {
            cancel_stream(connection.id, msg.invocation_id);
        }
        return;
    default:
        // client-to-server stream items and completions: no method here takes a stream
        return;
    }
}

void ChatHub::start_stream(const ConnectionInfo &connection, sr_message_t &msg)
{
    std::string invocation_id = msg.invocation_id;
    auto existing = streams_.find(connection.id);

    if (existing != streams_.end() && existing->second.count(invocation_id) != 0) {
        send_completion(connection.id, invocation_id, "Invocation id is already in use.");
        return;
    }
    if (existing != streams_.end() && existing->second.size() >= max_streams_per_connection) {
        send_completion(connection.id, invocation_id, "Too many streams on this connection.");
        return;
    }
    auto args = parse_stream_arguments(msg.arguments);
    if (!args.is_ok()) {
        send_completion(connection.id, invocation_id, args.status().message().c_str());
        return;
    }

    auto stream = std::make_shared<Stream>();
    stream->connection_id = connection.id;
    stream->invocation_id = invocation_id;
    stream->conversation_id = args->first;
    stream->user = connection.user;
    stream->resume = args->second;
    std::weak_ptr<Stream> weak = stream;
    // subscribe before reading, so that nothing published during the read is missed
    stream->bus_handle = bus_.subscribe(stream->conversation_id,
                                        [this, weak](const ConversationEvent &event) {
                                            if (auto s = weak.lock()) {
                                                on_event(s, event);
                                            }
                                        });
    streams_[connection.id].emplace(invocation_id, stream);
    log_debug("connection %s: stream %s of conversation %s", connection.id.c_str(),
              invocation_id.c_str(), stream->conversation_id.c_str());
    spawn_detached(executor_, replay(stream), "stream replay");
}

asio::awaitable<void> ChatHub::replay(std::shared_ptr<Stream> stream)
{
    // other instances' fragments must be flowing before the snapshot is read, or one
    // written in between would be in neither
    co_await bus_.ready(stream->conversation_id);
    if (!stream->active) {
        co_return;
    }
    Result<ConversationSnapshot> snapshot = co_await store_.load(stream->conversation_id);
    // taken with the snapshot, before anything else runs: what this process's reply
    // showed and the snapshot may lack (see ReplyRunner::unstored())
    std::vector<Fragment> unstored = runner_.unstored(stream->conversation_id);

    if (!stream->active) {
        co_return;
    }
    if (!snapshot.is_ok()) {
        log_warn("loading conversation %s failed: %s", stream->conversation_id.c_str(),
                 snapshot.status().message().c_str());
        end_stream(*stream, "The conversation is unavailable, try again later.");
        co_return;
    }
    if (!snapshot->exists || snapshot->owner != stream->user || stream->user.empty()) {
        end_stream(*stream, not_found_error);
        co_return;
    }

    ReplayPlan plan = plan_replay(*snapshot, stream->resume);
    for (const Fragment &f : plan.fragments) {
        if (!deliver(*stream, f)) {
            co_return;
        }
    }

    // the unstored and the held overlap (shown after the subscription, not stored at the
    // snapshot): in order of their ids, each once
    std::vector<Fragment> held = std::move(stream->held);
    held.insert(held.end(), std::make_move_iterator(unstored.begin()),
                std::make_move_iterator(unstored.end()));
    std::stable_sort(held.begin(), held.end(), [](const Fragment &a, const Fragment &b) {
        return a.fragment_id < b.fragment_id;
    });

    stream->watermark = plan.watermark;
    stream->live = true;
    for (const Fragment &f : held) {
        if (f.fragment_id > stream->watermark) {
            stream->watermark = f.fragment_id;
            if (!deliver(*stream, f)) {
                co_return;
            }
        }
    }

    // a reply its instance never finished: end it, so the stream sees a final fragment
    if (runner_.abandoned(*snapshot)) {
        Status s = co_await runner_.recover(*snapshot);
        if (!s.is_ok()) {
            log_warn("ending the unfinished reply of conversation %s failed: %s",
                     snapshot->id.c_str(), s.message().c_str());
        }
    }
}

void ChatHub::on_event(const std::shared_ptr<Stream> &stream, const ConversationEvent &event)
{
    if (!stream->active) {
        return;
    }
    if (event.kind == ConversationEvent::Kind::deleted) {
        end_stream(*stream, "The conversation was deleted.");
        return;
    }
    if (!stream->live) {
        if (stream->held.size() >= max_held_fragments) {
            end_stream(*stream, "The stream fell behind.");
            return;
        }
        stream->held.push_back(event.fragment);
        return;
    }
    if (event.fragment.fragment_id > stream->watermark) {
        stream->watermark = event.fragment.fragment_id;
        deliver(*stream, event.fragment);
    }
}

bool ChatHub::deliver(Stream &stream, const Fragment &fragment)
{
    sr_message_t msg;

    // the usual way: the item's bytes written at once (stream_item.h)
    sr_buf_reset(&item_);
    if (append_stream_item(&item_, stream.invocation_id, fragment) &&
        sink_.send_encoded(stream.connection_id, item_.data, item_.len)) {
        return true;
    }

    sr_message_init(&msg, SR_MSG_STREAM_ITEM);
    msg.invocation_id = copy_string(stream.invocation_id);
    msg.item = fragment_to_json(fragment).release();
    bool sent = sink_.send(stream.connection_id, msg);
    sr_message_clear(&msg);

    if (!sent) {
        forget(stream);
    }
    return sent;
}

void ChatHub::send_completion(const std::string &connection_id, const std::string &invocation_id,
                              const char *error)
{
    sr_message_t msg;

    sr_message_init(&msg, SR_MSG_COMPLETION);
    msg.invocation_id = copy_string(invocation_id);
    msg.error = error ? strdup(error) : nullptr;
    sink_.send(connection_id, msg);
    sr_message_clear(&msg);
}

void ChatHub::end_stream(Stream &stream, const char *error)
{
    if (!stream.active) {
        return;
    }
    std::string connection_id = stream.connection_id;
    std::string invocation_id = stream.invocation_id;
    forget(stream);
    send_completion(connection_id, invocation_id, error);
}

void ChatHub::cancel_stream(const std::string &connection_id, const std::string &invocation_id)
{
    auto conn = streams_.find(connection_id);
    if (conn == streams_.end()) {
        return;
    }
    auto it = conn->second.find(invocation_id);
    if (it == conn->second.end()) {
        return;
    }
    // an empty Completion: the client has already let the stream go, but the worker
    // tracks open streams by their Completion
    end_stream(*it->second, nullptr);
}

void ChatHub::forget(Stream &stream)
{
    if (!stream.active) {
        return;
    }
    stream.active = false;
    bus_.unsubscribe(stream.conversation_id, stream.bus_handle);
    left(stream.conversation_id);

    auto conn = streams_.find(stream.connection_id);
    if (conn == streams_.end()) {
        return;
    }
    // stream may be owned only by the map: erase last
    std::string invocation_id = stream.invocation_id;
    auto keep = conn->second[invocation_id];
    conn->second.erase(invocation_id);
    if (conn->second.empty()) {
        streams_.erase(conn);
    }
}

void ChatHub::on_disconnected(const ConnectionInfo &connection)
{
    auto conn = streams_.find(connection.id);
    if (conn == streams_.end()) {
        return;
    }
    StreamMap mine = std::move(conn->second);
    streams_.erase(conn);
    for (auto &[id, stream] : mine) {
        stream->active = false;
        bus_.unsubscribe(stream->conversation_id, stream->bus_handle);
        left(stream->conversation_id);
    }
}

void ChatHub::left(const std::string &conversation_id)
{
    // a shutdown interrupts replies itself, and says so in their final fragment
    if (!cancel_unwatched_ || stopping_ || bus_.listener_count(conversation_id) != 0) {
        return;
    }
    if (runner_.cancel(conversation_id)) {
        log_debug("conversation %s: reply cancelled, nobody follows it", conversation_id.c_str());
    }
}

void ChatHub::shutdown()
{
    std::vector<std::shared_ptr<Stream>> all;

    stopping_ = true;
    for (auto &[conn, mine] : streams_) {
        for (auto &[id, stream] : mine) {
            all.push_back(stream);
        }
    }
    for (auto &stream : all) {
        end_stream(*stream, "The server is shutting down.");
    }
}

size_t ChatHub::stream_count() const
{
    size_t n = 0;
    for (const auto &[conn, mine] : streams_) {
        n += mine.size();
    }
    return n;
}

}  // namespace signalrd
