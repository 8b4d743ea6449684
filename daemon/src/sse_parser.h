// An incremental parser for Server-Sent Events (the WHATWG "text/event-stream" format),
// as OpenAI-compatible servers stream chat completions with it.
//
// Design note: written by hand because none of the project's libraries reads SSE, and
// the part needed is small: lines ended by CRLF, LF or CR, "field: value" with one
// optional space after the colon, comments, and an event dispatched at a blank line with
// its data lines joined by LF. The parser keeps only the unfinished line and the event
// being built, so a chunk boundary may fall anywhere, even between CR and LF; both are
// bounded by max_event_bytes, so a peer cannot make it grow without limit.

#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "status.h"

namespace signalrd {

struct SseEvent {
    std::string type;    // "event:" field; empty means "message"
    std::string data;    // the data lines joined by "\n", without a trailing one
    std::string id;      // "id:" field, if any
};

class SseParser {
public:
    // Called for every complete event; a non-ok Status stops parsing and is returned by
    // feed() as it is.
    using EventHandler = std::function<Status(const SseEvent &event)>;

    explicit SseParser(size_t max_event_bytes = 1 << 20) : max_event_bytes_(max_event_bytes) {}

    // Parses the next bytes of the stream. Returns the handler's first failure, or
    // too_large when one line or event exceeds the bound; after a failure the parser
    // is spent and every later call fails the same way.
    Status feed(std::string_view bytes, const EventHandler &on_event);

    // Whether the stream could end here without cutting an event short: no partial
    // line and no data lines waiting for their blank line. A CR just read ends its
    // line already (the LF that may follow it adds nothing), so it does not count.
    bool at_boundary() const { return line_.empty() && !has_data_; }

private:
    Status line_too_long() const;
    Status take_line(std::string_view line, const EventHandler &on_event);
    Status dispatch(const EventHandler &on_event);

    size_t max_event_bytes_;
    std::string line_;          // the line read so far, without its ending
    bool pending_cr_ = false;   // the last byte was CR: an LF right after it is its pair
    SseEvent event_;
    bool has_data_ = false;     // at least one data line (possibly empty) was read
    Status failed_;
};

}  // namespace signalrd
