#include "provider_setup.h"

#include "token_claims.h"

namespace signalrd {

namespace {

bool has_http_scheme(const std::string &url)
{
    return url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
}

}  // namespace

Result<std::optional<OpenAiSettings>> model_settings(const Config &config)
{
    if (config.ai_base_url.empty()) {
        return std::optional<OpenAiSettings>();
    }
    if (!has_http_scheme(config.ai_base_url)) {
        return Status::invalid_argument("ai_base_url must start with http:// or https://");
    }
    if (config.ai_model.empty()) {
        return Status::invalid_argument("ai_model must be set when ai_base_url is");
    }
    Result<std::optional<double>> temperature = parse_temperature(config.ai_temperature);
    if (!temperature.is_ok()) {
        return temperature.status();
    }

    OpenAiSettings s;
    s.base_url = config.ai_base_url;
    s.api_key = config.ai_api_key;
    if (!config.ai_api_key_file.empty()) {
        Result<std::string> key = read_secret_file(config.ai_api_key_file);
        if (!key.is_ok()) {
            return Status::io_error("ai_api_key_file: " + key.status().message());
        }
        s.api_key = *key;
    }
    s.completion.model = config.ai_model;
    s.completion.system_prompt = config.ai_system_prompt;
    s.completion.temperature = *temperature;
    s.completion.max_tokens = config.ai_max_tokens;
    s.request_timeout = std::chrono::seconds(config.ai_request_timeout);
    s.first_token_timeout = std::chrono::seconds(config.ai_first_token_timeout);
    s.connect_timeout = std::min<std::chrono::milliseconds>(s.request_timeout,
                                                           std::chrono::seconds(10));
    s.tls_verify = config.ai_tls_verify;
    s.retries = config.ai_retries;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return Status::internal("curl_global_init() failed");
    }
    if (!s.tls_verify) {
        log_warn("ai_tls_verify is off: the model endpoint's certificate is not checked");
    }
    log_info("model provider: model \"%s\", api key %s, first token within %u s",
             s.completion.model.c_str(), s.api_key.empty() ? "not set" : "set",
             config.ai_first_token_timeout);
    return std::optional<OpenAiSettings>(std::move(s));
}

}  // namespace signalrd
