// ChatStreamHub: one server-to-client streaming method,
//
//   Stream(conversationId, {lastMessageId, lastFragmentId}) -> ClientMessageFragment...
//
// A stream replays what the conversation holds after the client's resume point (see
// replay.h), then follows it live through the FragmentBus. It never completes by
// itself: the client's CancelInvocation ends it (answered with an empty Completion, as
// ASP.NET Core does), and so does the connection's end. Live fragments that arrive
// while the replay is being read are held and delivered after it, minus those the
// replay already covered, so nothing is lost or doubled in between.
//
// Errors are Completions with a short reason: an unknown conversation and another
// user's conversation get the same answer, so ids reveal nothing. Invocations of
// unknown methods get an error Completion; those without an invocation id are ignored.

#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "conversation_store.h"
#include "fragment_bus.h"
#include "hub.h"
#include "replay.h"
#include "reply_runner.h"

namespace signalrd {

inline constexpr const char *chat_hub_name = "ChatStreamHub";

class ChatHub final : public Hub {
public:
    // Bounds per connection: open streams, and live fragments held during a replay.
    static constexpr size_t max_streams_per_connection = 32;
    static constexpr size_t max_held_fragments = 100000;

    ChatHub(asio::any_io_executor executor, ConversationStore &store, FragmentBus &bus,
            ReplyRunner &runner, ConnectionSink &sink);
    ~ChatHub() override;

    ChatHub(const ChatHub &) = delete;
    ChatHub &operator=(const ChatHub &) = delete;

    void on_connected(const ConnectionInfo &connection) override;
    void on_message(const ConnectionInfo &connection, sr_message_t &msg) override;
    void on_disconnected(const ConnectionInfo &connection) override;
    void shutdown() override;

    size_t stream_count() const;

    // With on, a reply is cancelled as soon as the last stream following its
    // conversation here goes (disposed, or its connection closed); the model stops.
    void set_cancel_unwatched(bool on) { cancel_unwatched_ = on; }

private:
    struct Stream;
    using StreamMap = std::map<std::string, std::shared_ptr<Stream>>;   // by invocation id

    void start_stream(const ConnectionInfo &connection, sr_message_t &msg);
    void cancel_stream(const std::string &connection_id, const std::string &invocation_id);
    asio::awaitable<void> replay(std::shared_ptr<Stream> stream);
    void on_event(const std::shared_ptr<Stream> &stream, const ConversationEvent &event);
    bool deliver(Stream &stream, const Fragment &fragment);
    void end_stream(Stream &stream, const char *error);
    void forget(Stream &stream);
    void left(const std::string &conversation_id);
    void send_completion(const std::string &connection_id, const std::string &invocation_id,
                         const char *error);

    asio::any_io_executor executor_;
    ConversationStore &store_;
    FragmentBus &bus_;
    ReplyRunner &runner_;
    ConnectionSink &sink_;
    std::unordered_map<std::string, StreamMap> streams_;   // by connection id
    bool cancel_unwatched_ = false;
    bool stopping_ = false;
    sr_buf_t item_;   // the stream item being sent, reused
};

// Parses Stream's arguments: [conversationId, streamContext]. The context may be
// missing or null, and so may either of its ids; every id present must be a UUID.
Result<std::pair<std::string, ResumePoint>> parse_stream_arguments(const json_t *arguments);

}  // namespace signalrd
