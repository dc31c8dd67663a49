// redkit::Cluster: slot computation, and routing, pipelines, redirects and
// scripts against a real 3-master, 3-replica cluster (support/cluster.hpp).
#include "support/cluster.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <redkit/cluster.hpp>
#include <redkit/cache.hpp>
#include <redkit/lock.hpp>
#include <redkit/detail/slot_map.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/nodes.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Cluster;
using redkit::Command;
using redkit::hash_slot;
using redkit::Reply;
using redkit::test::RedisServer;
using redkit::test::shared_cluster;
using redkit::test::unique_prefix;

namespace {

// A key whose slot is `slot` and whose text starts with prefix.
std::string key_in_slot(const std::string& prefix, int slot) {
  for (int n = 0;; ++n) {
    std::string key = prefix + std::to_string(n);
    if (hash_slot(key) == slot) return key;
  }
}

// One key per slot, all 16384 of them.
std::vector<std::string> key_per_slot(const std::string& prefix) {
  std::vector<std::string> keys(16384);
  int found = 0;
  for (int n = 0; found < 16384; ++n) {
    std::string key = prefix + std::to_string(n);
    std::string& slot_key = keys[static_cast<std::size_t>(hash_slot(key))];
    if (slot_key.empty()) {
      slot_key = std::move(key);
      ++found;
    }
  }
  return keys;
}

// How many error replies with this prefix the node has sent (INFO errorstats).
long long error_count(const RedisServer& node, const std::string& prefix) {
  const std::string stats(redkit::test::node_command(node.port(), {"INFO", "errorstats"}).string_copy());
  const std::string count = redkit::test::info_field(stats, "errorstat_" + prefix);
  return count.empty() ? 0 : std::stoll(count.substr(count.find('=') + 1));
}

// A master other than `not_this`.
RedisServer& other_master(RedisServer& not_this) {
  for (RedisServer* m : shared_cluster().masters()) {
    if (m != &not_this) return *m;
  }
  throw std::runtime_error("no other master");
}

Cluster make_client() { return Cluster(shared_cluster().seed_uri()); }

}  // namespace

// ---- slots, without servers -------------------------------------------------

TEST(ClusterSlot, Crc16MatchesTheXmodemCheckValue) {
  EXPECT_EQ(redkit::detail::crc16("123456789"), 0x31C3);
  EXPECT_EQ(redkit::detail::crc16(""), 0);
  EXPECT_EQ(hash_slot("123456789"), 0x31C3 % 16384);
}

TEST(ClusterSlot, MatchesSlotsRedisComputes) {
  // CLUSTER KEYSLOT values from Redis itself.
  EXPECT_EQ(hash_slot("foo"), 12182);
  EXPECT_EQ(hash_slot("bar"), 5061);
  EXPECT_EQ(hash_slot("somekey"), 11058);
  EXPECT_EQ(hash_slot(""), 0);
}

TEST(ClusterSlot, KeysWithTheSameHashTagShareASlot) {
  EXPECT_EQ(hash_slot("{user1000}.following"), hash_slot("{user1000}.followers"));
  EXPECT_EQ(hash_slot("{user1000}.following"), hash_slot("user1000"));
  EXPECT_EQ(hash_slot("foo{bar}{zap}"), hash_slot("bar"));  // the first tag only
  EXPECT_EQ(hash_slot("foo{{bar}}zap"), hash_slot("{bar"));
}

TEST(ClusterSlot, EmptyOrUnclosedTagHashesTheWholeKey) {
  EXPECT_EQ(hash_slot("{}"), redkit::detail::crc16("{}") % 16384);
  EXPECT_EQ(hash_slot("{"), redkit::detail::crc16("{") % 16384);
  EXPECT_EQ(hash_slot("}{"), redkit::detail::crc16("}{") % 16384);
  EXPECT_EQ(hash_slot("foo{}{bar}"), redkit::detail::crc16("foo{}{bar}") % 16384);
  EXPECT_EQ(hash_slot("a{b"), redkit::detail::crc16("a{b") % 16384);
}

TEST(ClusterSlot, SlotIsBinarySafe) {
  const std::string key("a\0{x}b", 6);
  EXPECT_EQ(hash_slot(key), hash_slot("x"));
}

TEST(ClusterSlot, GroupBySlotKeepsFirstAppearanceOrder) {
  const std::vector<std::string> keys = {"{a}1", "{b}1", "{a}2", "{c}1", "{b}2"};
  const auto groups = redkit::group_by_slot(keys);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0], (std::vector<std::size_t>{0, 2}));
  EXPECT_EQ(groups[1], (std::vector<std::size_t>{1, 4}));
  EXPECT_EQ(groups[2], (std::vector<std::size_t>{3}));
}

TEST(ClusterRedirect, ParsesMovedAskAndTheRetryableErrors) {
  using Kind = redkit::detail::Redirect::Kind;
  auto moved = redkit::detail::parse_redirect("MOVED 3999 127.0.0.1:6381", "10.0.0.1");
  EXPECT_EQ(moved.kind, Kind::Moved);
  EXPECT_EQ(moved.slot, 3999);
  EXPECT_EQ(moved.to.host, "127.0.0.1");
  EXPECT_EQ(moved.to.port, 6381);
  auto ask = redkit::detail::parse_redirect("ASK 1 :7000", "10.0.0.1");  // unknown host: the one we asked
  EXPECT_EQ(ask.kind, Kind::Ask);
  EXPECT_EQ(ask.to.host, "10.0.0.1");
  EXPECT_EQ(ask.to.port, 7000);
  EXPECT_EQ(redkit::detail::parse_redirect("MOVED 2 [::1]:7000", "x").to.host, "::1");
  EXPECT_EQ(
      redkit::detail::parse_redirect("TRYAGAIN Multiple keys request during rehashing of slot", "x").kind,
      Kind::TryAgain);
  EXPECT_EQ(redkit::detail::parse_redirect("CLUSTERDOWN The cluster is down", "x").kind, Kind::ClusterDown);
  EXPECT_EQ(redkit::detail::parse_redirect("READONLY You can't write against a read only replica.", "x").kind,
            Kind::ReadOnly);
  EXPECT_EQ(redkit::detail::parse_redirect("ERR wrong number of arguments", "x").kind, Kind::None);
  EXPECT_EQ(redkit::detail::parse_redirect("MOVEDX 1 a:1", "x").kind, Kind::None);
  EXPECT_THROW(redkit::detail::parse_redirect("MOVED 99999 127.0.0.1:1", "x"), redkit::ProtocolError);
}

TEST(ClusterOptions, RejectsOptionsACLusterCannotUse) {
  redkit::Options db1;
  db1.db = 1;
  EXPECT_THROW(Cluster{db1}, redkit::ConfigError);
  redkit::Options unix_socket;
  unix_socket.unix_socket = "/tmp/redis.sock";
  EXPECT_THROW(Cluster{unix_socket}, redkit::ConfigError);
  EXPECT_THROW(Cluster("redis-sentinel://127.0.0.1:26379/0#m"), redkit::ConfigError);
  EXPECT_NO_THROW(Cluster("redis://127.0.0.1:1/0"));  // lazy: no connection yet
}

TEST(ClusterOptions, UnreachableSeedGivesIoErrorNamingIt) {
  Cluster client("redis://127.0.0.1:1/0?connect_timeout=200&command_timeout=200");
  try {
    client.command(Command{"GET"}.key("k"));
    FAIL() << "no error";
  } catch (const redkit::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
  }
}

// ---- against a real cluster -----------------------------------------------

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { shared_cluster(); }  // from the main thread
  Cluster client_ = make_client();
  std::string prefix_ = unique_prefix();
};

TEST_F(ClusterTest, CommandsReachTheMasterOfEverySlot) {
  const auto keys = key_per_slot(prefix_);
  std::vector<Command> sets;
  for (const auto& key : keys) sets.push_back(Command{"SET"}.key(key).arg("v" + key));
  for (const Reply& r : client_.pipeline(sets)) EXPECT_TRUE(r.ok());

  // Each key landed on the master that serves its slot, not elsewhere.
  for (int slot : {0, 1, 5460, 5461, 10922, 10923, 12739, 16383}) {
    const std::string& key = keys[static_cast<std::size_t>(slot)];
    RedisServer& owner = shared_cluster().master_of(slot);
    EXPECT_EQ(owner.cli("GET", key), "v" + key) << "slot " << slot;
    EXPECT_EQ(client_.command(Command{"GET"}.key(key)).string_copy(), "v" + key);
  }
  // Single commands, a sample of slots spread over all masters.
  for (std::size_t slot = 0; slot < keys.size(); slot += 97) {
    EXPECT_EQ(client_.command(Command{"GET"}.key(keys[slot])).string_copy(), "v" + keys[slot]);
  }
}

TEST_F(ClusterTest, PipelineAcrossNodesKeepsCallerOrderWithErrorsInPlace) {
  // Keys on three different masters.
  const std::string a = key_in_slot(prefix_ + "a", 100);    // first master
  const std::string b = key_in_slot(prefix_ + "b", 8000);   // second
  const std::string c = key_in_slot(prefix_ + "c", 16000);  // third
  ASSERT_NE(shared_cluster().master_of(100).port(), shared_cluster().master_of(8000).port());

  std::vector<Command> cmds;
  cmds.push_back(Command{"SET"}.key(a).arg("1"));
  cmds.push_back(Command{"SET"}.key(b).arg("text"));
  cmds.push_back(Command{"INCR"}.key(c));
  cmds.push_back(Command{"INCR"}.key(b));  // error: not an integer
  cmds.push_back(Command{"INCR"}.key(a));
  cmds.push_back(Command{"GET"}.key(b));
  cmds.push_back(Command{"INCRBY"}.key(c).arg(10));
  cmds.push_back(Command{"PING"});  // keyless: any master
  const auto replies = client_.pipeline(cmds);
  ASSERT_EQ(replies.size(), cmds.size());
  EXPECT_TRUE(replies[0].ok());
  EXPECT_TRUE(replies[1].ok());
  EXPECT_EQ(replies[2].integer(), 1);
  ASSERT_TRUE(replies[3].is_error());
  EXPECT_EQ(std::string(replies[3].error()).rfind("ERR", 0), 0u);
  EXPECT_EQ(replies[4].integer(), 2);
  EXPECT_EQ(replies[5].string(), "text");
  EXPECT_EQ(replies[6].integer(), 11);
  EXPECT_EQ(replies[7].string(), "PONG");
  EXPECT_TRUE(client_.pipeline({}).empty());
}

TEST_F(ClusterTest, CommandWithoutRoutingKeyFollowsMoved) {
  const std::string key = prefix_ + "k";
  client_.command(Command{"SET"}.key(key).arg("v"));
  // Built from argv: no routing key, so it goes to any master; a MOVED
  // reply sends it on. Every master in turn, so some go straight there.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(client_.command({"GET", key}).string_copy(), "v");
  EXPECT_EQ(client_.command({"PING"}).string_copy(), "PONG");
}

TEST_F(ClusterTest, ErrorReplyIsThrownAsReplyError) {
  const std::string key = prefix_ + "k";
  client_.command(Command{"SET"}.key(key).arg("x"));
  EXPECT_THROW(client_.command(Command{"INCR"}.key(key)), redkit::ReplyError);
  try {
    client_.command(Command{"MGET"}.key(prefix_ + "{a}").key(prefix_ + "{b}"));
    FAIL() << "no CROSSSLOT";
  } catch (const redkit::ReplyError& e) {
    EXPECT_EQ(e.prefix(), "CROSSSLOT");
  }
}

TEST_F(ClusterTest, MovedAfterASlotMoveUpdatesTheMap) {
  const int slot = 4242;
  const std::string key = key_in_slot(prefix_, slot);
  client_.command(Command{"SET"}.key(key).arg("before"));  // the client has the map now
  RedisServer& from = shared_cluster().master_of(slot);
  RedisServer& to = other_master(from);
  shared_cluster().move_slot(slot, to);

  const long long moved_before = error_count(from, "MOVED");
  EXPECT_EQ(client_.command(Command{"GET"}.key(key)).string_copy(), "before");  // MOVED, followed
  client_.command(Command{"SET"}.key(key).arg("after"));                   // straight to the new owner
  EXPECT_EQ(client_.command(Command{"GET"}.key(key)).string_copy(), "after");
  EXPECT_EQ(error_count(from, "MOVED") - moved_before, 1);
  EXPECT_EQ(to.cli("GET", key), "after");

  // A pipeline with the stale map is redirected the same way.
  Cluster stale = make_client();
  stale.command(Command{"GET"}.key(key));
  shared_cluster().move_slot(slot, from);
  const auto replies = stale.pipeline({Command{"GET"}.key(key), Command{"SET"}.key(key).arg("back")});
  EXPECT_EQ(replies[0].string(), "after");
  EXPECT_TRUE(replies[1].ok());
  EXPECT_EQ(from.cli("GET", key), "back");
}

TEST_F(ClusterTest, AskDuringALiveMigrationIsFollowedWithoutError) {
  const int slot = 7777;
  const std::string tag = "{" + key_in_slot(prefix_ + "tag", slot) + "}";
  ASSERT_EQ(hash_slot(tag), slot);
  const std::string moved_key = tag + "moved";
  const std::string staying_key = tag + "staying";
  const std::string new_key = tag + "new";
  client_.command(Command{"SET"}.key(moved_key).arg("m"));
  client_.command(Command{"SET"}.key(staying_key).arg("s"));

  RedisServer& owner = shared_cluster().master_of(slot);
  RedisServer& target = other_master(owner);
  shared_cluster().begin_slot_migration(slot, target);
  shared_cluster().migrate_key(owner, target, moved_key);

  const long long ask_before = error_count(owner, "ASK");
  EXPECT_EQ(client_.command(Command{"GET"}.key(moved_key)).string_copy(), "m");    // ASK, then ASKING + GET
  EXPECT_EQ(client_.command(Command{"GET"}.key(staying_key)).string_copy(), "s");  // still on the owner
  EXPECT_TRUE(client_.command(Command{"SET"}.key(new_key).arg("n")).ok());    // created on the target
  EXPECT_EQ(target.cli("CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)), "2");
  const auto replies = client_.pipeline(
      {Command{"GET"}.key(moved_key), Command{"GET"}.key(staying_key), Command{"GET"}.key(new_key)});
  EXPECT_EQ(replies[0].string(), "m");
  EXPECT_EQ(replies[1].string(), "s");
  EXPECT_EQ(replies[2].string(), "n");
  // ASK leaves the map alone: the next command goes to the owner first again.
  EXPECT_EQ(error_count(owner, "ASK") - ask_before, 4);

  shared_cluster().finish_slot_migration(slot, owner, target);
  EXPECT_EQ(client_.command(Command{"GET"}.key(staying_key)).string_copy(), "s");
}

TEST_F(ClusterTest, CounterWorkloadSurvivesAReshardOfItsSlotWithNoError) {
  const int slot = 6543;
  const std::string key = key_in_slot(prefix_ + "ctr", slot);
  std::atomic<bool> stop{false};
  std::atomic<long long> acked{0};
  std::atomic<long long> errors{0};
  std::string first_error;
  std::thread worker([&, client = client_]() mutable {
    while (!stop) {
      try {
        client.command(Command{"INCR"}.key(key));
        ++acked;
      } catch (const redkit::Error& e) {
        if (errors++ == 0) first_error = e.what();
      }
    }
  });
  ASSERT_TRUE(redkit::test::wait_until([&] { return acked > 100; }, 5s));
  RedisServer& owner = shared_cluster().master_of(slot);
  RedisServer& target = other_master(owner);
  shared_cluster().begin_slot_migration(slot, target);
  const long long before_move = acked;
  ASSERT_TRUE(redkit::test::wait_until([&] { return acked > before_move + 100; }, 5s));  // while MIGRATING
  shared_cluster().migrate_key(owner, target, key);
  const long long after_move = acked;
  ASSERT_TRUE(redkit::test::wait_until([&] { return acked > after_move + 100; }, 5s));  // ASK to the target
  shared_cluster().finish_slot_migration(slot, owner, target);
  const long long after_finish = acked;
  ASSERT_TRUE(
      redkit::test::wait_until([&] { return acked > after_finish + 100; }, 5s));  // MOVED, then direct
  stop = true;
  worker.join();
  EXPECT_EQ(errors, 0) << first_error;
  EXPECT_EQ(target.cli("GET", key), std::to_string(acked.load()));
}

// Moves slot from owner to another master, with every key in it (at most
// 100); returns the new owner.
RedisServer& move_slot_with_its_keys(int slot, RedisServer& owner) {
  RedisServer& target = other_master(owner);
  shared_cluster().begin_slot_migration(slot, target);
  const std::string keys = owner.cli("CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "100");
  for (std::size_t at = 0; at < keys.size();) {
    const std::size_t nl = keys.find('\n', at);
    const std::string key = keys.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    if (!key.empty()) shared_cluster().migrate_key(owner, target, key);
    at = nl == std::string::npos ? keys.size() : nl + 1;
  }
  shared_cluster().finish_slot_migration(slot, owner, target);
  return target;
}

bool has_blocked_client(RedisServer& node) {
  return node.cli("INFO", "clients").find("blocked_clients:0") == std::string::npos;
}

TEST_F(ClusterTest, LockWaiterBlockedThroughAReshardOfItsSlotAcquiresWithNoError) {
  const int slot = 9876;
  const std::string name = key_in_slot(prefix_ + "lock", slot);
  redkit::RedisLock<Cluster> holder(client_, name);
  holder.lock();
  RedisServer& owner = shared_cluster().master_of(slot);
  const auto blocked = has_blocked_client;
  ASSERT_FALSE(blocked(owner));

  std::atomic<bool> got{false};
  std::string error;
  // A client of its own: another process, so the waiter waits in Redis
  // (threads of one process wait in the process).
  std::thread waiter([&, client = Cluster(client_.options())]() mutable {
    try {
      redkit::RedisLock<Cluster> mine(client, name);
      got = mine.try_lock_for(20s);
      if (got) mine.unlock();
    } catch (const redkit::Error& e) {
      error = e.what();
    }
  });
  // EXPECT, not ASSERT, from here on: the waiter thread must be joined.
  EXPECT_TRUE(redkit::test::wait_until([&] { return blocked(owner); }, 5s));  // in BLPOP

  // Move the slot, with every key in it, to another master under the waiter.
  RedisServer& target = move_slot_with_its_keys(slot, owner);
  // The blocked BLPOP was answered with MOVED; the waiter blocks again on the new owner.
  EXPECT_TRUE(redkit::test::wait_until([&] { return blocked(target); }, 5s));
  EXPECT_FALSE(got.load());

  const auto t0 = std::chrono::steady_clock::now();
  holder.unlock();
  waiter.join();
  EXPECT_EQ(error, "");
  EXPECT_TRUE(got.load());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // woken by the release, not the fallback
}

TEST_F(ClusterTest, CacheWaiterBlockedThroughAReshardOfItsSlotGetsTheLoadedValue) {
  using Cache = redkit::RedisCache<std::string, redkit::Serializer<std::string>, Cluster>;
  const int slot = 4321;
  const std::string key = key_in_slot(prefix_ + "cache", slot);
  redkit::CacheOptions o;
  o.xfetch_beta = 0;
  o.fill_lock_ttl = 20s;  // a waiter woken only by the lock's expiry would take 20 s
  o.wait_timeout = 20s;
  Cache first(client_, "", o);
  Cache second(make_client(), "", o);  // shares no single flight with first: like another process
  RedisServer& owner = shared_cluster().master_of(slot);
  ASSERT_FALSE(has_blocked_client(owner));

  std::promise<void> gate;
  std::shared_future<void> opened_gate = gate.get_future().share();
  std::atomic<bool> loading{false};
  std::thread loader([&] {
    first.get_or_set(key, [&] {
      loading = true;
      opened_gate.wait();
      return std::string("loaded");
    });
  });
  // EXPECT, not ASSERT, from here on: the threads must be joined.
  EXPECT_TRUE(redkit::test::wait_until([&] { return loading.load(); }, 5s));  // first holds the fill lock
  std::string got;
  std::string error;
  std::atomic<bool> second_loaded{false};
  std::thread waiter([&] {
    try {
      got = second.get_or_set(key, [&] {
        second_loaded = true;
        return std::string("second");
      });
    } catch (const redkit::Error& e) {
      error = e.what();
    }
  });
  EXPECT_TRUE(redkit::test::wait_until([&] { return has_blocked_client(owner); }, 5s));  // in BLPOP
  RedisServer& target = move_slot_with_its_keys(slot, owner);
  EXPECT_TRUE(redkit::test::wait_until([&] { return has_blocked_client(target); }, 5s));  // again, there

  const auto t0 = std::chrono::steady_clock::now();
  gate.set_value();
  loader.join();
  waiter.join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(got, "loaded");
  EXPECT_FALSE(second_loaded.load());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // woken when the value landed
}

TEST_F(ClusterTest, TryAgainIsRetriedUntilTheMigrationEnds) {
  const int slot = 9001;
  const std::string tag = "{" + key_in_slot(prefix_ + "tag", slot) + "}";
  client_.command(Command{"SET"}.key(tag + "1").arg("one"));
  client_.command(Command{"SET"}.key(tag + "2").arg("two"));
  RedisServer& owner = shared_cluster().master_of(slot);
  RedisServer& target = other_master(owner);
  shared_cluster().begin_slot_migration(slot, target);
  shared_cluster().migrate_key(owner, target, tag + "1");

  // Keys split between two nodes: MGET gets TRYAGAIN until the slot settles.
  // A client whose command timeout leaves room to wait it out:
  Cluster patient(shared_cluster().seed_uri() + "?command_timeout=5000");
  auto mget = std::async(std::launch::async,
                         [&] { return patient.command(Command{"MGET"}.key(tag + "1").key(tag + "2")); });
  EXPECT_EQ(mget.wait_for(300ms), std::future_status::timeout);
  shared_cluster().finish_slot_migration(slot, owner, target);
  Reply r = mget.get();
  EXPECT_EQ(r[0].string(), "one");
  EXPECT_EQ(r[1].string(), "two");
}

TEST_F(ClusterTest, TryAgainReachesTheCallerWhenTheBudgetRunsOut) {
  const int slot = 9500;
  const std::string tag = "{" + key_in_slot(prefix_ + "tag", slot) + "}";
  client_.command(Command{"SET"}.key(tag + "1").arg("one"));
  client_.command(Command{"SET"}.key(tag + "2").arg("two"));
  RedisServer& owner = shared_cluster().master_of(slot);
  RedisServer& target = other_master(owner);
  shared_cluster().begin_slot_migration(slot, target);
  shared_cluster().migrate_key(owner, target, tag + "1");

  Cluster hasty(shared_cluster().seed_uri() + "?command_timeout=200");
  const auto start = std::chrono::steady_clock::now();
  try {
    hasty.command(Command{"MGET"}.key(tag + "1").key(tag + "2"));
    ADD_FAILURE() << "no TRYAGAIN";
  } catch (const redkit::ReplyError& e) {
    EXPECT_EQ(e.prefix(), "TRYAGAIN");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  shared_cluster().finish_slot_migration(slot, owner, target);
}

TEST_F(ClusterTest, ScriptsRunOnTheNodeOfTheirFirstKeyAndSurviveScriptFlush) {
  const redkit::Script script("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])");
  std::vector<std::string> keys;
  for (int slot : {10, 6000, 12000}) keys.push_back(key_in_slot(prefix_, slot));
  for (const auto& key : keys) {
    EXPECT_EQ(client_.eval(script, {std::string_view(key)}, {std::string_view("x")}).string_copy(), "x");
    EXPECT_EQ(shared_cluster().master_of(hash_slot(key)).cli("GET", key), "x");
  }
  for (RedisServer* m : shared_cluster().masters()) m->cli("SCRIPT", "FLUSH");
  for (const auto& key : keys) {
    EXPECT_EQ(client_.eval(script, {std::string_view(key)}, {std::string_view("y")}).string_copy(), "y");
  }
  // A script over keys in two slots is refused by the server.
  const std::string other = key_in_slot(prefix_, 13000);
  EXPECT_THROW(
      client_.eval(script, {std::string_view(keys[0]), std::string_view(other)}, {std::string_view("z")}),
      redkit::ReplyError);
}

TEST_F(ClusterTest, LeaseIsAConnectionToTheKeysMaster) {
  const std::string key = key_in_slot(prefix_, 15000);
  client_.command(Command{"SET"}.key(key).arg("v"));
  {
    redkit::Lease lease = client_.lease(key);
    // No redirect on a lease: GET only works on the owner.
    EXPECT_EQ(lease.command(Command{"GET"}.key(key), 1000ms).string_copy(), "v");
  }
  // A blocking pop on the lease is woken by a push through the client.
  const std::string list = key_in_slot(prefix_ + "list", 300);
  auto pop = std::async(std::launch::async, [&] {
    redkit::Lease lease = client_.lease(list);
    const redkit::Reply popped = lease.command(Command{"BLPOP"}.key(list).arg("5"), 6000ms);
    return std::string(popped[1].string());
  });
  EXPECT_EQ(pop.wait_for(100ms), std::future_status::timeout);
  client_.command(Command{"RPUSH"}.key(list).arg("wake"));
  EXPECT_EQ(pop.get(), "wake");
  EXPECT_EQ(client_.lease().command(Command{"PING"}, 1000ms).string_copy(), "PONG");
}

TEST_F(ClusterTest, MastersGivesOneHandlePerMasterForScans) {
  auto masters = client_.masters();
  ASSERT_EQ(masters.size(), 3u);
  std::set<int> ports;
  for (auto& m : masters) {
    ports.insert(m.options().port);
    const redkit::Reply role = m.command({"ROLE"});
    EXPECT_EQ(role[0].string(), "master");
  }
  EXPECT_EQ(ports.size(), 3u);

  const auto keys = key_per_slot(prefix_);
  std::vector<Command> sets;
  for (std::size_t i = 0; i < keys.size(); i += 41) sets.push_back(Command{"SET"}.key(keys[i]).arg("1"));
  client_.pipeline(sets);
  std::size_t found = 0;
  for (auto& m : masters) {
    std::string cursor = "0";
    do {
      Reply r = m.command({"SCAN", cursor, "MATCH", prefix_ + "*", "COUNT", "1000"});
      cursor = std::string(r[0].string());
      found += r[1].size();
    } while (cursor != "0");
  }
  EXPECT_EQ(found, sets.size());
}

TEST_F(ClusterTest, CopiesShareOneStateAcrossThreads) {
  const std::string key = key_in_slot(prefix_, 2222);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([client = client_, &key]() mutable {
      for (int i = 0; i < 250; ++i) client.command(Command{"INCR"}.key(key));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(client_.command(Command{"GET"}.key(key)).string_copy(), "1000");
}

TEST_F(ClusterTest, ManualFailoverIsFollowedWithNoError) {
  // A replica takes over (CLUSTER FAILOVER TAKEOVER, after WAIT so that it
  // has the write): the old master becomes its replica and answers MOVED
  // on the client's pooled connection; the client follows, reloads its map
  // and carries on. (A plain CLUSTER FAILOVER does the same, but can time
  // out when it comes right after another role change.)
  const int slot = 3333;
  const std::string key = key_in_slot(prefix_, slot);
  // WAIT on the connection that wrote: the replica has the value.
  const auto written =
      client_.pipeline({Command{"SET"}.key(key).arg("1"), Command{"WAIT"}.route(key).arg(1).arg(2000)});
  ASSERT_EQ(written[1].integer(), 1);
  RedisServer& old_master = shared_cluster().master_of(slot);
  RedisServer* replica = nullptr;
  for (std::size_t i = 0; i < shared_cluster().size(); ++i) {
    RedisServer& n = shared_cluster().node(i);
    const std::string info(redkit::test::node_command(n.port(), {"INFO", "replication"}).string_copy());
    if (redkit::test::info_field(info, "role") == "slave" &&
        redkit::test::info_field(info, "master_port") == std::to_string(old_master.port())) {
      replica = &n;
    }
  }
  ASSERT_NE(replica, nullptr);
  ASSERT_TRUE(redkit::test::node_command(replica->port(), {"CLUSTER", "FAILOVER", "TAKEOVER"}).ok());
  auto role = [](RedisServer& n) {
    return redkit::test::info_field(
        redkit::test::node_command(n.port(), {"INFO", "replication"}).string_copy(), "role");
  };
  ASSERT_TRUE(redkit::test::wait_until([&] { return role(old_master) == "slave"; }, 10s, 20ms));
  shared_cluster().wait_healthy();
  ASSERT_EQ(&shared_cluster().master_of(slot), replica);

  EXPECT_EQ(client_.command(Command{"INCR"}.key(key)).integer(), 2);
  EXPECT_EQ(replica->cli("GET", key), "2");
}
