// The near cache (CacheOptions::near_cache) against real servers, over a
// single Redis, sentinel-mode Redis and Cluster: hits from memory,
// invalidation by other clients' writes, read-your-writes in the process,
// FLUSHALL, a killed invalidation connection, TTL and max_age bounds,
// memory bounds and CLOCK eviction, get_or_set and XFetch through it, fork,
// and a sentinel master killed (tracking moves to the promoted replica).
// The store's read/invalidation race is pinned without a server (it is a
// data structure), the whole under load by near_checker_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <redkit/cache.hpp>
#include <redkit/cluster.hpp>

#include "support/clients.hpp"
#include "support/fork.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::CacheOptions;
using redkit::Command;
using redkit::RedisCache;
using redkit::Reply;
using redkit::test::RedisServer;
using redkit::test::unique_prefix;
using redkit::test::wait_until;
using Clock = std::chrono::steady_clock;

namespace {

// The masters behind each client kind, to look at and kill connections.
template <class Kind>
std::vector<RedisServer*> masters_of();
template <>
std::vector<RedisServer*> masters_of<redkit::test::SingleServer>() {
  return {&redkit::test::shared_server()};
}
template <>
std::vector<RedisServer*> masters_of<redkit::test::SentinelMaster>() {
  return {&redkit::test::shared_sentinel().current_master()};
}
template <>
std::vector<RedisServer*> masters_of<redkit::test::ClusterNodes>() {
  return redkit::test::shared_cluster().masters();
}

// The ids of the connections on node that track keys and are subscribed
// (CLIENT LIST flags t and P): the near cache's invalidation connections.
std::vector<std::string> tracking_connections(RedisServer& node) {
  std::vector<std::string> ids;
  const std::string list = node.cli("CLIENT", "LIST");
  std::size_t at = 0;
  while (at < list.size()) {
    std::size_t nl = list.find('\n', at);
    if (nl == std::string::npos) nl = list.size();
    const std::string line = list.substr(at, nl - at);
    at = nl + 1;
    const auto flags = line.find(" flags=");
    if (flags == std::string::npos) continue;
    const std::string f = line.substr(flags + 7, line.find(' ', flags + 7) - flags - 7);
    if (f.find('t') != std::string::npos && f.find('P') != std::string::npos) {
      ids.push_back(line.substr(3, line.find(' ') - 3));  // "id=N ..."
    }
  }
  return ids;
}

CacheOptions near_options(std::size_t max_entries = 1000) {
  CacheOptions o;
  o.xfetch_beta = 0;
  o.near_cache.max_entries = max_entries;
  return o;
}

}  // namespace

template <class Kind>
class NearCacheTest : public ::testing::Test {
 protected:
  using Client = typename Kind::Client;
  template <class T>
  using Cache = RedisCache<T, redkit::Serializer<T>, Client>;

  Client client = Kind::make();
  Client writer = Kind::make();  // another client: its writes reach us only as invalidations
  const std::string prefix = unique_prefix() + "near:";

  void raw_set(const std::string& key, const std::string& value) {
    writer.command(Command{"SET"}.key(prefix + key).arg(value));
  }
  std::uint64_t commands_sent() { return client.stats().commands_sent; }
};
TYPED_TEST_SUITE(NearCacheTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(NearCacheTest, ASecondReadIsServedFromMemoryWithoutAnyCommand) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  this->raw_set("k", "v1");
  EXPECT_EQ(cache.get("k"), "v1");  // from Redis, kept
  EXPECT_EQ(cache.stats().near_entries, 1u);
  const auto sent = this->commands_sent();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(cache.get("k"), "v1");
  EXPECT_TRUE(cache.contains("k"));
  EXPECT_EQ(cache.get_many({"k", "k"}), (std::vector<std::optional<std::string>>{"v1", "v1"}));
  EXPECT_EQ(this->commands_sent(), sent) << "a near hit sent a command";
  const auto s = cache.stats();
  EXPECT_EQ(s.near_hits, 103u);
  EXPECT_EQ(s.hits, 103u);  // near hits count as hits
  // A miss is not kept: it is asked again.
  EXPECT_EQ(cache.get("absent"), std::nullopt);
  EXPECT_EQ(cache.get("absent"), std::nullopt);
  EXPECT_EQ(cache.stats().misses, 2u);
}

TYPED_TEST(NearCacheTest, AWriteByAnotherClientReachesTheCopyAsAnInvalidation) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  this->raw_set("k", "v1");
  ASSERT_EQ(cache.get("k"), "v1");
  ASSERT_EQ(cache.get("k"), "v1");
  ASSERT_EQ(cache.stats().near_hits, 1u);
  this->raw_set("k", "v2");
  const auto acked = Clock::now();
  EXPECT_TRUE(wait_until([&] { return cache.get("k") == "v2"; }, 5s));
  EXPECT_LT(Clock::now() - acked, 1s);
  EXPECT_GE(cache.stats().near_invalidations, 1u);
  // ... and the new value is kept again.
  const auto hits = cache.stats().near_hits;
  EXPECT_TRUE(wait_until([&] { return cache.get("k"), cache.stats().near_hits > hits; }, 5s));
  // A delete by another client too.
  this->writer.command(Command{"DEL"}.key(this->prefix + "k"));
  EXPECT_TRUE(wait_until([&] { return cache.get("k") == std::nullopt; }, 5s));
}

TYPED_TEST(NearCacheTest, WritesOfThisProcessAreReadBackAtOnce) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  typename TestFixture::template Cache<std::string> other(this->client, this->prefix, near_options());
  cache.set("k", "v1");
  ASSERT_EQ(cache.get("k"), "v1");
  ASSERT_EQ(cache.get("k"), "v1");  // a copy now
  cache.set("k", "v2");
  EXPECT_EQ(cache.get("k"), "v2");  // no wait for the invalidation
  cache.set_many(std::map<std::string, std::string>{{"k", "v3"}, {"j", "w"}});
  EXPECT_EQ(cache.get("k"), "v3");
  EXPECT_EQ(cache.get_many({"k", "j"}), (std::vector<std::optional<std::string>>{"v3", "w"}));
  EXPECT_TRUE(cache.erase("k"));
  EXPECT_EQ(cache.get("k"), std::nullopt);
  EXPECT_FALSE(cache.contains("k"));
  ASSERT_EQ(cache.get("j"), "w");
  ASSERT_EQ(cache.get("j"), "w");
  cache.clear();
  EXPECT_EQ(cache.get("j"), std::nullopt);
  EXPECT_EQ(cache.stats().near_entries, 0u);
  // Another cache object of the same prefix in this process hears it as an
  // invalidation (it shares the client's tracker, not the copies).
  other.set("x", "1");
  ASSERT_EQ(other.get("x"), "1");
  ASSERT_EQ(other.get("x"), "1");
  cache.set("x", "2");
  EXPECT_TRUE(wait_until([&] { return other.get("x") == "2"; }, 5s));
}

TYPED_TEST(NearCacheTest, GetOrSetReadsTheLocalCopyFirstAndItsLoadReplacesIt) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  int loads = 0;
  auto loader = [&] { return ++loads, std::string("loaded"); };
  EXPECT_EQ(cache.get_or_set("k", loader), "loaded");
  // The load's own writes come back as invalidations; a read in flight when
  // one arrives is not kept, so on a slow machine the next read or two may
  // go to Redis. Soon one is served from memory: no command at all.
  EXPECT_TRUE(wait_until(
      [&] {
        const auto sent = this->commands_sent();
        EXPECT_EQ(cache.get_or_set("k", loader), "loaded");
        return this->commands_sent() == sent;
      },
      5s))
      << "no get_or_set was served from the local copy";
  EXPECT_EQ(loads, 1);
  EXPECT_GE(cache.stats().near_hits, 1u);
  cache.erase("k");
  EXPECT_EQ(cache.get_or_set("k", [] { return std::string("again"); }), "again");
  EXPECT_EQ(cache.get("k"), "again");
}

TYPED_TEST(NearCacheTest, EarlyRefreshStillHappensForAKeyServedFromMemory) {
  CacheOptions o = near_options();
  o.xfetch_beta = 1e12;  // due as soon as a load time is known
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, o);
  EXPECT_EQ(cache.get_or_set("k", [] { return std::string("v1"); }, 60s), "v1");
  int loads = 0;
  EXPECT_EQ(cache.get_or_set("k", [&] { return ++loads, std::string("v2"); }, 60s), "v2");
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(cache.stats().early_refreshes, 1u);
}

TYPED_TEST(NearCacheTest, FlushAllDropsEveryCopyAndCachingGoesOn) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  for (int i = 0; i < 10; ++i) this->raw_set("k" + std::to_string(i), "v");
  for (int i = 0; i < 10; ++i) ASSERT_EQ(cache.get("k" + std::to_string(i)), "v");
  ASSERT_EQ(cache.stats().near_entries, 10u);
  const auto flushes = cache.stats().near_flushes;
  const std::vector<RedisServer*> masters = masters_of<TypeParam>();
  for (RedisServer* m : masters) ASSERT_EQ(m->cli("FLUSHALL"), "OK");
  // Each master tells its own invalidation connection, and each such null
  // invalidation empties the whole near cache: wait for all of them, or a
  // late one (a cluster's third master) drops the copy kept below.
  EXPECT_TRUE(wait_until([&] { return cache.stats().near_flushes >= flushes + masters.size(); }, 5s));
  EXPECT_EQ(cache.stats().near_entries, 0u);
  EXPECT_EQ(cache.get("k1"), std::nullopt);
  this->raw_set("k1", "w");
  EXPECT_EQ(cache.get("k1"), "w");
  EXPECT_EQ(cache.get("k1"), "w");
  EXPECT_EQ(cache.stats().near_entries, 1u);
}

TYPED_TEST(NearCacheTest, KillingTheInvalidationConnectionDropsTheCopiesUntilTrackingIsBack) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  this->raw_set("k", "v1");
  ASSERT_EQ(cache.get("k"), "v1");
  ASSERT_EQ(cache.stats().near_entries, 1u);
  std::size_t killed = 0;
  for (RedisServer* m : masters_of<TypeParam>()) {
    for (const std::string& id : tracking_connections(*m)) {
      m->cli("CLIENT", "KILL", "ID", id);
      ++killed;
    }
  }
  ASSERT_GE(killed, 1u);
  // Written while no connection tracked it: the copy must not be served.
  this->raw_set("k", "v2");
  EXPECT_TRUE(wait_until([&] { return cache.stats().near_flushes >= 1; }, 5s));
  EXPECT_EQ(cache.get("k"), "v2");
  // Tracking comes back on its own: copies are kept and invalidated again.
  EXPECT_TRUE(wait_until([&] { return cache.get("k"), cache.stats().near_entries == 1; }, 10s));
  this->raw_set("k", "v3");
  EXPECT_TRUE(wait_until([&] { return cache.get("k") == "v3"; }, 5s));
}

// One copy's life, seen by reading key every millisecond: reads from
// Redis until one keeps a copy (the next read is a near hit), then near hits
// until a read is not one (at most 5 s in all).
struct CopyLife {
  Clock::time_point kept_by_read_ending{};           // the read that kept the copy ended then
  std::optional<Clock::time_point> last_hit_started;  // the last near hit began then
};

template <class Cache>
CopyLife watch_copy(Cache& cache, const std::string& key) {
  CopyLife life;
  wait_until(
      [&] {
        const auto before = cache.stats().near_hits;
        const auto t = Clock::now();
        cache.get(key);
        if (cache.stats().near_hits > before) {
          life.last_hit_started = t;
          return false;
        }
        if (life.last_hit_started) return true;  // the copy ended
        life.kept_by_read_ending = Clock::now();
        return false;
      },
      5s, 1ms);
  return life;
}

TYPED_TEST(NearCacheTest, ACopyNeverOutlivesTheValuesTtlInRedis) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  const std::string full = this->prefix + "short";
  ASSERT_EQ(cache.get("warm-up"), std::nullopt);  // tracking confirmed
  // No active expiry: the key goes only when read, so no invalidation
  // announces its expiry; the copy must end by the PTTL read with it.
  this->client.command(Command{"DEBUG"}.arg("SET-ACTIVE-EXPIRE").arg("0").route(full));
  struct Restore {
    typename TestFixture::Client& c;
    std::string key;
    ~Restore() { c.command(Command{"DEBUG"}.arg("SET-ACTIVE-EXPIRE").arg("1").route(key)); }
  } restore{this->client, full};
  const auto invalidations = cache.stats().near_invalidations;
  this->writer.command(Command{"SET"}.key(full).arg("v").arg("PX").arg(400));
  const auto acked = Clock::now();  // Redis expires it before acked + 400 ms
  // The SET's own invalidation first: arriving late (a loaded machine), it
  // would end a copy kept by a read after the SET long before its expiry.
  ASSERT_TRUE(wait_until([&] { return cache.stats().near_invalidations > invalidations; }, 2s));
  const CopyLife life = watch_copy(cache, "short");
  ASSERT_TRUE(life.last_hit_started.has_value()) << "no copy was kept";
  EXPECT_LT(*life.last_hit_started, acked + 400ms) << "a copy was served after the value expired in Redis";
  EXPECT_GT(*life.last_hit_started, acked + 200ms) << "the copy should be served until close to its expiry";
  EXPECT_TRUE(wait_until([&] { return cache.get("short") == std::nullopt; }, 2s));
}

TYPED_TEST(NearCacheTest, ACopyIsServedAtMostMaxAgeAfterItWasRead) {
  CacheOptions o = near_options();
  o.near_cache.max_age = 300ms;
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, o);
  this->raw_set("k", "v");
  const CopyLife life = watch_copy(cache, "k");
  ASSERT_TRUE(life.last_hit_started.has_value()) << "no copy was kept";
  EXPECT_LT(*life.last_hit_started, life.kept_by_read_ending + 300ms) << "a copy was served past max_age";
  EXPECT_GT(*life.last_hit_started, life.kept_by_read_ending + 150ms);
}

TYPED_TEST(NearCacheTest, EntriesAndBytesStayWithinTheirLimits) {
  typename TestFixture::template Cache<std::string> by_count(this->client, this->prefix, near_options(50));
  for (int i = 0; i < 300; ++i) this->raw_set("k" + std::to_string(i), "v");
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(by_count.get("k" + std::to_string(i)), "v");
    ASSERT_LE(by_count.stats().near_entries, 50u);
  }
  EXPECT_GE(by_count.stats().near_entries, 25u);  // it does keep copies

  CacheOptions o = near_options(1000);
  o.near_cache.max_bytes = 20000;
  typename TestFixture::template Cache<std::string> by_bytes(this->client, this->prefix + "b:", o);
  const std::string value(1000, 'x');
  for (int i = 0; i < 100; ++i) this->raw_set("b:k" + std::to_string(i), value);
  const std::size_t per_copy = value.size() + 4 + redkit::detail::cache::NearStore<std::string>::kEntryOverhead;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(by_bytes.get("k" + std::to_string(i)), value);
    ASSERT_LE(by_bytes.stats().near_entries * per_copy, 20000u + per_copy);
  }
  EXPECT_GE(by_bytes.stats().near_entries, 5u);
  // A value larger than the whole budget is never kept.
  this->raw_set("b:huge", std::string(30000, 'y'));
  const auto entries = by_bytes.stats().near_entries;
  EXPECT_EQ(by_bytes.get("huge")->size(), 30000u);
  EXPECT_EQ(by_bytes.stats().near_entries, entries);
}

TYPED_TEST(NearCacheTest, HotKeysKeepTheirHitRateWhenTheWorkingSetExceedsMaxEntries) {
  typename TestFixture::template Cache<int> cache(this->client, this->prefix, near_options(64));
  constexpr int kHot = 8;
  constexpr int kCold = 2000;
  std::vector<std::pair<std::string, int>> items;
  for (int i = 0; i < kHot; ++i) items.emplace_back("hot" + std::to_string(i), i);
  for (int i = 0; i < kCold; ++i) items.emplace_back("cold" + std::to_string(i), i);
  typename TestFixture::template Cache<int> loader(this->writer, this->prefix);
  loader.set_many(items, 60s);
  std::mt19937 rng(7);
  int hot_reads = 0;
  int hot_near = 0;
  for (int round = 0; round < 4000; ++round) {
    const bool hot = round % 2 == 0;  // half the reads go to 8 keys, half to 2000
    const std::string key = hot ? "hot" + std::to_string(rng() % kHot) : "cold" + std::to_string(rng() % kCold);
    const auto before = cache.stats().near_hits;
    ASSERT_TRUE(cache.get(key).has_value());
    if (hot && round >= 400) {  // after warm-up
      ++hot_reads;
      if (cache.stats().near_hits > before) ++hot_near;
    }
    ASSERT_LE(cache.stats().near_entries, 64u);
  }
  EXPECT_GT(static_cast<double>(hot_near) / hot_reads, 0.95) << hot_near << " of " << hot_reads;
}

TYPED_TEST(NearCacheTest, AForkedChildStartsWithAnEmptyNearCacheOfItsOwn) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, near_options());
  this->raw_set("k", "parent");
  ASSERT_EQ(cache.get("k"), "parent");
  ASSERT_EQ(cache.stats().near_entries, 1u);
  auto writer = this->writer;
  const std::string full = this->prefix + "k";
  const pid_t child = redkit::test::fork_child([&]() -> int {
    if (cache.stats().near_entries != 0) return 1;  // the parent's copies are not the child's
    if (cache.get("k") != "parent") return 2;
    if (cache.get("k") != "parent" || cache.stats().near_hits != 1) return 3;  // kept in the child
    writer.command(Command{"SET"}.key(full).arg("child"));
    // The child's own tracker hears it.
    if (!wait_until([&] { return cache.get("k") == "child"; }, 5s)) return 4;
    return 0;
  });
  EXPECT_EQ(redkit::test::wait_child(child), 0);
  // The parent heard the child's write too.
  EXPECT_TRUE(wait_until([&] { return cache.get("k") == "child"; }, 5s));
}

TYPED_TEST(NearCacheTest, NearCacheOptionsAreChecked) {
  auto bad = [&](auto change) {
    CacheOptions o = near_options();
    change(o);
    EXPECT_THROW((typename TestFixture::template Cache<int>(this->client, this->prefix, o)), redkit::ConfigError);
  };
  bad([](CacheOptions& o) { o.near_cache.max_bytes = 0; });
  bad([](CacheOptions& o) { o.near_cache.max_age = 0ms; });
  bad([](CacheOptions& o) { o.near_cache.max_age = -1ms; });
  CacheOptions off;
  off.near_cache.max_bytes = 0;  // not checked when the near cache is off
  EXPECT_NO_THROW((typename TestFixture::template Cache<int>(this->client, this->prefix, off)));
}

// ---- sentinel: the master dies -----------------------------------------------

// The tracker's connection to a killed master closes; the sentinels promote
// the replica. The copies must be gone before the next read, and tracking
// must come back on the new master: its writes reach the near cache as
// invalidations. A set of its own: killing the shared set's master would
// change the ground under the other sentinel cases.
TEST(NearCacheSentinel, AfterTheMasterDiesTheTrackerMovesToTheNewMasterAndItsInvalidationsArrive) {
  redkit::test::SentinelSet set;
  set.wait_ready_for_failover();
  RedisServer& old_master = set.current_master();
  RedisServer& replica = set.current_replica();
  const std::string prefix = unique_prefix() + "near:";
  redkit::Redis client(set.uri());
  RedisCache<std::string, redkit::Serializer<std::string>, redkit::Redis> cache(client, prefix, near_options());

  ASSERT_EQ(old_master.cli("SET", prefix + "k", "v1"), "OK");
  ASSERT_EQ(old_master.cli("WAIT", "1", "5000"), "1") << "the replica does not have k";
  ASSERT_EQ(cache.get("k"), "v1");  // from Redis, kept
  {
    const auto sent = client.stats().commands_sent;
    const auto hits = cache.stats().near_hits;
    ASSERT_EQ(cache.get("k"), "v1");
    ASSERT_EQ(cache.stats().near_hits, hits + 1);
    ASSERT_EQ(client.stats().commands_sent, sent) << "a near hit sent a command";
  }
  ASSERT_EQ(tracking_connections(old_master).size(), 1u);
  const auto flushes = cache.stats().near_flushes;
  const auto failovers = client.stats().failovers;

  old_master.kill();  // SIGKILL: no goodbye, the sentinels must notice and promote

  // The invalidation connection closed: every copy dropped at once, before
  // any read after the loss.
  EXPECT_TRUE(wait_until([&] { return cache.stats().near_flushes > flushes; }, 5s));
  EXPECT_EQ(cache.stats().near_entries, 0u);
  const auto hits_at_loss = cache.stats().near_hits;

  // Reads fail until the sentinels name the replica; then they go to it.
  std::optional<std::string> first;
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          first = cache.get("k");
          return true;
        } catch (const redkit::Error&) {
          return false;
        }
      },
      30s, 20ms))
      << "no read succeeded within 30 s of the kill";
  EXPECT_EQ(first, "v1");
  EXPECT_EQ(cache.stats().near_hits, hits_at_loss) << "a copy from before the loss was served";
  ASSERT_EQ(&set.current_master(), &replica) << "the sentinels did not promote the replica";
  EXPECT_GT(client.stats().failovers, failovers);

  // Caching resumes only once tracking is confirmed, on the new master.
  ASSERT_TRUE(wait_until(
      [&] {
        const auto hits = cache.stats().near_hits;
        return cache.get("k") == "v1" && cache.stats().near_hits > hits;
      },
      10s))
      << "no near hit within 10 s of the failover: tracking did not come back";
  EXPECT_EQ(tracking_connections(replica).size(), 1u) << "no invalidation connection on the new master";

  // A write on the new master by a plain client reaches the copy as an
  // invalidation.
  const auto invalidations = cache.stats().near_invalidations;
  redkit::Redis plain(replica.uri());
  plain.command(Command{"SET"}.key(prefix + "k").arg("v2"));
  const auto acked = Clock::now();
  EXPECT_TRUE(wait_until([&] { return cache.get("k") == "v2"; }, 2s))
      << "the write on the new master never reached the near cache";
  EXPECT_LT(Clock::now() - acked, 2s);
  EXPECT_GT(cache.stats().near_invalidations, invalidations);

  // ... and the new value is served from memory again.
  EXPECT_TRUE(wait_until(
      [&] {
        const auto hits = cache.stats().near_hits;
        const auto sent = client.stats().commands_sent;
        return cache.get("k") == "v2" && cache.stats().near_hits > hits && client.stats().commands_sent == sent;
      },
      5s));
}

// ---- the store alone: the read/invalidation race ---------------------------

namespace {

// A TrackingState the test moves by hand.
class ManualTracking : public redkit::detail::cache::TrackingState {
 public:
  ManualTracking() { set(2, 0); }
  void set(std::uint64_t epoch, std::uint64_t topology) {
    epoch_.store(epoch);
    topology_.store(topology);
  }
};

using Store = redkit::detail::cache::NearStore<std::string>;

redkit::NearCacheOptions store_options(std::size_t n = 100) {
  redkit::NearCacheOptions o;
  o.max_entries = n;
  return o;
}

void settle(Store& s, redkit::detail::cache::NearTicket& t, const std::string& v, long long pttl = -1,
            std::uint64_t topology = 0) {
  const std::string_view bytes = v;
  s.settle(t, &bytes, &v, pttl, 0, topology);
}

}  // namespace

TEST(NearStore, AReadInFlightWhenItsKeyIsInvalidatedIsNotStored) {
  ManualTracking tracking;
  Store store(store_options(), tracking);
  auto t = store.begin("k", 0);
  ASSERT_TRUE(t);
  store.invalidate("k");  // the write's invalidation came before the reply
  settle(store, t, "old");
  EXPECT_EQ(store.get("k"), std::nullopt);
  EXPECT_EQ(store.entries(), 0u);
  // Without an invalidation it is stored.
  auto u = store.begin("k", 0);
  settle(store, u, "new");
  EXPECT_EQ(store.get("k"), "new");
}

TEST(NearStore, AFlushOrAnEpochChangeDuringAReadKeepsItFromBeingStored) {
  ManualTracking tracking;
  Store store(store_options(), tracking);
  auto a = store.begin("a", 0);
  store.flush();
  settle(store, a, "v");
  EXPECT_EQ(store.get("a"), std::nullopt);

  auto b = store.begin("b", 0);
  tracking.set(3, 0);  // tracking lost
  settle(store, b, "v");
  tracking.set(4, 0);  // and back
  EXPECT_EQ(store.get("b"), std::nullopt);
  // While not confirmed no read is even marked.
  tracking.set(5, 0);
  EXPECT_FALSE(store.begin("c", 0));
}

TEST(NearStore, CopiesOfAnOldEpochAreNeverServed) {
  ManualTracking tracking;
  Store store(store_options(), tracking);
  auto t = store.begin("k", 0);
  settle(store, t, "v");
  ASSERT_EQ(store.get("k"), "v");
  tracking.set(3, 0);
  EXPECT_EQ(store.get("k"), std::nullopt);
  tracking.set(4, 0);
  EXPECT_EQ(store.get("k"), std::nullopt);  // epoch 2's copy stays untrusted
}

TEST(NearStore, AReadThatStartedOrEndedInAnotherTopologyIsNotStored) {
  ManualTracking tracking;
  Store store(store_options(), tracking);
  EXPECT_FALSE(store.begin("k", 1));  // the client's topology moved since it was verified
  auto t = store.begin("k", 0);
  settle(store, t, "v", -1, 1);  // it moved during the read
  EXPECT_EQ(store.get("k"), std::nullopt);
}

TEST(NearStore, OverlappingReadsThatSawDifferentBytesLeaveNoCopy) {
  ManualTracking tracking;
  Store store(store_options(), tracking);
  auto a = store.begin("k", 0);
  auto b = store.begin("k", 0);  // shares a's mark
  settle(store, a, "v1");
  EXPECT_EQ(store.get("k"), "v1");
  settle(store, b, "v2");  // a write came between the two reads
  EXPECT_EQ(store.get("k"), std::nullopt);

  auto c = store.begin("k", 0);
  auto d = store.begin("k", 0);
  settle(store, c, "same");
  settle(store, d, "same");
  EXPECT_EQ(store.get("k"), "same");
}

TEST(NearStore, TheCopyEndsWithThePttlReadWithIt) {
  ManualTracking tracking;
  Store store(store_options(), tracking);
  auto t = store.begin("k", 0);
  settle(store, t, "v", 50);
  EXPECT_EQ(store.get("k"), "v");
  EXPECT_TRUE(wait_until([&] { return !store.get("k"); }, 2s));
  auto gone = store.begin("g", 0);
  settle(store, gone, "v", -2);  // the key vanished between GET and PTTL
  EXPECT_EQ(store.get("g"), std::nullopt);
}

TEST(NearStore, HitsFromManyThreadsAndInvalidationsRaceSafely) {
  ManualTracking tracking;
  Store store(store_options(64), tracking);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937 rng(static_cast<unsigned>(i));
      while (!stop) {
        const std::string key = "k" + std::to_string(rng() % 200);
        if (!store.get(key)) {
          auto t = store.begin(key, 0);
          settle(store, t, key);
        }
      }
    });
  }
  threads.emplace_back([&] {
    std::mt19937 rng(99);
    for (int n = 0; n < 20000; ++n) {
      store.invalidate("k" + std::to_string(rng() % 200));
      if (n % 5000 == 0) store.flush();
    }
    stop = true;
  });
  for (auto& t : threads) t.join();
  EXPECT_LE(store.entries(), 64u);
  for (int i = 0; i < 200; ++i) {
    const auto v = store.get("k" + std::to_string(i));
    if (v) EXPECT_EQ(*v, "k" + std::to_string(i));
  }
}
