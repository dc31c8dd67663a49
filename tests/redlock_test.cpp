// RedisRedlock over three real, independent redis-servers: quorum, validity,
// release everywhere, extend by quorum, fencing across different quorums,
// and masters that are down.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <redkit/lock.hpp>
#include <redkit/redlock.hpp>

#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::LockOptions;
using redkit::RedisRedlock;
using redkit::test::RedisServer;
using redkit::test::wait_until;
using redkit::test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

LockOptions no_renew(std::chrono::milliseconds ttl) {
  LockOptions o;
  o.ttl = ttl;
  o.auto_renew = false;
  return o;
}

class Redlock : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      servers.emplace_back();
      redkit::Options o = redkit::Options::from_uri(servers.back().uri());
      o.connect_timeout = 200ms;  // the per-node timeout
      o.command_timeout = 200ms;
      masters.emplace_back(o);
    }
  }

  std::string value_on(int i, const std::string& key) { return servers[i].cli("GET", key); }

  std::vector<RedisServer> servers;
  std::vector<redkit::Redis> masters;
  const std::string name = redkit::test::unique_prefix() + "redlock";
};

}  // namespace

TEST_F(Redlock, AcquiresOnEveryMasterAndReleasesOnEvery) {
  RedisRedlock<> lock(masters, name);
  EXPECT_EQ(lock.masters(), 3u);
  EXPECT_EQ(lock.quorum(), 2u);
  ASSERT_TRUE(lock.try_lock());
  EXPECT_TRUE(lock.owns_lock());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(value_on(i, name), lock.token()) << "master " << i;
  EXPECT_GT(lock.fencing_token(), 0);
  lock.unlock();
  EXPECT_FALSE(lock.owns_lock());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(value_on(i, name), "(nil)") << "master " << i;
}

TEST_F(Redlock, ExcludesAnotherRedlockAndLeavesItsKeysAlone) {
  RedisRedlock<> a(masters, name);
  RedisRedlock<> b(masters, name);
  ASSERT_TRUE(a.try_lock());
  EXPECT_FALSE(b.try_lock());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(value_on(i, name), a.token()) << "master " << i;
  a.unlock();
  EXPECT_TRUE(b.try_lock());
}

TEST_F(Redlock, AFailedAttemptReleasesTheMastersItGot) {
  servers[1].cli("SET", name, "someone-else", "PX", "10000");
  servers[2].cli("SET", name, "someone-else", "PX", "10000");
  RedisRedlock<> lock(masters, name);
  EXPECT_FALSE(lock.try_lock());
  EXPECT_EQ(value_on(0, name), "(nil)");
  EXPECT_EQ(value_on(1, name), "someone-else");
}

TEST_F(Redlock, AcquiresWithOneOfThreeMastersKilled) {
  servers[2].kill();
  RedisRedlock<> lock(masters, name);
  const auto t0 = Clock::now();
  ASSERT_TRUE(lock.try_lock_for(2s));
  EXPECT_LT(ms_since(t0), 500);
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(value_on(0, name), lock.token());
  EXPECT_EQ(value_on(1, name), lock.token());
  lock.unlock();
  EXPECT_EQ(value_on(0, name), "(nil)");
}

TEST_F(Redlock, FailsWithinItsTimeoutWithTwoMastersKilled) {
  servers[1].kill();
  servers[2].kill();
  RedisRedlock<> lock(masters, name);
  const auto t0 = Clock::now();
  EXPECT_FALSE(lock.try_lock_for(500ms));
  const long long took = ms_since(t0);
  EXPECT_GE(took, 500);
  EXPECT_LT(took, 500 + 300);  // one last attempt, bounded by the node timeouts
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(value_on(0, name), "(nil)");  // the lone grant was released
}

TEST_F(Redlock, FencingTokensIncreaseAcrossHoldersWithDifferentQuorums) {
  // Master 0 has handed out far larger fences than the others.
  servers[0].cli("SET", "{" + name + "}:fence", "4000000000000000");
  RedisRedlock<> a(masters, name);
  ASSERT_TRUE(a.try_lock());
  const std::int64_t first = a.fencing_token();
  EXPECT_GT(first, 4000000000000000);
  a.unlock();
  // The next holder's quorum leaves out master 0.
  servers[0].cli("SET", name, "someone-else", "PX", "10000");
  RedisRedlock<> b(masters, name);
  ASSERT_TRUE(b.try_lock());
  EXPECT_GT(b.fencing_token(), first);
}

TEST_F(Redlock, ExtendNeedsAQuorum) {
  RedisRedlock<> lock(masters, name, no_renew(5s));
  ASSERT_TRUE(lock.try_lock());
  servers[0].cli("DEL", name);
  EXPECT_TRUE(lock.extend(10s));  // two of three still ours
  EXPECT_TRUE(lock.owns_lock());
  servers[1].cli("DEL", name);
  EXPECT_FALSE(lock.extend(10s));  // only one: lost
  EXPECT_FALSE(lock.owns_lock());
}

TEST_F(Redlock, ExtendThrowsWhenTooFewMastersAnswer) {
  RedisRedlock<> lock(masters, name, no_renew(5s));
  ASSERT_TRUE(lock.try_lock());
  servers[1].kill();
  servers[2].kill();
  EXPECT_THROW(lock.extend(10s), redkit::IoError);
  EXPECT_TRUE(lock.owns_lock());  // still within the validity of the acquire
}

TEST_F(Redlock, AutoRenewKeepsItAndOnLostFiresWhenAMajorityLosesIt) {
  std::atomic<int> lost{0};
  LockOptions o;
  o.ttl = 300ms;
  o.on_lost = [&](const std::string&) { ++lost; };
  RedisRedlock<> lock(masters, name, o);
  ASSERT_TRUE(lock.try_lock());
  std::this_thread::sleep_for(1200ms);  // four TTLs pass
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(lost.load(), 0);
  servers[0].cli("DEL", name);
  servers[2].cli("DEL", name);
  ASSERT_TRUE(wait_until([&] { return lost.load() > 0; }, 3s));
  EXPECT_FALSE(lock.owns_lock());
}

TEST_F(Redlock, ValidityIsTheTtlMinusElapsedAndDrift) {
  RedisRedlock<> lock(masters, name, no_renew(300ms));
  const auto t0 = Clock::now();
  ASSERT_TRUE(lock.try_lock());
  // The clock is read before each owns_lock(): a true answer means the
  // validity ran past that reading, so a stalled machine can only make the
  // last reading earlier, never push it past the bound.
  auto last_owned = t0;
  const bool ended = wait_until(
      [&] {
        const auto before = Clock::now();
        if (!lock.owns_lock()) return true;
        last_owned = before;
        return false;
      },
      2s, 1ms);
  ASSERT_TRUE(ended) << "the validity never ended";
  // 300 ms - (3 ms + 2 ms) drift: ours ends before any master's key does.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(last_owned - t0).count(), 295);
}

TEST_F(Redlock, ThreadsReadModifyWriteExactlyWithNeverTwoHolders) {
  constexpr int kThreads = 3;
  constexpr int kIterations = 10;
  std::atomic<int> holders{0};
  std::atomic<int> violations{0};
  long long counter = 0;  // guarded by the redlock alone
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      LockOptions o;
      o.retry_min = 5ms;
      o.retry_max = 20ms;
      RedisRedlock<> lock(masters, name, o);
      for (int i = 0; i < kIterations; ++i) {
        std::lock_guard<RedisRedlock<>> guard(lock);
        if (++holders > 1) ++violations;
        const long long n = counter;
        std::this_thread::yield();
        counter = n + 1;
        --holders;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(counter, kThreads * kIterations);
}

TEST_F(Redlock, WorksInAScopedLockBesideARedisLock) {
  RedisRedlock<> redlock(masters, name);
  redkit::RedisLock<> single(masters[0], name + ":single");
  {
    std::scoped_lock both(redlock, single);
    EXPECT_TRUE(redlock.owns_lock());
    EXPECT_TRUE(single.owns_lock());
  }
  EXPECT_FALSE(redlock.owns_lock());
  EXPECT_FALSE(single.owns_lock());
}

TEST_F(Redlock, ARedisLockOnOneMasterSeesIt) {
  RedisRedlock<> redlock(masters, name);
  redkit::RedisLock<> single(masters[0], name);
  ASSERT_TRUE(redlock.try_lock());
  EXPECT_FALSE(single.try_lock());
}

TEST(RedlockOptions, BadConfigurationsAreRejected) {
  std::vector<redkit::Redis> none;
  EXPECT_THROW(RedisRedlock<>(none, "x"), redkit::ConfigError);
  std::vector<redkit::Redis> one{redkit::Redis()};
  LockOptions o;
  o.wait_replicas = 1;
  EXPECT_THROW(RedisRedlock<>(one, "x", o), redkit::ConfigError);
  EXPECT_THROW(RedisRedlock<>(one, "a}b"), redkit::ConfigError);
}
