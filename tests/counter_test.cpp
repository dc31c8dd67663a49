// RedisCounter over every client kind (see support/clients.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <redkit/counter.hpp>

#include "support/clients.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::CounterOptions;
using redkit::OverflowError;
using redkit::RedisCounter;
using redkit::test::unique_prefix;

template <class Kind>
class CounterTest : public ::testing::Test {
 protected:
  using Client = typename Kind::Client;
  CounterTest() : client_(Kind::make()), key_(unique_prefix() + "ctr") {}

  template <class T>
  RedisCounter<T, Client> counter(CounterOptions o = {}) {
    return RedisCounter<T, Client>(client_, key_, o);
  }
  std::string raw_get() {
    auto r = client_.command(Command{"GET"}.key(key_));
    return r.is_nil() ? "(nil)" : std::string(r.string());
  }
  bool exists() { return client_.command(Command{"EXISTS"}.key(key_)).integer() == 1; }

  Client client_;
  std::string key_;
};

TYPED_TEST_SUITE(CounterTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(CounterTest, MissingKeyReadsZeroAndIncrementsFromZero) {
  auto c = this->template counter<long long>();
  EXPECT_EQ(c.get(), 0);
  EXPECT_EQ(c.incr(), 1);
  EXPECT_EQ(c.incr(41), 42);
  EXPECT_EQ(c.decr(2), 40);
  EXPECT_EQ(c.get(), 40);
  EXPECT_EQ(this->raw_get(), "40");  // decimal text others can read
}

TYPED_TEST(CounterTest, SetStoresDecimalText) {
  auto c = this->template counter<int>();
  c.set(-17);
  EXPECT_EQ(this->raw_get(), "-17");
  EXPECT_EQ(c.get(), -17);
}

TYPED_TEST(CounterTest, Int64OverflowRaisesAndLeavesValueUnchanged) {
  auto c = this->template counter<std::int64_t>();
  c.set(std::numeric_limits<std::int64_t>::max() - 1);
  EXPECT_EQ(c.incr(), std::numeric_limits<std::int64_t>::max());
  EXPECT_THROW(c.incr(), OverflowError);
  EXPECT_EQ(c.get(), std::numeric_limits<std::int64_t>::max());
  c.set(std::numeric_limits<std::int64_t>::min());
  EXPECT_THROW(c.decr(), OverflowError);
  EXPECT_EQ(c.get(), std::numeric_limits<std::int64_t>::min());
  c.set(0);
  EXPECT_THROW(c.decr(std::numeric_limits<std::int64_t>::min()), OverflowError);
  EXPECT_EQ(c.get(), 0);
}

TYPED_TEST(CounterTest, Int32OverflowRaisesAndLeavesValueUnchanged) {
  auto c = this->template counter<std::int32_t>();
  c.set(std::numeric_limits<std::int32_t>::max() - 5);
  EXPECT_THROW(c.incr(6), OverflowError);
  EXPECT_EQ(this->raw_get(), "2147483642");
  EXPECT_EQ(c.incr(5), std::numeric_limits<std::int32_t>::max());
  c.set(0);
  EXPECT_THROW(c.decr(std::numeric_limits<std::int32_t>::min()), OverflowError);  // 0 - min > max
  EXPECT_EQ(c.get(), 0);
  c.set(std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(c.decr(std::numeric_limits<std::int32_t>::min()), 0);  // min - min fits
  c.set(std::numeric_limits<std::int32_t>::min());
  EXPECT_THROW(c.decr(), OverflowError);
  EXPECT_EQ(c.incr(std::numeric_limits<std::int32_t>::max()), -1);
}

TYPED_TEST(CounterTest, Uint8OverflowBothWaysLeavesValueUnchanged) {
  auto c = this->template counter<std::uint8_t>();
  c.set(250);
  EXPECT_THROW(c.incr(6), OverflowError);
  EXPECT_EQ(c.get(), 250);
  EXPECT_EQ(c.incr(5), 255);
  EXPECT_THROW(c.incr(), OverflowError);
  c.set(0);
  EXPECT_THROW(c.decr(), OverflowError);
  EXPECT_EQ(this->raw_get(), "0");
}

TYPED_TEST(CounterTest, Int8AndUint64Ranges) {
  auto i8 = this->template counter<std::int8_t>();
  i8.set(-128);
  EXPECT_THROW(i8.decr(), OverflowError);
  EXPECT_EQ(i8.incr(127), -1);
  EXPECT_EQ(i8.incr(127), 126);

  auto u64 = this->template counter<std::uint64_t>();
  u64.set(3);
  EXPECT_THROW(u64.decr(4), OverflowError);
  EXPECT_EQ(u64.get(), 3u);
  // Redis integers are signed 64-bit: a step beyond INT64_MAX cannot be sent.
  EXPECT_THROW(u64.incr(std::numeric_limits<std::uint64_t>::max()), OverflowError);
  EXPECT_EQ(u64.get(), 3u);
}

TYPED_TEST(CounterTest, OverflowOnMissingKeyLeavesItMissing) {
  auto c = this->template counter<std::uint16_t>();
  EXPECT_THROW(c.decr(), OverflowError);
  EXPECT_FALSE(this->exists());
}

TYPED_TEST(CounterTest, OverflowKeepsTheKeysTtl) {
  auto c = this->template counter<std::uint8_t>();
  c.set(255);
  ASSERT_TRUE(c.expire(60s));
  EXPECT_THROW(c.incr(), OverflowError);
  auto ttl = c.ttl();
  ASSERT_TRUE(ttl.has_value());
  EXPECT_GT(*ttl, 50s);
}

TYPED_TEST(CounterTest, DoubleUsesIncrbyfloatAndOverflowsToError) {
  auto c = this->template counter<double>();
  EXPECT_DOUBLE_EQ(c.incr(1.5), 1.5);
  EXPECT_DOUBLE_EQ(c.decr(0.25), 1.25);
  c.set(1e308);
  // INCRBYFLOAT alone would store 2e+308 (it computes in long double).
  EXPECT_THROW(c.incr(1e308), OverflowError);
  EXPECT_EQ(this->raw_get(), "1e+308");
  EXPECT_THROW(c.decr(std::numeric_limits<double>::infinity()), OverflowError);
  EXPECT_DOUBLE_EQ(c.get(), 1e308);
}

TYPED_TEST(CounterTest, FloatOverflowIsCheckedAgainstFloatsRange) {
  auto c = this->template counter<float>();
  c.set(3e38f);
  EXPECT_THROW(c.incr(1e38f), OverflowError);  // fits a double, not a float
  EXPECT_EQ(c.get(), 3e38f);
  EXPECT_FLOAT_EQ(c.incr(-1e38f), 2e38f);
}

TYPED_TEST(CounterTest, ResetReturnsOldValueAndStoresZero) {
  auto c = this->template counter<long long>();
  EXPECT_EQ(c.reset(), 0);  // missing
  c.incr(7);
  EXPECT_EQ(c.reset(), 7);
  EXPECT_EQ(this->raw_get(), "0");
}

TYPED_TEST(CounterTest, ResetIsAtomicUnderConcurrentIncrements) {
  using Client = typename TestFixture::Client;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::atomic<long long> harvested{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> incrementers;
  for (int t = 0; t < kThreads; ++t) {
    incrementers.emplace_back([&] {
      RedisCounter<long long, Client> c(this->client_, this->key_);
      for (int i = 0; i < kPerThread; ++i) c.incr();
    });
  }
  std::thread resetter([&] {
    RedisCounter<long long, Client> c(this->client_, this->key_);
    while (!stop) harvested += c.reset();
  });
  for (auto& t : incrementers) t.join();
  stop = true;
  resetter.join();
  RedisCounter<long long, Client> c(this->client_, this->key_);
  // No increment is lost between a reset's read and its write.
  EXPECT_EQ(harvested.load() + c.get(), kThreads * kPerThread);
}

TYPED_TEST(CounterTest, BoundedIncrementAppliesOnlyWithinFloorAndCeiling) {
  auto c = this->template counter<long long>();
  auto r = c.incr_bounded(3, 0, 5);
  EXPECT_TRUE(r.applied);
  EXPECT_EQ(r.value, 3);
  r = c.incr_bounded(3, 0, 5);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.value, 3);
  r = c.incr_bounded(2, 0, 5);
  EXPECT_TRUE(r.applied);
  EXPECT_EQ(r.value, 5);
  r = c.incr_bounded(-6, 0, 5);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(c.get(), 5);
  EXPECT_THROW(c.incr_bounded(1, 5, 0), redkit::ConfigError);
}

TYPED_TEST(CounterTest, BoundedIncrementIsExactNearInt64Limits) {
  auto c = this->template counter<long long>();
  const long long top = std::numeric_limits<long long>::max();
  c.set(top - 2);
  // Lua numbers are doubles: top-1 and top are the same double. The script
  // compares decimal text, so the ceiling top-1 is exact.
  EXPECT_TRUE(c.incr_bounded(1, 0, top - 1).applied);
  auto r = c.incr_bounded(1, 0, top - 1);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.value, top - 1);
}

TYPED_TEST(CounterTest, BoundedIncrementOnMissingKeyThatDoesNotApplyLeavesItMissing) {
  auto c = this->template counter<int>();
  auto r = c.incr_bounded(-1, 0, 10);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.value, 0);
  EXPECT_FALSE(this->exists());
}

TYPED_TEST(CounterTest, ConcurrentBoundedIncrementsNeverPassTheCeiling) {
  using Client = typename TestFixture::Client;
  std::atomic<int> applied{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      RedisCounter<int, Client> c(this->client_, this->key_);
      for (int i = 0; i < 50; ++i) applied += c.incr_bounded(1, 0, 100).applied ? 1 : 0;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(applied.load(), 100);
  EXPECT_EQ(this->template counter<int>().get(), 100);
}

TYPED_TEST(CounterTest, WindowExpirySetWithFirstIncrementOnly) {
  CounterOptions o;
  o.window = 400ms;
  auto c = this->template counter<long long>(o);
  EXPECT_EQ(c.incr(), 1);
  auto first = c.ttl();
  ASSERT_TRUE(first.has_value());
  EXPECT_LE(*first, 400ms);
  EXPECT_EQ(c.incr(), 2);
  auto second = c.ttl();
  ASSERT_TRUE(second.has_value());
  EXPECT_LE(*second, *first);  // later increments do not push the window out
  // After the window the key is gone and the next increment opens a new one.
  ASSERT_TRUE(redkit::test::wait_until([&] { return !this->exists(); }, 2000ms));
  EXPECT_EQ(c.incr(), 1);
  EXPECT_TRUE(c.ttl().has_value());
}

TYPED_TEST(CounterTest, WindowRepairsAKeyThatLostItsExpiry) {
  CounterOptions o;
  o.window = 60s;
  auto c = this->template counter<int>(o);
  this->client_.command(Command{"SET"}.key(this->key_).arg("5"));  // no TTL
  EXPECT_EQ(c.incr(), 6);
  EXPECT_TRUE(c.ttl().has_value());
  EXPECT_THROW(RedisCounter<int>(redkit::Redis(), "x", CounterOptions{0ms}), redkit::ConfigError);
}

TYPED_TEST(CounterTest, ExpireAndTtl) {
  auto c = this->template counter<long long>();
  EXPECT_FALSE(c.expire(10s));  // missing key
  EXPECT_FALSE(c.ttl().has_value());
  c.incr();
  EXPECT_FALSE(c.ttl().has_value());  // no expiry
  EXPECT_TRUE(c.expire(10s));
  auto t = c.ttl();
  ASSERT_TRUE(t.has_value());
  EXPECT_GT(*t, 9s);
  EXPECT_LE(*t, 10s);
}

TYPED_TEST(CounterTest, NonNumericValueGivesDecodeErrorNamingTheKey) {
  this->client_.command(Command{"SET"}.key(this->key_).arg("not a number"));
  auto c = this->template counter<long long>();
  try {
    c.get();
    FAIL();
  } catch (const redkit::DecodeError& e) {
    EXPECT_EQ(e.key(), this->key_);
  }
  EXPECT_THROW(c.incr(), redkit::DecodeError);  // INCRBY refused what the key holds
  EXPECT_EQ(this->raw_get(), "not a number");  // nothing overwritten
  this->client_.command(Command{"SET"}.key(this->key_).arg("300"));
  EXPECT_THROW(this->template counter<std::uint8_t>().get(), OverflowError);
}

TYPED_TEST(CounterTest, WrongTypeIsReplyError) {
  this->client_.command(Command{"LPUSH"}.key(this->key_).arg("x"));
  auto c = this->template counter<int>();
  try {
    c.incr();
    FAIL();
  } catch (const redkit::ReplyError& e) {
    EXPECT_NE(std::string(e.what()).find("WRONGTYPE"), std::string::npos) << e.what();
  }
}

TYPED_TEST(CounterTest, RecoversFromScriptFlush) {
  auto c = this->template counter<std::int16_t>();
  EXPECT_EQ(c.incr(), 1);
  this->client_.command({"SCRIPT", "FLUSH"});
  EXPECT_EQ(c.incr(), 2);
}

// Multi-process: the single-server kind only (the processes connect by URI).
TEST(CounterProcesses, FourProcessesTimes5000IncrementsGiveTheExactTotal) {
  const std::string key = unique_prefix() + "procs";
  const std::string helper = redkit::test::helper_path("counter_worker");
  std::vector<std::unique_ptr<redkit::test::ChildProcess>> kids;
  for (int i = 0; i < 4; ++i) {
    kids.push_back(std::make_unique<redkit::test::ChildProcess>(
        helper, std::vector<std::string>{redkit::test::shared_server().uri(), key, "5000"}));
  }
  for (auto& k : kids) EXPECT_EQ(k->wait(120s), 0) << k->output();
  EXPECT_EQ(redkit::test::shared_server().cli("GET", key), "20000");
}
