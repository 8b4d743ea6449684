#include "openai_protocol.h"

#include <cstdlib>

#include "json.h"

namespace signalrd {

std::string completion_request_body(const CompletionSettings &settings,
                                    const std::vector<ChatTurn> &history)
{
    Json body = Json::object();
    Json messages = Json::array();

    if (!settings.system_prompt.empty()) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("system"));
        json_set_string(m, "content", settings.system_prompt);
        json_array_append_new(messages.get(), m);
    }
    for (const ChatTurn &turn : history) {
        json_t *m = json_object();
        const char *role = turn.role == sender_assistant ? "assistant" : "user";
        json_object_set_new(m, "role", json_string(role));
        json_set_string(m, "content", turn.text);
        json_array_append_new(messages.get(), m);
    }

    json_set_string(body.get(), "model", settings.model);
    json_object_set(body.get(), "messages", messages.get());
    json_object_set_new(body.get(), "stream", json_true());
    if (settings.temperature) {
        json_object_set_new(body.get(), "temperature", json_real(*settings.temperature));
    }
    if (settings.max_tokens > 0) {
        json_object_set_new(body.get(), "max_tokens", json_integer(settings.max_tokens));
    }
    return json_text(body.get());
}

Result<CompletionChunk> parse_completion_chunk(std::string_view data)
{
    CompletionChunk chunk;

    if (data == "[DONE]") {
        chunk.done = true;
        return chunk;
    }
    Result<Json> parsed = parse_json(data);
    if (!parsed.is_ok() || !json_is_object(parsed->get())) {
        return Status::protocol_error("stream event is not a JSON object");
    }
    json_t *root = parsed->get();

    json_t *error = json_object_get(root, "error");
    if (error != nullptr) {
        const char *message = json_is_object(error) ? json_get_string(error, "message") : nullptr;
        return Status::protocol_error(std::string("server sent an error event: ") +
                                      (message ? message : json_text(error)));
    }

    json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices)) {
        return Status::protocol_error("stream event has no \"choices\" array");
    }
    // some servers end with a chunk of usage only, whose choices are empty
    json_t *choice = json_array_get(choices, 0);
    if (choice == nullptr) {
        return chunk;
    }
    if (!json_is_object(choice)) {
        return Status::protocol_error("stream event choice is not an object");
    }

    json_t *delta = json_object_get(choice, "delta");
    json_t *content = json_is_object(delta) ? json_object_get(delta, "content") : nullptr;
    if (content != nullptr && !json_is_null(content)) {
        if (!json_is_string(content)) {
            return Status::protocol_error("stream event delta.content is not a string");
        }
        chunk.content.assign(json_string_value(content), json_string_length(content));
    }
    const char *finish = json_get_string(choice, "finish_reason");
    if (finish != nullptr) {
        chunk.finish_reason = finish;
    }
    return chunk;
}

std::string describe_error_body(std::string_view body, const std::string &secret,
                                size_t max_bytes)
{
    std::string text(body);

    Result<Json> parsed = parse_json(body);
    if (parsed.is_ok() && json_is_object(parsed->get())) {
        json_t *error = json_object_get(parsed->get(), "error");
        const char *message = nullptr;
        if (json_is_object(error)) {
            message = json_get_string(error, "message");
        } else if (json_is_string(error)) {
            message = json_string_value(error);
        }
        if (message != nullptr) {
            text = message;
        }
    }

    // a server may echo what it was sent; the key never reaches a log. The search goes
    // on after each mark, so a key that occurs in "[key]" cannot make it loop forever.
    if (!secret.empty()) {
        static constexpr std::string_view mark = "[key]";
        for (size_t at = text.find(secret); at != std::string::npos;
             at = text.find(secret, at + mark.size())) {
            text.replace(at, secret.size(), mark);
        }
    }
    if (text.size() > max_bytes) {
        text.resize(max_bytes);
        text += "...";
    }
    for (char &c : text) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            c = ' ';
        }
    }
    return text;
}

Result<std::optional<double>> parse_temperature(const std::string &text)
{
    if (text.empty()) {
        return std::optional<double>();
    }
    bool dot = false;
    for (char c : text) {
        if (c == '.' && !dot) {
            dot = true;
        } else if (c < '0' || c > '9') {
            return Status::invalid_argument("ai_temperature must be a number from 0 to 2");
        }
    }
    double value = std::strtod(text.c_str(), nullptr);
    if (text == "." || value > 2.0) {
        return Status::invalid_argument("ai_temperature must be a number from 0 to 2");
    }
    return std::optional<double>(value);
}

}  // namespace signalrd
