#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "options.h"

namespace bench {
namespace {

Status
parse(std::vector<std::string> args, Options *o)
{
    std::vector<char *>  argv;

    args.insert(args.begin(), "signalr-bench");
    for (auto &a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    return parse_options(int(args.size()), argv.data(), o);
}


TEST(Options, ChatDefaultsToTenConversationsOnTheDevStack)
{
    Options  o;

    ASSERT_TRUE(parse({"chat"}, &o).ok());
    EXPECT_EQ(o.connections, 10u);
    EXPECT_EQ(o.host_header, "127.0.0.1:8080");
    EXPECT_EQ(ntohs(o.addr.sin_port), 8080);
    EXPECT_EQ(o.protocol, SR_PROTOCOL_JSON);
}


TEST(Options, ReadsSourcesProtocolAndUrl)
{
    Options  o;

    ASSERT_TRUE(parse({"idle", "--connections", "50000", "--source",
                       "127.0.0.2,127.0.0.3", "--protocol", "messagepack",
                       "--url", "http://127.0.0.1:9090"}, &o).ok());
    EXPECT_EQ(o.connections, 50000u);
    ASSERT_EQ(o.source_addrs.size(), 2u);
    EXPECT_EQ(o.source_addrs[1].sin_addr.s_addr, inet_addr("127.0.0.3"));
    EXPECT_EQ(o.protocol, SR_PROTOCOL_MSGPACK);
    EXPECT_EQ(ntohs(o.addr.sin_port), 9090);
}


TEST(Options, RefusesWhatItCannotUse)
{
    Options  o;

    EXPECT_FALSE(parse({}, &o).ok());
    EXPECT_FALSE(parse({"storm"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--connections", "0"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--connections", "1.5"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--protocol", "xml"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--url", "https://x"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--url", "http://localhost:80"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--source", "127.0.0.300"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--bogus"}, &o).ok());
    EXPECT_FALSE(parse({"chat", "--procs", "100000"}, &o).ok());
}


TEST(Options, NoMoreProcessesThanCores)
{
    Options      o;
    std::string  too_many = std::to_string(sysconf(_SC_NPROCESSORS_ONLN)
                                           + 1);

    Status  s = parse({"invoke", "--procs", too_many}, &o);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("one process per core"), std::string::npos);
}


TEST(Options, IdleMayTakeMoreProcessesThanCoresForItsSockets)
{
    Options      o;
    std::string  more = std::to_string(sysconf(_SC_NPROCESSORS_ONLN) + 4);

    ASSERT_TRUE(parse({"idle", "--connections", "100000", "--procs", more},
                      &o).ok());
    EXPECT_EQ(std::to_string(o.procs), more);
}


TEST(Options, BroadcastNeedsAPublisherAndReadsItsSettings)
{
    Options  o;

    EXPECT_FALSE(parse({"broadcast"}, &o).ok());
    ASSERT_TRUE(parse({"broadcast", "--publish", "http://127.0.0.1:1/p",
                       "--publish-format", "raw", "--rate", "100",
                       "--payload-bytes", "100", "--publishers", "4",
                       "--window", "8", "--plain-websocket"}, &o).ok());
    EXPECT_EQ(o.connections, 1000u);
    EXPECT_EQ(o.publish_format, "raw");
    EXPECT_EQ(o.rate, 100);
    EXPECT_EQ(o.payload_bytes, 100u);
    EXPECT_EQ(o.publishers, 4u);
    EXPECT_EQ(o.window, 8u);
    EXPECT_TRUE(o.plain_websocket);

    EXPECT_FALSE(parse({"broadcast", "--publish", "x", "--publish-format",
                        "xml"}, &o).ok());
    EXPECT_FALSE(parse({"broadcast", "--publish", "x", "--payload-bytes",
                        "10"}, &o).ok());
    EXPECT_FALSE(parse({"broadcast", "--publish", "x", "--rate", "-1"}, &o)
                 .ok());
}


TEST(Options, SplitListDropsEmptyItems)
{
    EXPECT_EQ(split_list("a,,b,"), (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(split_list("").empty());
}

}  // namespace
}  // namespace bench
