#include "replay.h"

namespace signalrd {

namespace {

// One fragment's place: in a finished message (message >= 0, index into its fragment
// list) or among the unfinished fragments (message < 0, index into that vector).
struct Slot {
    int message;
    size_t index;
    const std::string *fragment_id;
    const std::string *message_id;
};

std::vector<Slot> flatten(const ConversationSnapshot &s, const std::vector<Fragment> &unfinished)
{
    std::vector<Slot> slots;

    for (size_t mi = 0; mi < s.messages.size(); mi++) {
        const StoredMessage &m = s.messages[mi];
        for (size_t fi = 0; fi < m.fragments.size(); fi++) {
            slots.push_back({static_cast<int>(mi), fi, &m.fragments[fi].first, &m.id});
        }
    }
    for (size_t ui = 0; ui < unfinished.size(); ui++) {
        slots.push_back({-1, ui, &unfinished[ui].fragment_id, &unfinished[ui].message_id});
    }
    return slots;
}

// Index of the first slot the client has not seen.
size_t first_unseen(const std::vector<Slot> &slots, const ConversationSnapshot &s,
                    const ResumePoint &resume)
{
    if (!resume.last_fragment_id.empty()) {
        for (size_t i = 0; i < slots.size(); i++) {
            if (*slots[i].fragment_id == resume.last_fragment_id) {
                return i + 1;
            }
        }
        for (size_t i = 0; i < slots.size(); i++) {
            if (*slots[i].fragment_id > resume.last_fragment_id) {
                return i;
            }
        }
        return slots.size();
    }

    if (resume.last_message_id.empty()) {
        return 0;
    }

    for (size_t i = 0; i < slots.size(); i++) {
        if (*slots[i].message_id != resume.last_message_id) {
            continue;
        }
        if (slots[i].message < 0) {
            return i;   // in progress: replay it from its start
        }
        return i + s.messages[slots[i].message].fragments.size();
    }
    for (size_t i = 0; i < slots.size(); i++) {
        if (*slots[i].message_id > resume.last_message_id) {
            return i;
        }
    }
    return slots.size();
}

}  // namespace

ReplayPlan plan_replay(const ConversationSnapshot &snapshot, const ResumePoint &resume)
{
    std::vector<Fragment> unfinished = unfinished_fragments(snapshot);
    std::vector<Slot> slots = flatten(snapshot, unfinished);
    ReplayPlan plan;

    plan.watermark = resume.last_fragment_id;
    for (const Slot &slot : slots) {
        if (*slot.fragment_id > plan.watermark) {
            plan.watermark = *slot.fragment_id;
        }
    }

    size_t i = first_unseen(slots, snapshot, resume);
    while (i < slots.size()) {
        const Slot &slot = slots[i];
        if (slot.message < 0) {
            plan.fragments.push_back(unfinished[slot.index]);
            i++;
            continue;
        }

        const StoredMessage &m = snapshot.messages[slot.message];
        size_t begin = slot.index == 0 ? 0 : m.fragments[slot.index - 1].second;
        plan.fragments.push_back(
            {m.id, m.role, m.text.substr(begin), m.final_fragment_id(), true});
        i += m.fragments.size() - slot.index;
    }
    return plan;
}

}  // namespace signalrd
