// What a Stream call replays before it follows a conversation live.
//
// Every fragment of a conversation has a place in one sequence: the fragments of each
// finished message (from its stored fragment list), in message order, then those of the
// message being generated (from the backlog). A resume point names the last fragment
// the client saw; the replay is everything after it in that sequence:
//
//   - the rest of a finished message as one final fragment carrying the remaining text
//     (the whole text when the client had none of it), with the id of the message's
//     final fragment;
//   - the fragments of the message in progress one by one, as they were sent live.
//
// Because finished messages keep their fragment boundaries, the answer is exact whether
// or not the backlog has expired. A lastFragmentId the conversation does not hold falls
// back to UUIDv7 order: everything with a greater fragment id. lastMessageId alone means
// "had every message up to that one": a finished one is skipped whole, one in progress
// is replayed from its start.

#pragma once

#include <string>
#include <vector>

#include "chat_types.h"

namespace signalrd {

// Either id may be empty (null on the wire).
struct ResumePoint {
    std::string last_message_id;
    std::string last_fragment_id;
};

struct ReplayPlan {
    std::vector<Fragment> fragments;
    // The greatest fragment id the replay and the resume point cover: a live fragment at
    // or below it was already delivered (or known) and is dropped.
    std::string watermark;
};

ReplayPlan plan_replay(const ConversationSnapshot &snapshot, const ResumePoint &resume);

}  // namespace signalrd
