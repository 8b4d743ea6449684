// libFuzzer target for SseParser, the incremental reader of a model server's
// "text/event-stream" answer.
//
// Input: byte 0 picks the parser's bound, byte 1 the number k (0..15) of
// chunk-size bytes after it, byte 2 the event after which the handler
// fails (0: never); the rest is the stream, fed in chunks whose sizes
// (0..255) cycle through those k bytes (one chunk when k is 0).
//
// Checks, besides no crash, leak or undefined behaviour:
// - the chunked parse gives the same events and the same outcome as one
//   feed of the whole stream, so a chunk boundary changes nothing;
// - each event is within the bound;
// - when the parse succeeds, its events are exactly those of a plain
//   whole-input reading of the format written here (only complete lines,
//   an event only at a blank line); when it stops on the bound, its events
//   are a prefix of those;
// - a handler failure stops parsing at once and is returned as it is;
// - after a failure the parser is spent and fails the same way again;
// - at_boundary() agrees with the plain reading about a cut-short event.

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sse_parser.h"

namespace {

using signalrd::SseEvent;
using signalrd::SseParser;
using signalrd::Status;
using signalrd::StatusCode;

struct Run {
    std::vector<SseEvent> events;
    Status status;
    bool at_boundary = false;
};

struct Reference {
    std::vector<SseEvent> events;
    bool cut_short = false;     // a partial line or data lines without their blank line
};

bool same_event(const SseEvent &a, const SseEvent &b)
{
    return a.type == b.type && a.data == b.data && a.id == b.id;
}

// A plain reading of the whole stream, with no bound and no chunks.
Reference read_whole(std::string_view s)
{
    Reference ref;
    SseEvent event;
    bool has_data = false;
    size_t i = 0;

    while (i < s.size()) {
        size_t end = s.find_first_of("\r\n", i);
        if (end == std::string_view::npos) {
            ref.cut_short = true;   // the last line has no ending
            return ref;
        }
        std::string_view line = s.substr(i, end - i);
        i = end + 1;
        if (s[end] == '\r' && i < s.size() && s[i] == '\n') {
            i++;
        }

        if (line.empty()) {
            if (has_data) {
                ref.events.push_back(event);
            }
            event.type.clear();
            event.data.clear();
            has_data = false;
            continue;
        }
        if (line[0] == ':') {
            continue;
        }
        size_t colon = line.find(':');
        std::string_view name = line.substr(0, colon);
        std::string_view value = colon == std::string_view::npos
                                     ? std::string_view() : line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') {
            value.remove_prefix(1);
        }
        if (name == "data") {
            if (has_data) {
                event.data += '\n';
            }
            event.data.append(value);
            has_data = true;
        } else if (name == "event") {
            event.type.assign(value);
        } else if (name == "id" && value.find('\0') == std::string_view::npos) {
            event.id.assign(value);
        }
    }
    ref.cut_short = has_data;
    return ref;
}

Run parse(std::string_view stream, size_t bound, const std::vector<size_t> &chunks,
          size_t fail_at)
{
    Run run;
    SseParser parser(bound);
    size_t max_events = fail_at == 0 ? SIZE_MAX : fail_at;

    auto handler = [&](const SseEvent &event) -> Status {
        if (run.events.size() >= max_events) {
            __builtin_trap();   // an event after the handler failed
        }
        if (event.data.size() + event.type.size() + event.id.size() > bound) {
            __builtin_trap();   // an event over the bound
        }
        run.events.push_back(event);
        if (run.events.size() == fail_at) {
            return Status::conflict("handler stops here");
        }
        return Status::ok();
    };

    size_t at = 0;
    size_t next = 0;
    size_t empty_in_a_row = 0;
    do {
        size_t n = chunks.empty() ? stream.size() : chunks[next++ % chunks.size()];
        // empty chunks are fed too, but a cycle of nothing but them ends in the rest
        empty_in_a_row = n == 0 ? empty_in_a_row + 1 : 0;
        if (empty_in_a_row > chunks.size()) {
            n = stream.size();
        }
        n = std::min(n, stream.size() - at);
        run.status = parser.feed(stream.substr(at, n), handler);
        at += n;
    } while (run.status.is_ok() && at < stream.size());

    if (!run.status.is_ok()) {
        // spent: the same failure again, and no event
        size_t before = run.events.size();
        Status again = parser.feed("data: x\n\n", handler);
        if (again.code() != run.status.code() || again.message() != run.status.message() ||
            run.events.size() != before) {
            __builtin_trap();
        }
    }
    run.at_boundary = parser.at_boundary();
    return run;
}

void check_prefix(const std::vector<SseEvent> &got, const std::vector<SseEvent> &want, bool exact)
{
    if (got.size() > want.size() || (exact && got.size() != want.size())) {
        __builtin_trap();
    }
    for (size_t i = 0; i < got.size(); i++) {
        if (!same_event(got[i], want[i])) {
            __builtin_trap();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }

    // small bounds reach the too_large paths; 255 stands for the default
    size_t bound = data[0] == 255 ? size_t(1) << 20 : size_t(data[0]) * 4;
    size_t k = data[1] % 16;
    size_t fail_at = data[2] % 8;
    if (size < 3 + k) {
        return 0;
    }
    std::vector<size_t> chunks(data + 3, data + 3 + k);
    std::string_view stream(reinterpret_cast<const char *>(data) + 3 + k, size - 3 - k);

    Run chunked = parse(stream, bound, chunks, fail_at);
    Run whole = parse(stream, bound, {}, fail_at);

    if (chunked.status.code() != whole.status.code()) {
        __builtin_trap();
    }
    check_prefix(chunked.events, whole.events, true);

    Reference ref = read_whole(stream);
    StatusCode code = chunked.status.code();
    if (code == StatusCode::ok) {
        check_prefix(chunked.events, ref.events, true);
        if (chunked.at_boundary == ref.cut_short) {
            __builtin_trap();
        }
    } else if (code == StatusCode::conflict) {
        // the handler's own failure, on exactly its event
        if (chunked.events.size() != fail_at || chunked.status.message() != "handler stops here") {
            __builtin_trap();
        }
        check_prefix(chunked.events, ref.events, false);
    } else if (code == StatusCode::too_large) {
        if (bound >= stream.size()) {
            __builtin_trap();   // nothing in this stream can exceed the bound
        }
        check_prefix(chunked.events, ref.events, false);
    } else {
        __builtin_trap();
    }
    return 0;
}
