#include <gtest/gtest.h>

#include "json.h"
#include "openai_protocol.h"

namespace signalrd {
namespace {

TEST(OpenAiProtocol, RequestBodyHasTheModelTheSystemPromptAndTheHistoryInOrder)
{
    CompletionSettings settings{"llama3.1:8b", "Be brief.", 0.5, 128};
    std::vector<ChatTurn> history = {
        {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Say \"more\"\n"}};

    Result<Json> body = parse_json(completion_request_body(settings, history));

    ASSERT_TRUE(body.is_ok());
    json_t *b = body->get();
    EXPECT_STREQ(json_get_string(b, "model"), "llama3.1:8b");
    EXPECT_TRUE(json_is_true(json_object_get(b, "stream")));
    EXPECT_DOUBLE_EQ(json_real_value(json_object_get(b, "temperature")), 0.5);
    EXPECT_EQ(json_integer_value(json_object_get(b, "max_tokens")), 128);
    json_t *messages = json_object_get(b, "messages");
    ASSERT_EQ(json_array_size(messages), 4u);
    const char *roles[] = {"system", "user", "assistant", "user"};
    const char *texts[] = {"Be brief.", "Hi", "Hello!", "Say \"more\"\n"};
    for (size_t i = 0; i < 4; i++) {
        EXPECT_STREQ(json_get_string(json_array_get(messages, i), "role"), roles[i]);
        EXPECT_STREQ(json_get_string(json_array_get(messages, i), "content"), texts[i]);
    }
}

TEST(OpenAiProtocol, UnsetOptionsAreLeftOut)
{
    CompletionSettings settings{"m", "", std::nullopt, 0};

    Result<Json> body = parse_json(completion_request_body(settings, {{"user", "x"}}));

    ASSERT_TRUE(body.is_ok());
    EXPECT_EQ(json_object_get(body->get(), "temperature"), nullptr);
    EXPECT_EQ(json_object_get(body->get(), "max_tokens"), nullptr);
    EXPECT_EQ(json_array_size(json_object_get(body->get(), "messages")), 1u)
        << "no system message without a system prompt";
}

TEST(OpenAiProtocol, ReadsContentFinishReasonAndDone)
{
    auto token = parse_completion_chunk(
        R"({"id":"c","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]})");
    auto role = parse_completion_chunk(R"({"choices":[{"delta":{"role":"assistant"}}]})");
    auto stop = parse_completion_chunk(R"({"choices":[{"delta":{},"finish_reason":"stop"}]})");
    auto usage = parse_completion_chunk(R"({"choices":[],"usage":{"total_tokens":3}})");
    auto done = parse_completion_chunk("[DONE]");

    ASSERT_TRUE(token.is_ok() && role.is_ok() && stop.is_ok() && usage.is_ok() && done.is_ok());
    EXPECT_EQ(token->content, "Hel");
    EXPECT_EQ(token->finish_reason, "");
    EXPECT_EQ(role->content, "");
    EXPECT_EQ(stop->finish_reason, "stop");
    EXPECT_EQ(usage->content, "");
    EXPECT_TRUE(done->done);
    EXPECT_FALSE(token->done);
}

TEST(OpenAiProtocol, RefusesWhatIsNotAChunk)
{
    const char *const bad[] = {
        "", "not json", "[1,2]", "{}", R"({"choices":{}})", R"({"choices":[3]})",
        R"({"choices":[{"delta":{"content":42}}]})", "[DONE] ",
        R"({"error":{"message":"model overloaded"}})",
    };
    for (const char *data : bad) {
        auto chunk = parse_completion_chunk(data);
        EXPECT_FALSE(chunk.is_ok()) << data;
        if (!chunk.is_ok()) {
            EXPECT_EQ(chunk.status().code(), StatusCode::protocol_error) << data;
        }
    }
    auto error = parse_completion_chunk(R"({"error":{"message":"model overloaded"}})");
    EXPECT_NE(error.status().message().find("model overloaded"), std::string::npos)
        << "an error event's message is kept for the log";
}

TEST(OpenAiProtocol, ErrorBodiesAreShortAndNeverShowTheKey)
{
    std::string key = "sk-abc123";

    EXPECT_EQ(describe_error_body(R"({"error":{"message":"Incorrect API key sk-abc123"}})", key),
              "Incorrect API key [key]");
    EXPECT_EQ(describe_error_body(R"({"error":"model not found"})", key), "model not found");
    EXPECT_EQ(describe_error_body("plain\ntext sk-abc123", key), "plain text [key]");
    EXPECT_EQ(describe_error_body(std::string(500, 'x'), key, 10), "xxxxxxxxxx...");
}

// Found by fuzz_openai_chunk: a key that occurs in the "[key]" mark made the
// replacement loop forever.
TEST(OpenAiProtocol, AKeyInsideTheMarkIsReplacedOnce)
{
    EXPECT_EQ(describe_error_body("etio etio", "e"), "[key]tio [key]tio");
    EXPECT_EQ(describe_error_body("key", "key"), "[key]");
}

TEST(OpenAiProtocol, TemperatureIsAPlainDecimalFromZeroToTwo)
{
    EXPECT_FALSE(parse_temperature("")->has_value());
    EXPECT_DOUBLE_EQ(**parse_temperature("0.7"), 0.7);
    EXPECT_DOUBLE_EQ(**parse_temperature("2"), 2.0);
    for (const char *bad : {"2.5", "-1", "abc", ".", "1.2.3", "1e3", " 1"}) {
        EXPECT_FALSE(parse_temperature(bad).is_ok()) << bad;
    }
}

}  // namespace
}  // namespace signalrd
