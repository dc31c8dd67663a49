// Sentinel mode of redkit::Redis against a real sentinel set: one master,
// one replica, three sentinels (support/sentinel.hpp).
#include "support/sentinel.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <redkit/redis.hpp>
#include <string>

#include "support/nodes.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::Options;
using redkit::Redis;
using redkit::test::RedisServer;
using redkit::test::shared_sentinel;
using redkit::test::unique_prefix;

namespace {

long long error_count(const RedisServer& node, const std::string& prefix) {
  const std::string stats(redkit::test::node_command(node.port(), {"INFO", "errorstats"}).string_copy());
  const std::string count = redkit::test::info_field(stats, "errorstat_" + prefix);
  return count.empty() ? 0 : std::stoll(count.substr(count.find('=') + 1));
}

// The sentinel part of the shared set's URI with other sentinels in front.
std::string uri_with_sentinels(const std::string& first_sentinels, const std::string& query = "") {
  const std::string uri = shared_sentinel().uri();
  const std::string scheme = "redis-sentinel://";
  return scheme + first_sentinels + "," + uri.substr(scheme.size()) + query;
}

}  // namespace

TEST(SentinelOptions, NeedsAMasterName) {
  Options o;
  o.sentinels = {redkit::Endpoint{"127.0.0.1", 26379}};
  EXPECT_THROW(Redis{o}, redkit::ConfigError);
  o.master_name = "mymaster";
  EXPECT_NO_THROW(Redis{o});  // lazy: nothing contacted yet
}

TEST(SentinelOptions, NoReachableSentinelIsIoErrorNamingThem) {
  Redis client("redis-sentinel://127.0.0.1:1,127.0.0.1:2/0?connect_timeout=100&command_timeout=200#mymaster");
  const auto start = std::chrono::steady_clock::now();
  try {
    client.command({"PING"});
    FAIL() << "no error";
  } catch (const redkit::IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("127.0.0.1:1"), std::string::npos) << what;
    EXPECT_NE(what.find("127.0.0.1:2"), std::string::npos) << what;
    EXPECT_NE(what.find("mymaster"), std::string::npos) << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

class SentinelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { shared_sentinel(); }  // from the main thread
  Redis client_{shared_sentinel().uri()};
  std::string key_ = unique_prefix() + "k";
};

TEST_F(SentinelTest, ResolvesTheMasterByNameAndWritesThere) {
  client_.command(Command{"SET"}.key(key_).arg("v"));
  EXPECT_EQ(client_.command(Command{"GET"}.key(key_)).string_copy(), "v");
  EXPECT_EQ(shared_sentinel().current_master().cli("GET", key_), "v");
  const redkit::Reply role = client_.command({"ROLE"});
  EXPECT_EQ(role[0].string(), "master");
}

TEST_F(SentinelTest, PipelineScriptAndLeaseGoToTheMaster) {
  const auto replies = client_.pipeline({Command{"SET"}.key(key_).arg("1"), Command{"INCR"}.key(key_)});
  EXPECT_EQ(replies[1].integer(), 2);
  const redkit::Script script("return redis.call('INCR', KEYS[1])");
  EXPECT_EQ(client_.eval(script, {std::string_view(key_)}, {}).integer(), 3);
  redkit::Lease lease = client_.lease(key_);
  EXPECT_EQ(lease.command(Command{"GET"}.key(key_), 1000ms).string_copy(), "3");
  EXPECT_EQ(client_.masters().size(), 1u);
}

TEST_F(SentinelTest, SkipsSentinelsThatCannotBeReached) {
  Redis client(uri_with_sentinels("127.0.0.1:1"));
  client.command(Command{"SET"}.key(key_).arg("v"));
  EXPECT_EQ(shared_sentinel().current_master().cli("GET", key_), "v");
}

TEST_F(SentinelTest, UnknownMasterNameIsConfigError) {
  std::string uri = shared_sentinel().uri();
  uri = uri.substr(0, uri.find('#')) + "#no-such-master";
  Redis client(uri);
  try {
    client.command({"PING"});
    FAIL() << "no error";
  } catch (const redkit::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-master"), std::string::npos) << e.what();
  }
}

TEST_F(SentinelTest, ReadonlyFromADemotedMasterIsRetriedOnTheNewMaster) {
  client_.command(Command{"SET"}.key(key_).arg("1"));  // a pooled connection to the master
  RedisServer& old_master = shared_sentinel().current_master();
  RedisServer& new_master = shared_sentinel().current_replica();
  const long long readonly_before = error_count(old_master, "READONLY");

  shared_sentinel().swap_roles_without_failover();

  // The pooled connection still leads to the old master, now a replica: it
  // answers READONLY, which proves INCR did not run there; the client asks
  // the sentinels again and runs it once on the new master.
  EXPECT_EQ(client_.command(Command{"INCR"}.key(key_)).integer(), 2);
  EXPECT_EQ(error_count(old_master, "READONLY") - readonly_before, 1);
  EXPECT_EQ(new_master.cli("GET", key_), "2");

  // Pipelines too: the replies that were READONLY are rerun in place.
  client_.command(Command{"GET"}.key(key_));
  shared_sentinel().swap_roles_without_failover();
  const auto replies =
      client_.pipeline({Command{"GET"}.key(key_), Command{"INCR"}.key(key_), Command{"INCR"}.key(key_)});
  EXPECT_EQ(replies[1].integer(), 3);
  EXPECT_EQ(replies[2].integer(), 4);
  EXPECT_EQ(old_master.cli("GET", key_), "4");
}
