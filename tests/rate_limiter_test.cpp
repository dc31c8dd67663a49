// RedisRateLimiter over every client kind (see support/clients.hpp), the
// multi-process bound, and the limits of its input.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <redkit/rate_limiter.hpp>
#include <redkit/slot.hpp>

#include "support/clients.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::ConfigError;
using redkit::DecodeError;
using redkit::RateLimit;
using redkit::RateLimitResult;
using redkit::RedisRateLimiter;
using redkit::test::unique_prefix;
using redkit::test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

template <class Client>
long long server_us(Client& client) {
  redkit::Reply t = client.command({"TIME"});
  return std::stoll(t[0].string_copy()) * 1000000 + std::stoll(t[1].string_copy());
}

// A stored state, read back as the README describes it: "<µs>" or "<µs>+<num>/<den>".
struct Tat {
  long long us = 0;
  long long num = 0;
  long long den = 1;
};
Tat parse_tat(const std::string& v) {
  static const std::regex form(R"(^(\d+)(?:\+(\d+)/(\d+))?$)");
  std::smatch m;
  if (!std::regex_match(v, m, form)) throw std::runtime_error("not a TAT: '" + v + "'");
  Tat t;
  t.us = std::stoll(m[1]);
  if (m[2].matched) {
    t.num = std::stoll(m[2]);
    t.den = std::stoll(m[3]);
  }
  return t;
}

}  // namespace

template <class Kind>
class RateLimiterTest : public ::testing::Test {
 protected:
  using Client = typename Kind::Client;
  RateLimiterTest() : client_(Kind::make()), prefix_(unique_prefix() + "rl:") {}

  RedisRateLimiter<Client> limiter(RateLimit limit) { return RedisRateLimiter<Client>(client_, prefix_, limit); }
  std::string key(const std::string& k = "k") { return prefix_ + k; }
  std::string raw_get(const std::string& k = "k") {
    auto r = this->client_.command(Command{"GET"}.key(key(k)));
    return r.is_nil() ? "(nil)" : r.string_copy();
  }
  long long pexpiretime(const std::string& k = "k") {
    return this->client_.command(Command{"PEXPIRETIME"}.key(key(k))).integer();
  }
  long long pttl(const std::string& k = "k") { return this->client_.command(Command{"PTTL"}.key(key(k))).integer(); }
  bool exists(const std::string& k = "k") {
    return this->client_.command(Command{"EXISTS"}.key(key(k))).integer() == 1;
  }
  void raw_set(const std::string& value, const std::string& k = "k") {
    this->client_.command(Command{"SET"}.key(key(k)).arg(value));
  }

  Client client_;
  std::string prefix_;
};

TYPED_TEST_SUITE(RateLimiterTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(RateLimiterTest, AllowsTheBurstAtOnceThenDeniesWithTheTimeUntilTheNextFits) {
  auto rl = this->limiter({3, 10s, 3});  // one request per 3.33 s, 3 at once
  for (int i = 2; i >= 0; --i) {
    const RateLimitResult r = rl.allow("k");
    EXPECT_TRUE(r.allowed);
    EXPECT_EQ(r.remaining, i);
    EXPECT_EQ(r.retry_after, 0ms);
    EXPECT_GT(r.reset_after, 3333ms * (3 - i) - 1s);  // the debt grows one interval per request
    EXPECT_LE(r.reset_after, 3334ms * (3 - i));
  }
  const RateLimitResult denied = rl.allow("k");
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.remaining, 0);
  EXPECT_GT(denied.retry_after, 2s);  // the first request's interval is running out
  EXPECT_LE(denied.retry_after, 3334ms);
  EXPECT_GT(denied.reset_after, 9s);
  EXPECT_LE(denied.reset_after, 10s);
  // Another key is limited on its own.
  EXPECT_TRUE(rl.allow("other").allowed);
}

TYPED_TEST(RateLimiterTest, ACostCountsAsThatManyRequests) {
  auto rl = this->limiter({5, 100s, 5});
  RateLimitResult r = rl.allow("k", 3);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 2);
  r = rl.allow("k", 3);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.remaining, 2);  // two single requests still fit
  EXPECT_GT(r.retry_after, 19s);
  EXPECT_LE(r.retry_after, 20s);  // one interval: the third unit frees up after 20 s
  r = rl.allow("k", 2);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 0);
}

TYPED_TEST(RateLimiterTest, ADeniedRequestChangesNothing) {
  auto rl = this->limiter({1, 60s, 2});
  ASSERT_TRUE(rl.allow("k").allowed);
  ASSERT_TRUE(rl.allow("k").allowed);
  const std::string value = this->raw_get();
  const long long expiry = this->pexpiretime();
  // Writes since the last save on the key's server: a denial must not be one.
  auto dirty = [&] {
    std::string info;
    if constexpr (TestFixture::Client::shards_keys) {
      info = redkit::test::shared_cluster().master_of(redkit::hash_slot(this->key())).cli("INFO", "persistence");
    } else {
      info = this->client_.command({"INFO", "persistence"}).string_copy();
    }
    const std::string field = "rdb_changes_since_last_save:";
    return std::stoll(info.substr(info.find(field) + field.size()));
  };
  const long long dirty_before = dirty();
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(rl.allow("k").allowed);
    EXPECT_FALSE(rl.allow("k", 2).allowed);
  }
  EXPECT_EQ(this->raw_get(), value);  // byte-identical
  EXPECT_EQ(this->pexpiretime(), expiry);
  EXPECT_EQ(dirty(), dirty_before);
}

TYPED_TEST(RateLimiterTest, TheStoredTimeIsTheServersClockPlusOneInterval) {
  auto rl = this->limiter({100, 1s, 10});  // 10 ms per request
  const long long before = server_us(this->client_);
  ASSERT_TRUE(rl.allow("k").allowed);
  const long long after = server_us(this->client_);
  const Tat tat = parse_tat(this->raw_get());
  EXPECT_EQ(tat.num, 0);  // 10 ms is a whole number of microseconds
  EXPECT_GE(tat.us, before + 10000);
  EXPECT_LE(tat.us, after + 10000);
}

TYPED_TEST(RateLimiterTest, FractionalIntervalsAddUpExactly) {
  auto rl = this->limiter({3, 1s, 3});  // 333333 1/3 µs per request
  ASSERT_TRUE(rl.allow("k").allowed);
  const Tat first = parse_tat(this->raw_get());
  EXPECT_EQ(first.num, 1);
  EXPECT_EQ(first.den, 3);
  ASSERT_TRUE(rl.allow("k").allowed);
  const Tat second = parse_tat(this->raw_get());
  EXPECT_EQ(second.us, first.us + 333333);
  EXPECT_EQ(second.num, 2);
  ASSERT_TRUE(rl.allow("k").allowed);
  const std::string third = this->raw_get();
  EXPECT_EQ(third, std::to_string(first.us + 666667));  // 3 × 1/3 carried into a whole µs
  EXPECT_FALSE(rl.allow("k").allowed);
}

TYPED_TEST(RateLimiterTest, TheKeyLivesExactlyAsLongAsTheBucketTakesToDrain) {
  for (const RateLimit limit : {RateLimit{100, 1s, 10}, RateLimit{3, 1s, 3}, RateLimit{7, 300ms, 4}}) {
    auto rl = this->limiter(limit);
    this->client_.command(Command{"DEL"}.key(this->key()));
    for (int i = 0; i < 3; ++i) {
      const RateLimitResult r = rl.allow("k");
      ASSERT_TRUE(r.allowed);
      const Tat tat = parse_tat(this->raw_get());
      // Expiry at the first millisecond at or after the TAT: never before
      // the bucket is empty, never a millisecond later.
      EXPECT_EQ(this->pexpiretime(), (tat.us + (tat.num > 0 ? 1 : 0) + 999) / 1000);
      // PTTL counts from the server's current millisecond, so it may read
      // one more than reset_after (rounded up from the exact microsecond).
      const long long ttl = this->pttl();
      EXPECT_GT(ttl, 0);
      EXPECT_LE(ttl, r.reset_after.count() + 1);
      const auto drain = limit.period * limit.burst / limit.rate;  // the whole burst's drain time
      EXPECT_LE(std::chrono::milliseconds(ttl), drain + 1ms);
    }
  }
}

TYPED_TEST(RateLimiterTest, AfterTheDrainTimeTheKeyIsGoneAndTheWholeBurstIsBack) {
  auto rl = this->limiter({20, 1s, 2});  // 50 ms per request, 100 ms to drain
  ASSERT_TRUE(rl.allow("k").allowed);
  ASSERT_TRUE(rl.allow("k").allowed);
  ASSERT_FALSE(rl.allow("k").allowed);
  ASSERT_TRUE(redkit::test::wait_until([&] { return !this->exists(); }, 2000ms));
  RateLimitResult r = rl.allow("k");
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 1);
}

TYPED_TEST(RateLimiterTest, ResetForgetsTheKey) {
  auto rl = this->limiter({1, 60s, 2});
  ASSERT_TRUE(rl.allow("k", 2).allowed);
  ASSERT_FALSE(rl.allow("k").allowed);
  rl.reset("k");
  EXPECT_FALSE(this->exists());
  const RateLimitResult r = rl.allow("k");
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 1);
  rl.reset("never-used");  // not an error
}

TYPED_TEST(RateLimiterTest, WaitReturnsTrueOnceAllowed) {
  auto rl = this->limiter({20, 1s, 1});  // 50 ms per request
  ASSERT_TRUE(rl.allow("k").allowed);
  const RateLimitResult denied = rl.allow("k");
  ASSERT_FALSE(denied.allowed);
  const auto t0 = Clock::now();
  EXPECT_TRUE(rl.wait("k", 2s));
  const long long took = ms_since(t0);
  EXPECT_GE(took, denied.retry_after.count() - 5);  // it did wait for the interval
  EXPECT_LT(took, 1000);
  EXPECT_FALSE(rl.allow("k").allowed);  // and the wait took the slot
}

TYPED_TEST(RateLimiterTest, WaitGivesUpAtOnceWhenTheNextChanceIsPastItsTimeout) {
  // The next chance is a minute away; a wait that slept would take its
  // whole 3 s timeout, one that gives up at once a round trip (the margin
  // is for a loaded CI machine under a sanitizer).
  auto rl = this->limiter({1, 60s, 1});
  ASSERT_TRUE(rl.allow("k").allowed);
  const auto t0 = Clock::now();
  EXPECT_FALSE(rl.wait("k", 3s));
  EXPECT_LT(ms_since(t0), 1000);
}

TYPED_TEST(RateLimiterTest, WaitNeverSleepsPastItsTimeout) {
  using Client = typename TestFixture::Client;
  // A competitor polls without pause and takes almost every slot as it
  // frees up; the waiter sleeps between its tries, so it mostly loses.
  auto rl = this->limiter({50, 1s, 1});  // 20 ms per request
  std::atomic<bool> stop{false};
  std::thread competitor([&] {
    RedisRateLimiter<Client> other(this->client_, this->prefix_, {50, 1s, 1});
    const auto until = Clock::now() + 5s;
    while (!stop && Clock::now() < until) other.allow("k");
  });
  for (const auto timeout : {250ms, 45ms, 1ms}) {
    const auto t0 = Clock::now();
    const bool got = rl.wait("k", timeout);
    const long long took = ms_since(t0);
    EXPECT_LE(took, timeout.count() + 100) << "allowed=" << got;  // the deadline plus one round trip
  }
  stop = true;
  competitor.join();
}

TYPED_TEST(RateLimiterTest, WaitWithZeroTimeoutMakesOneAttempt) {
  auto rl = this->limiter({1, 60s, 1});
  EXPECT_TRUE(rl.wait("k", 0ms));
  const auto t0 = Clock::now();
  EXPECT_FALSE(rl.wait("k", 0ms));
  EXPECT_FALSE(rl.wait("k", -5ms));
  EXPECT_LT(ms_since(t0), 1000);  // the next chance is 60 s away: no sleep
}

TYPED_TEST(RateLimiterTest, BadCostIsConfigErrorAtCallTimeAndSendsNothing) {
  auto rl = this->limiter({10, 1s, 5});
  EXPECT_THROW(rl.allow("k", 0), ConfigError);
  EXPECT_THROW(rl.allow("k", -1), ConfigError);
  EXPECT_THROW(rl.allow("k", 6), ConfigError);  // above the burst: could never be allowed
  EXPECT_THROW(rl.wait("k", 1s, 6), ConfigError);
  EXPECT_THROW(rl.wait("k", 1s, 0), ConfigError);
  EXPECT_FALSE(this->exists());
  EXPECT_TRUE(rl.allow("k", 5).allowed);  // exactly the burst is fine
}

TYPED_TEST(RateLimiterTest, AValueThatIsNotALimiterStateGivesDecodeErrorNamingTheKeyAndStaysAsItWas) {
  auto rl = this->limiter({10, 1s, 5});
  for (const std::string& bad : std::vector<std::string>{"garbage", "", "-5", "12abc", "1e15", " 1", "1 ", "1.5", "99999999999999999", "9007199254740992",
        "1+3/3", "1+1/0", "1+/3", "1+1/", "+1/3", std::string("17\0", 3), std::string(100000, '7')}) {
    this->raw_set(bad);
    try {
      rl.allow("k");
      ADD_FAILURE() << "no DecodeError for '" << bad.substr(0, 40) << "'";
    } catch (const DecodeError& e) {
      EXPECT_EQ(e.key(), this->key());
    }
    EXPECT_EQ(this->raw_get(), bad);
  }
  this->client_.command(Command{"DEL"}.key(this->key()));
  this->client_.command(Command{"LPUSH"}.key(this->key()).arg("x"));
  try {
    rl.allow("k");
    ADD_FAILURE() << "no DecodeError for a list";
  } catch (const DecodeError& e) {
    EXPECT_EQ(e.key(), this->key());
    EXPECT_NE(std::string(e.what()).find("list"), std::string::npos) << e.what();
  }
  EXPECT_EQ(this->client_.command(Command{"LLEN"}.key(this->key())).integer(), 1);
}

TYPED_TEST(RateLimiterTest, StateFromAnotherLimitIsReadConservatively) {
  auto rl = this->limiter({100, 1s, 2});  // 10 ms per request, at most 20 ms of debt
  // A TAT 5 s ahead (a stricter limit's state, or a server clock that
  // stepped back): denied until it drains, and left as it was.
  const std::string ahead = std::to_string(server_us(this->client_) + 5000000);
  this->raw_set(ahead);
  const RateLimitResult r = rl.allow("k");
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.remaining, 0);
  // 5 s less the time since the SET (a second of margin for a stalled
  // machine; the limit's own debt is at most 20 ms).
  EXPECT_GT(r.retry_after, 4000ms);
  EXPECT_LE(r.retry_after, 5000ms);
  EXPECT_GT(r.reset_after, 4000ms);
  EXPECT_EQ(this->raw_get(), ahead);
  // A TAT in the past is a full bucket.
  this->raw_set("5");
  const RateLimitResult fresh = rl.allow("k");
  EXPECT_TRUE(fresh.allowed);
  EXPECT_EQ(fresh.remaining, 1);
  // A fraction of another denominator is rounded up to the next microsecond.
  const long long now = server_us(this->client_);
  this->raw_set(std::to_string(now + 1000000) + "+1/7");
  EXPECT_GT(rl.allow("k").retry_after, 500ms);  // 1 s less the time since
}

TYPED_TEST(RateLimiterTest, TheClientSendsNoTimeOfItsOwn) {
  // By construction the decision depends only on what the script is sent
  // and on the server's TIME. Two decisions 50 ms apart send the same
  // bytes, so a client whose clock is off by any amount sends them too.
  auto rl = this->limiter({1000, 1s, 100});
  redkit::Lease monitor = this->client_.lease(this->key());
  ASSERT_TRUE(monitor.command(Command{"MONITOR"}).ok());
  rl.allow("k");
  std::this_thread::sleep_for(50ms);  // time that must pass for what is tested
  rl.allow("k");
  std::vector<std::string> evals;
  const auto deadline = Clock::now() + 5s;
  while (evals.size() < 2 && Clock::now() < deadline) {
    auto line = monitor.try_read(200ms);
    if (!line) continue;
    const std::string text = line->string_copy();
    if (text.find("\"EVALSHA\"") == std::string::npos || text.find(this->key()) == std::string::npos) continue;
    evals.push_back(text.substr(text.find("] ") + 2));  // drop the monitor's timestamp and client
  }
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_EQ(evals[0], evals[1]);
  // The arguments are the key, the interval (1000/1 µs), the burst and the cost.
  EXPECT_NE(evals[0].find("\"1\" \"" + this->key() + "\" \"1000\" \"1\" \"100\" \"1\""), std::string::npos)
      << evals[0];
}

TYPED_TEST(RateLimiterTest, AtAnyIntervalNoMoreThanBurstPlusRateTimesItsLength) {
  using Client = typename TestFixture::Client;
  // Four threads share one limiter for 1 s at 50/s, burst 25. Each allowed
  // decision is bracketed by the server's TIME before and after it; for
  // every pair of allowed decisions i..j, the decisions certainly inside
  // [before_i, after_j] may number at most burst + rate × (after_j - before_i) / period.
  // The bucket is 0.5 s deep so that a scheduling stall of the test or the
  // server shorter than that (a loaded 2-core CI machine under ASan) costs
  // no capacity: the lower bound below holds under steady overload only.
  const RateLimit limit{50, 1s, 25};
  auto rl = this->limiter(limit);
  struct Stamp {
    long long before, after;
  };
  std::mutex m;
  std::vector<Stamp> allowed;
  long long denied = 0;
  std::vector<std::thread> threads;
  const auto until = Clock::now() + 1s;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      Client c = this->client_;
      for (int i = 0; i < 100000 && Clock::now() < until; ++i) {
        const long long before = server_us(c);
        const bool ok = rl.allow("k").allowed;
        const long long after = server_us(c);
        std::lock_guard<std::mutex> lk(m);
        if (ok) {
          allowed.push_back({before, after});
        } else {
          ++denied;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_GT(denied, 0);  // it was overloaded
  std::sort(allowed.begin(), allowed.end(), [](const Stamp& a, const Stamp& b) { return a.before < b.before; });
  const long long interval_us = 20000;
  long long worst_excess_ppm = -1000000000;  // (count - bound) in millionths of a request
  for (std::size_t i = 0; i < allowed.size(); ++i) {
    for (std::size_t j = i; j < allowed.size(); ++j) {
      const long long lo = allowed[i].before, hi = allowed[j].after;
      if (hi < lo) continue;
      long long inside = 0;
      for (std::size_t k = i; k < allowed.size() && allowed[k].before <= hi; ++k) {
        if (allowed[k].before >= lo && allowed[k].after <= hi) ++inside;
      }
      const long long bound_ppm = limit.burst * 1000000 + (hi - lo) * 1000000 / interval_us;
      worst_excess_ppm = std::max(worst_excess_ppm, inside * 1000000 - bound_ppm);
    }
  }
  EXPECT_LE(worst_excess_ppm, 0) << "some window held more than the GCRA bound";
  // And the whole run came close to the bound: overload meets it within one
  // (GCRA admits burst + ⌊span / interval⌋ over the decisions' own span,
  // which the brackets exceed by less than one interval).
  const long long span = allowed.back().after - allowed.front().before;
  EXPECT_GE(static_cast<long long>(allowed.size()), limit.burst + span / interval_us - 1)
      << "allowed " << allowed.size() << " in " << span << " µs";
}

TYPED_TEST(RateLimiterTest, RecoversFromScriptFlush) {
  auto rl = this->limiter({10, 1s, 3});
  EXPECT_TRUE(rl.allow("k").allowed);
  for (auto& m : this->client_.masters()) m.command({"SCRIPT", "FLUSH"});
  const RateLimitResult r = rl.allow("k");
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 1);
}

TYPED_TEST(RateLimiterTest, AMovedFromLimiterThrowsError) {
  auto rl = this->limiter({10, 1s, 3});
  auto other = std::move(rl);
  EXPECT_THROW(rl.allow("k"), redkit::Error);       // NOLINT(bugprone-use-after-move): the point
  EXPECT_THROW(rl.wait("k", 10ms), redkit::Error);  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW(rl.reset("k"), redkit::Error);       // NOLINT(bugprone-use-after-move)
  try {
    rl.allow("k");  // NOLINT(bugprone-use-after-move)
  } catch (const redkit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("RedisRateLimiter was moved from"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(other.allow("k").allowed);
  auto copy = other;  // copies share the settings
  EXPECT_EQ(copy.allow("k").remaining, 1);  // and the same key in Redis
  rl = copy;  // a moved-from limiter may be assigned to, and then works
  EXPECT_TRUE(rl.allow("k").allowed);
  EXPECT_FALSE(rl.allow("k").allowed);  // the third of the burst of 3
}

TYPED_TEST(RateLimiterTest, WaitWithTheLongestTimeoutSaturatesInsteadOfOverflowing) {
  auto rl = this->limiter({20, 1s, 1});  // 50 ms per request
  ASSERT_TRUE(rl.allow("k").allowed);
  const auto t0 = Clock::now();
  EXPECT_TRUE(rl.wait("k", std::chrono::milliseconds::max()));
  EXPECT_LT(ms_since(t0), 1000);
}

TEST(RateLimiterCluster, EachKeyLivesOnTheMasterOfItsSlotAndKeysSpreadOverAllMasters) {
  redkit::Cluster cluster = redkit::test::ClusterNodes::make();
  const std::string prefix = unique_prefix() + "rl:";
  RedisRateLimiter<redkit::Cluster> rl(cluster, prefix, {10, 60s, 1});
  std::set<int> slots, ports;
  for (int i = 0; i < 64; ++i) {
    const std::string user = "user-" + std::to_string(i);
    ASSERT_TRUE(rl.allow(user).allowed);
    ASSERT_FALSE(rl.allow(user).allowed);  // the second decision found the first one's key
    const int slot = redkit::hash_slot(prefix + user);
    slots.insert(slot);
    auto& master = redkit::test::shared_cluster().master_of(slot);
    EXPECT_EQ(master.cli("EXISTS", prefix + user), "1") << prefix + user;
    ports.insert(master.port());
  }
  EXPECT_GT(slots.size(), 50u);
  EXPECT_EQ(ports.size(), 3u);
}

// ---- bad limits: no server needed --------------------------------------------

TEST(RateLimiterConfig, NonPositiveRatePeriodOrBurstIsConfigError) {
  redkit::Redis unused(redkit::Options::from_uri("redis://127.0.0.1:1/0"));  // never contacted
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {0, 1s, 1}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {-1, 1s, 1}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, 0ms, 1}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, -1ms, 1}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, 1s, 0}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, 1s, -3}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", RateLimit{}), ConfigError);  // the defaults are no limit
  EXPECT_NO_THROW(RedisRateLimiter<>(unused, "p:", {1, 1ms, 1}));
}

TEST(RateLimiterConfig, TheMessageNamesTheFieldAndTheValue) {
  redkit::Redis unused(redkit::Options::from_uri("redis://127.0.0.1:1/0"));  // never contacted
  auto message = [&](RateLimit limit) -> std::string {
    try {
      RedisRateLimiter<> rl(unused, "p:", limit);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no ConfigError)";
  };
  EXPECT_NE(message({0, 1s, 1}).find("rate must be at least 1, not 0"), std::string::npos) << message({0, 1s, 1});
  EXPECT_NE(message({1, -5ms, 1}).find("period must be positive (got -5 ms)"), std::string::npos)
      << message({1, -5ms, 1});
  EXPECT_NE(message({1, 1s, -3}).find("burst must be at least 1, not -3"), std::string::npos)
      << message({1, 1s, -3});
  RedisRateLimiter<> rl(unused, "p:", {10, 1s, 5});
  try {
    rl.allow("k", 6);
    ADD_FAILURE() << "no ConfigError for a cost above the burst";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cost 6 is outside 1..5"), std::string::npos) << e.what();
  }
}

TEST(RateLimiterConfig, LimitsBeyondWhatTheScriptComputesExactlyAreConfigErrors) {
  redkit::Redis unused(redkit::Options::from_uri("redis://127.0.0.1:1/0"));
  const std::int64_t two52 = std::int64_t{1} << 52;
  // burst × n ≤ 2^52, where period/rate = n/d µs reduced: 1 s / 7 is 10^6/7.
  const std::int64_t max_burst = two52 / 1000000;
  EXPECT_NO_THROW(RedisRateLimiter<>(unused, "p:", {7, 1s, max_burst}));
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {7, 1s, max_burst + 1}), ConfigError);
  // Reduced first: 1,000,000 per day is 86,400 µs each, so a burst of a
  // million per day is fine.
  EXPECT_NO_THROW(RedisRateLimiter<>(unused, "p:", {1000000, 24h, 1000000}));
  // d ≤ 2^52: an odd rate per millisecond stays unreduced past it.
  EXPECT_NO_THROW(RedisRateLimiter<>(unused, "p:", {two52 - 1, 1ms, 1}));  // (2^52-1)/5 after reduction
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {two52 + 1, 1ms, 1}), ConfigError);
  // period and the drain time burst × period / rate at most 2^50 µs.
  const std::chrono::milliseconds longest((std::int64_t{1} << 50) / 1000);
  EXPECT_NO_THROW(RedisRateLimiter<>(unused, "p:", {1, longest, 1}));
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, longest + 1ms, 1}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, 24h, 13100}), ConfigError);  // 35.9 years to drain
  EXPECT_NO_THROW(RedisRateLimiter<>(unused, "p:", {1, 24h, 13000}));            // 35.6 years
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, std::chrono::milliseconds::max(), 1}), ConfigError);
  EXPECT_THROW(RedisRateLimiter<>(unused, "p:", {1, 1s, INT64_MAX}), ConfigError);
}

TEST(RateLimiterExact, AtTheBoundsTheCountsStayExact) {
  redkit::Redis redis(redkit::Options::from_uri(redkit::test::shared_server().uri()));
  const std::string prefix = unique_prefix();
  // The largest burst for 7 per second (10^6/7 µs each): burst × 10^6 ≤ 2^52.
  const std::int64_t two52 = std::int64_t{1} << 52;
  const RateLimit big{7, 1s, two52 / 1000000};  // burst 4,503,599,627
  RedisRateLimiter<> rl(redis, prefix, big);
  RateLimitResult r = rl.allow("k", big.burst - 1);
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, 1);
  r = rl.allow("k", 2);
  EXPECT_FALSE(r.allowed);
  EXPECT_EQ(r.remaining, 1);
  // retry_after: one interval (142.86 ms) minus the little time since.
  EXPECT_GT(r.retry_after, 100ms);
  EXPECT_LE(r.retry_after, 143ms);
  // A tiny interval: 2^52 - 1 per millisecond is 1000/(2^52-1) µs each,
  // reduced to 200/((2^52-1)/5).
  const RateLimit fine{two52 - 1, 1ms, two52 / 200};
  RedisRateLimiter<> rl2(redis, prefix + "fine:", fine);
  r = rl2.allow("k");
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.remaining, fine.burst - 1);
}

// ---- several processes ---------------------------------------------------------

namespace {

struct WorkerReport {
  long long allowed = 0, denied = 0, start_us = 0, end_us = 0, skew_s = 0;
};

// Runs one rate_limiter_worker per entry of shifts (its wall clock moved by
// that many seconds) against one key, all at once, and collects their reports.
std::vector<WorkerReport> run_workers(const std::string& prefix, const std::vector<long long>& shifts,
                                      const std::string& rate, const std::string& period_ms,
                                      const std::string& burst, const std::string& threads,
                                      const std::string& run_ms) {
  const std::string helper = redkit::test::helper_path("rate_limiter_worker");
  std::vector<std::unique_ptr<redkit::test::ChildProcess>> kids;
  for (long long shift : shifts) {
    kids.push_back(std::make_unique<redkit::test::ChildProcess>(
        helper, std::vector<std::string>{redkit::test::shared_server().uri(), prefix, "k", rate, period_ms, burst,
                                         threads, run_ms, std::to_string(shift)}));
  }
  std::vector<WorkerReport> reports;
  for (auto& k : kids) {
    EXPECT_EQ(k->wait(120s), 0) << k->output();
    WorkerReport r;
    int failures = -1;
    EXPECT_EQ(std::sscanf(k->output().c_str(),
                          "allowed=%lld denied=%lld start_us=%lld end_us=%lld failures=%d skew_s=%lld", &r.allowed,
                          &r.denied, &r.start_us, &r.end_us, &failures, &r.skew_s),
              6)
        << k->output();
    reports.push_back(r);
  }
  return reports;
}

// Every allowed decision lies in [first start, last end] on the server's
// clock (t long). No window may hold more than burst + rate × t / period.
// The processes overlapped and were overloaded throughout, so GCRA admitted
// exactly burst + ⌊rate × span / period⌋ over the decisions' own span, which
// the brackets exceed by a few round trips (less than one interval): the
// count lies between ⌊bound⌋ - 1 and the bound. The callers use a 0.5 s
// deep bucket (burst 50 at 100/s), so a stall of every process or of the
// server shorter than that loses no capacity and overload stays steady.
void expect_gcra_bound_within_one(const std::vector<WorkerReport>& reports, double burst, double per_second) {
  long long allowed = 0, denied = 0, start = LLONG_MAX, end = 0;
  for (const auto& r : reports) {
    allowed += r.allowed;
    denied += r.denied;
    start = std::min(start, r.start_us);
    end = std::max(end, r.end_us);
  }
  const double t = static_cast<double>(end - start) / 1e6;
  const double bound = burst + per_second * t;
  EXPECT_GT(denied, allowed);  // overloaded
  EXPECT_LE(static_cast<double>(allowed), bound) << "t=" << t << " s";
  EXPECT_GE(static_cast<double>(allowed), std::floor(bound) - 1) << "t=" << t << " s";
  std::printf("%zu processes: allowed %lld, denied %lld, t %.6f s, GCRA bound %.3f\n", reports.size(), allowed,
              denied, t, bound);
}

}  // namespace

TEST(RateLimiterProcesses, FourProcessesTimesTwoThreadsForThreeSecondsMeetTheGcraBoundWithinOne) {
  const auto reports = run_workers(unique_prefix(), {0, 0, 0, 0}, "100", "1000", "50", "2", "3000");
  ASSERT_EQ(reports.size(), 4u);
  expect_gcra_bound_within_one(reports, 50, 100);
}

TEST(RateLimiterProcesses, TwoProcessesWhoseClocksAreTwoHoursApartShareOneLimit) {
  const auto reports = run_workers(unique_prefix(), {3600, -3600}, "100", "1000", "50", "2", "1500");
  ASSERT_EQ(reports.size(), 2u);
  // Each process's wall clock really was moved (by its own system_clock).
  EXPECT_NEAR(reports[0].skew_s, 3600, 2);
  EXPECT_NEAR(reports[1].skew_s, -3600, 2);
  expect_gcra_bound_within_one(reports, 50, 100);
  // One limit, shared: neither clock gives its process the lion's share.
  const long long total = reports[0].allowed + reports[1].allowed;
  std::printf("clock +1 h: %lld allowed, clock -1 h: %lld allowed\n", reports[0].allowed, reports[1].allowed);
  EXPECT_GE(reports[0].allowed * 5, total) << reports[0].allowed << " of " << total;
  EXPECT_GE(reports[1].allowed * 5, total) << reports[1].allowed << " of " << total;
}
