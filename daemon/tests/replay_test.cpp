#include <gtest/gtest.h>

#include "replay.h"
#include "uuid.h"

namespace signalrd {
namespace {

// Builds conversations whose ids are in creation order, as the daemon makes them.
class ReplayPlanning : public ::testing::Test {
protected:
    std::string id() { return gen_.next_at(ms_++); }

    // A finished message whose fragments have the given texts.
    StoredMessage finished(const std::string &role, const std::vector<std::string> &texts)
    {
        StoredMessage m;
        m.id = id();
        m.role = role;
        for (const std::string &t : texts) {
            m.text += t;
            m.fragments.emplace_back(id(), m.text.size());
        }
        return m;
    }

    // Fragments of a message still being generated.
    std::vector<Fragment> in_progress(const std::vector<std::string> &texts)
    {
        std::string message_id = id();
        std::vector<Fragment> out;
        for (const std::string &t : texts) {
            out.push_back({message_id, "assistant", t, id(), false});
        }
        return out;
    }

    static std::string texts(const std::vector<Fragment> &fragments)
    {
        std::string out;
        for (const Fragment &f : fragments) {
            out += "[" + f.text + "]";
        }
        return out;
    }

    UuidV7Generator gen_;
    uint64_t ms_ = 1000;
};

TEST_F(ReplayPlanning, WithoutResumePointEveryFinishedMessageComesWholeAndFinal)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"hi"}), finished("assistant", {"a ", "b ", "c"})};

    ReplayPlan plan = plan_replay(s, {});

    ASSERT_EQ(plan.fragments.size(), 2u);
    EXPECT_EQ(plan.fragments[0].text, "hi");
    EXPECT_EQ(plan.fragments[0].sender, "user");
    EXPECT_EQ(plan.fragments[1].text, "a b c");
    EXPECT_EQ(plan.fragments[1].sender, "assistant");
    EXPECT_EQ(plan.fragments[1].fragment_id, s.messages[1].final_fragment_id());
    EXPECT_TRUE(plan.fragments[0].is_final && plan.fragments[1].is_final);
    EXPECT_EQ(plan.watermark, s.messages[1].final_fragment_id());
}

TEST_F(ReplayPlanning, ResumingInsideAFinishedMessageGivesExactlyTheRest)
{
    ConversationSnapshot s;
    std::vector<std::string> parts = {"one ", "two ", "three ", "four ", "five"};
    s.messages = {finished("user", {"q"}), finished("assistant", parts)};
    const StoredMessage &reply = s.messages[1];

    for (size_t k = 0; k < parts.size(); k++) {
        ReplayPlan plan = plan_replay(s, {reply.id, reply.fragments[k].first});
        std::string rest;
        for (size_t j = k + 1; j < parts.size(); j++) {
            rest += parts[j];
        }
        if (rest.empty()) {
            EXPECT_TRUE(plan.fragments.empty()) << "cut after the final fragment: nothing left";
            continue;
        }
        ASSERT_EQ(plan.fragments.size(), 1u) << "cut " << k;
        EXPECT_EQ(plan.fragments[0].text, rest) << "cut " << k;
        EXPECT_EQ(plan.fragments[0].message_id, reply.id);
        EXPECT_TRUE(plan.fragments[0].is_final);
    }
}

TEST_F(ReplayPlanning, ResumingInsideTheMessageInProgressGivesItsRemainingFragments)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"q"})};
    std::vector<Fragment> live = in_progress({"a", "b", "c", "d"});
    s.backlog = {{s.messages[0].id, "user", "q", s.messages[0].final_fragment_id(), true}};
    s.backlog.insert(s.backlog.end(), live.begin(), live.end());

    // the reference compared message ids first and so dropped the rest of this message
    ReplayPlan plan = plan_replay(s, {live[0].message_id, live[1].fragment_id});

    EXPECT_EQ(texts(plan.fragments), "[c][d]");
    EXPECT_FALSE(plan.fragments[0].is_final);
    EXPECT_EQ(plan.watermark, live[3].fragment_id);
}

TEST_F(ReplayPlanning, ResumingAtTheUserTurnGivesTheWholeReplySoFar)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"q"})};
    std::vector<Fragment> live = in_progress({"a", "b"});
    s.backlog = live;

    ReplayPlan plan = plan_replay(s, {s.messages[0].id, s.messages[0].final_fragment_id()});

    EXPECT_EQ(texts(plan.fragments), "[a][b]");
}

TEST_F(ReplayPlanning, LaterTurnsFollowTheRestOfTheResumedMessage)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"q1"}), finished("assistant", {"x", "y"}),
                  finished("user", {"q2"}), finished("assistant", {"z"})};

    ReplayPlan plan = plan_replay(s, {s.messages[1].id, s.messages[1].fragments[0].first});

    EXPECT_EQ(texts(plan.fragments), "[y][q2][z]");
}

TEST_F(ReplayPlanning, AnUnknownFragmentIdFallsBackToIdOrder)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"q"})};
    std::string between = id();   // newer than the user turn, older than the reply
    s.messages.push_back(finished("assistant", {"a", "b"}));

    ReplayPlan plan = plan_replay(s, {"", between});

    EXPECT_EQ(texts(plan.fragments), "[ab]");
}

TEST_F(ReplayPlanning, LastMessageIdAloneSkipsThatMessageWhole)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"q"}), finished("assistant", {"a", "b"})};

    ReplayPlan plan = plan_replay(s, {s.messages[0].id, ""});

    EXPECT_EQ(texts(plan.fragments), "[ab]");
}

TEST_F(ReplayPlanning, BacklogEntriesOfFinishedMessagesAreNotRepeated)
{
    ConversationSnapshot s;
    s.messages = {finished("user", {"q"})};
    s.backlog = {{s.messages[0].id, "user", "q", s.messages[0].final_fragment_id(), true}};

    ReplayPlan plan = plan_replay(s, {});

    EXPECT_EQ(texts(plan.fragments), "[q]");
}

}  // namespace
}  // namespace signalrd
