#include "sse_parser.h"

namespace signalrd {

Status SseParser::feed(std::string_view bytes, const EventHandler &on_event)
{
    if (!failed_.is_ok()) {
        return failed_;
    }

    size_t start = 0;
    for (size_t i = 0; i < bytes.size(); i++) {
        char c = bytes[i];
        if (pending_cr_) {
            pending_cr_ = false;
            if (c == '\n') {
                start = i + 1;
                continue;
            }
        }
        if (c != '\n' && c != '\r') {
            continue;
        }

        line_.append(bytes.data() + start, i - start);
        start = i + 1;
        pending_cr_ = c == '\r';
        // a complete line is bounded like a partial one, so that where the
        // chunks of a stream are cut never decides whether it is refused
        Status s = line_too_long();
        if (s.is_ok()) {
            std::string line = std::move(line_);
            line_.clear();
            s = take_line(line, on_event);
        }
        if (!s.is_ok()) {
            failed_ = s;
            return s;
        }
    }

    line_.append(bytes.data() + start, bytes.size() - start);
    failed_ = line_too_long();
    return failed_;
}

Status SseParser::line_too_long() const
{
    if (line_.size() > max_event_bytes_) {
        return Status::too_large("event stream line over " + std::to_string(max_event_bytes_) +
                                 " bytes");
    }
    return Status::ok();
}

Status SseParser::take_line(std::string_view line, const EventHandler &on_event)
{
    if (line.empty()) {
        return dispatch(on_event);
    }
    if (line.front() == ':') {
        return Status::ok();   // a comment, often a keep-alive
    }

    size_t colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
        value = line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
    }

    if (field == "data") {
        if (has_data_) {
            event_.data += '\n';
        }
        event_.data.append(value);
        has_data_ = true;
    } else if (field == "event") {
        event_.type.assign(value);
    } else if (field == "id" && value.find('\0') == std::string_view::npos) {
        event_.id.assign(value);
    }
    // "retry" and unknown fields are ignored, as the format requires

    if (event_.data.size() + event_.type.size() + event_.id.size() > max_event_bytes_) {
        return Status::too_large("event stream event over " +
                                 std::to_string(max_event_bytes_) + " bytes");
    }
    return Status::ok();
}

Status SseParser::dispatch(const EventHandler &on_event)
{
    Status s;

    // a blank line with no data line before it ends nothing
    if (has_data_) {
        s = on_event(event_);
    }
    event_.type.clear();
    event_.data.clear();
    has_data_ = false;
    return s;
}

}  // namespace signalrd
