// From the daemon's configuration to the settings of its model provider.

#pragma once

#include <optional>

#include "config.h"
#include "openai_provider.h"

namespace signalrd {

// The OpenAI-compatible provider's settings, or none when ai_base_url is unset (the
// demo provider answers). invalid_argument for an unusable URL, a missing model or a
// bad temperature; io_error when ai_api_key_file cannot be read. Messages never carry
// the key.
Result<std::optional<OpenAiSettings>> model_settings(const Config &config);

}  // namespace signalrd
