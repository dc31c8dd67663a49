// RedisSemaphore against real servers, over Redis, sentinel-mode Redis and
// Cluster: never more than `permits` held across threads and processes,
// permits are leases (a killed holder's permit comes back after its TTL),
// renewal and loss, waiting by wake-up (one waiter in Redis per process),
// the stored count, deadlines, bad input and moved-from objects.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <redkit/semaphore.hpp>
#include <redkit/slot.hpp>

#include "support/clients.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::RedisSemaphore;
using redkit::SemaphoreOptions;
using redkit::SemaphorePermit;
using redkit::test::ChildProcess;
using redkit::test::RedisServer;
using redkit::test::unique_prefix;
using redkit::test::wait_until;
using redkit::test::waiting_count;
using redkit::test::info_number;
using redkit::test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

SemaphoreOptions no_renew(std::chrono::milliseconds ttl) {
  SemaphoreOptions o;
  o.ttl = ttl;
  o.auto_renew = false;
  return o;
}

// Waiters that only a wake-up (or a permit's expiry) can get in quickly.
SemaphoreOptions slow_fallback() {
  SemaphoreOptions o;
  o.retry_min = 10s;
  o.retry_max = 10s;
  return o;
}

}  // namespace

// ---- over every client kind -------------------------------------------------

template <class Kind>
class SemaphoreTest : public ::testing::Test {
 public:
  using Client = typename Kind::Client;
  using Semaphore = RedisSemaphore<Client>;
  Client client = Kind::make();
  // Another client stands for another process: its own per-process state.
  Client other = Kind::make();
  const std::string name = unique_prefix() + "sem";
  const redkit::detail::SemaphoreKeys keys = redkit::detail::semaphore_keys(name);

  long long blocked() { return info_number(client, "clients", "blocked_clients", keys.wake); }
  long long server_commands() { return info_number(client, "stats", "total_commands_processed", keys.permits); }
  // EVALSHA calls the node of the permits key served (INFO commandstats).
  long long script_calls() { return std::max(0LL, info_number(client, "commandstats", "cmdstat_evalsha", keys.permits)); }
  // Permits held (members scored above any count), expired or not.
  long long held() { return client.command(Command{"ZCOUNT"}.key(keys.permits).arg("(1000000000").arg("+inf")).integer(); }
  std::string count() {
    redkit::Reply r = client.command(Command{"ZSCORE"}.key(keys.permits).arg("#count"));
    return r.is_nil() ? "(nil)" : std::string(r.string());
  }
  long long pttl(const std::string& key) { return client.command(Command{"PTTL"}.key(key)).integer(); }
  Client make() { return Kind::make(); }
};
TYPED_TEST_SUITE(SemaphoreTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(SemaphoreTest, APermitIsAMemberOfTheHolderSetUntilReleased) {
  typename TestFixture::Semaphore sem(this->client, this->name, 2, no_renew(5s));
  EXPECT_EQ(sem.available(), 2);
  SemaphorePermit p = sem.acquire();
  EXPECT_TRUE(p.owns());
  EXPECT_EQ(p.id().size(), 32u);
  EXPECT_EQ(p.id().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(this->client.command(Command{"ZSCORE"}.key(this->keys.permits).arg(p.id())).is_nil(), true);
  EXPECT_EQ(sem.available(), 1);
  EXPECT_EQ(this->count(), "2");
  p.release();
  EXPECT_FALSE(p.owns());
  EXPECT_EQ(this->held(), 0);
  EXPECT_EQ(sem.available(), 2);
  p.release();  // released already: no-op
  EXPECT_EQ(p.id().size(), 32u);  // still answers
}

TYPED_TEST(SemaphoreTest, TryAcquireFailsWhenAllAreHeldAndSucceedsAfterARelease) {
  typename TestFixture::Semaphore a(this->client, this->name, 2);
  typename TestFixture::Semaphore b(this->other, this->name, 2);
  auto p1 = a.try_acquire();
  auto p2 = b.try_acquire();
  ASSERT_TRUE(p1 && p2);
  EXPECT_NE(p1->id(), p2->id());
  EXPECT_FALSE(a.try_acquire());
  EXPECT_FALSE(b.try_acquire());
  EXPECT_EQ(a.available(), 0);
  p1->release();
  auto p3 = b.try_acquire();
  ASSERT_TRUE(p3);
  EXPECT_TRUE(p3->owns());
  EXPECT_EQ(this->held(), 2);
}

// Untrusted side keys: a waiting count that is a list (or any non-number)
// makes a waiter's registration fail with a typed error; a release still
// gives the permit back.
TYPED_TEST(SemaphoreTest, AForeignValueInTheWaitingCountIsAReplyErrorAndTheReleaseStillWorks) {
  typename TestFixture::Semaphore a(this->client, this->name, 1, no_renew(5s));
  typename TestFixture::Semaphore b(this->other, this->name, 1, slow_fallback());
  auto p = a.acquire();
  this->client.command(Command{"RPUSH"}.key(this->keys.waiting).arg("x"));
  this->client.command(Command{"PEXPIRE"}.key(this->keys.waiting).arg(60000));
  EXPECT_THROW(b.try_acquire_for(200ms), redkit::ReplyError);
  p.release();
  EXPECT_EQ(this->held(), 0);
  EXPECT_EQ(this->client.command(Command{"LLEN"}.key(this->keys.waiting)).integer(), 1);  // left as it was
  this->client.command(Command{"DEL"}.key(this->keys.waiting));
  EXPECT_TRUE(b.try_acquire().has_value());
}

TYPED_TEST(SemaphoreTest, EveryKeySharesTheSlotOfTheNameAndExpires) {
  typename TestFixture::Semaphore holder(this->client, this->name, 1, no_renew(5s));
  typename TestFixture::Semaphore waiter(this->other, this->name, 1);
  auto p = holder.acquire();
  EXPECT_FALSE(waiter.try_acquire_for(1ms));  // registers, then leaves
  const auto& k = this->keys;
  for (const std::string* key : {&k.waiting, &k.wake}) {
    EXPECT_EQ(redkit::hash_slot(*key), redkit::hash_slot(k.permits)) << *key;
  }
  const long long permits_ttl = this->pttl(k.permits);
  EXPECT_GT(permits_ttl, 3500000);  // the longest permit (5 s) + 1 hour, refreshed when half of that hour is gone
  EXPECT_LE(permits_ttl, 3605000);
  EXPECT_EQ(waiting_count(this->client, k.waiting), 0);  // the waiter left
  std::atomic<bool> got{false};
  std::thread t([&] { got = waiter.try_acquire_for(10s).has_value(); });
  ASSERT_TRUE(wait_until([&] { return this->blocked() == 1; }, 5s));
  const long long waiting_ttl = this->pttl(k.waiting);
  EXPECT_GT(waiting_ttl, 50000);
  EXPECT_LE(waiting_ttl, 60000);
  p.release();
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(waiting_count(this->client, k.waiting), 0);
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(k.wake)).integer(), 0);
}

TYPED_TEST(SemaphoreTest, ThreadsSharingOneObjectNeverHaveMoreThanPermitsInside) {
  constexpr int kPermits = 3;
  constexpr int kThreads = 8;
  constexpr int kIterations = 15;
  typename TestFixture::Semaphore sem(this->client, this->name, kPermits);
  std::atomic<int> inside{0};
  std::atomic<int> peak{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIterations; ++i) {
        SemaphorePermit p = sem.acquire();
        const int n = ++inside;
        int seen = peak.load();
        while (n > seen && !peak.compare_exchange_weak(seen, n)) {
        }
        this->client.command(Command{"PING"}.route(this->keys.permits));  // time inside
        --inside;
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(done.load(), kThreads * kIterations);
  EXPECT_LE(peak.load(), kPermits);
  EXPECT_GE(peak.load(), 2);  // they did run side by side
  EXPECT_EQ(this->held(), 0);
}

TYPED_TEST(SemaphoreTest, AConstructorWithAnotherCountForAnExistingNameIsAConfigError) {
  typename TestFixture::Semaphore three(this->client, this->name, 3);
  try {
    typename TestFixture::Semaphore four(this->other, this->name, 4);
    ADD_FAILURE() << "expected ConfigError";
  } catch (const redkit::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("exists with 3 permits"), std::string::npos) << e.what();
  }
  typename TestFixture::Semaphore again(this->other, this->name, 3);  // the same count is fine
  EXPECT_EQ(again.permits(), 3);
  // A count that changed under a live object (deleted, set by hand) stops its acquires.
  this->client.command(Command{"ZADD"}.key(this->keys.permits).arg("5").arg("#count"));
  EXPECT_THROW(three.try_acquire(), redkit::ConfigError);
  EXPECT_THROW(typename TestFixture::Semaphore(this->other, this->name, 3), redkit::ConfigError);
  EXPECT_EQ(this->held(), 0);  // nothing was taken
  this->client.command(Command{"ZREM"}.key(this->keys.permits).arg("#count"));
  EXPECT_TRUE(three.try_acquire());
  EXPECT_EQ(this->count(), "3");
}

TYPED_TEST(SemaphoreTest, AReleaseWakesABlockedWaiterByNotification) {
  typename TestFixture::Semaphore holder(this->other, this->name, 1);
  typename TestFixture::Semaphore waiter(this->client, this->name, 1, slow_fallback());
  auto p = holder.acquire();
  std::atomic<long long> acquired_at{0};
  std::thread t([&] {
    SemaphorePermit mine = waiter.acquire();
    acquired_at = Clock::now().time_since_epoch().count();
  });
  // The waiter is in BLPOP on the wake list.
  ASSERT_TRUE(wait_until([&] { return this->blocked() == 1; }, 5s));
  const long long before = this->server_commands();
  const auto released_at = Clock::now();
  p.release();
  t.join();
  const auto latency = Clock::time_point(Clock::duration(acquired_at.load())) - released_at;
  // The fallback would take 10 s (and the permit never expires): only the wake-up explains this.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count(), 500);
  const long long commands = this->server_commands() - before - 1;
  this->RecordProperty("server_commands_release_to_acquired", std::to_string(commands));
  // Release script (3), acquire script (7), the waiter's unregistration
  // (none: the release used it) and its own release (3); a few more from
  // sentinels and replicas. A poller would need far more.
  EXPECT_LE(commands, 25) << commands;
}

TYPED_TEST(SemaphoreTest, AWaiterRegistersInItsFirstAttemptWhenAllAreHeld) {
  typename TestFixture::Semaphore holder(this->other, this->name, 1);
  typename TestFixture::Semaphore waiter(this->client, this->name, 1, slow_fallback());
  auto p = holder.acquire();
  EXPECT_FALSE(waiter.try_acquire_for(1ms));  // the scripts are loaded
  const long long before = this->script_calls();
  EXPECT_FALSE(waiter.try_acquire_for(50ms));
  const long long scripts = this->script_calls() - before;
  this->RecordProperty("scripts_per_timed_out_wait", std::to_string(scripts));
  // One acquire script, busy, that registered this process in the same
  // call; then the wait on the wake list, and the leave script. No attempt
  // that only finds all permits held.
  EXPECT_EQ(scripts, 2);
  EXPECT_EQ(waiting_count(this->client, this->keys.waiting), 0);  // the waiter left
}

TYPED_TEST(SemaphoreTest, OneReleaseWakesOneWaitingProcess) {
  typename TestFixture::Semaphore holder(this->other, this->name, 1);
  auto p = holder.acquire();
  constexpr int kWaiters = 3;  // three clients: three processes, each waiting in Redis
  std::vector<typename TestFixture::Client> clients;
  for (int i = 0; i < kWaiters; ++i) clients.push_back(this->make());
  std::atomic<int> acquired{0};
  std::atomic<bool> let_go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      typename TestFixture::Semaphore sem(clients[static_cast<std::size_t>(i)], this->name, 1, slow_fallback());
      SemaphorePermit mine = sem.acquire();
      ++acquired;
      wait_until([&] { return let_go.load(); }, 10s);
    });
  }
  ASSERT_TRUE(wait_until([&] { return this->blocked() == kWaiters; }, 5s));
  const auto t0 = Clock::now();
  p.release();
  ASSERT_TRUE(wait_until([&] { return acquired.load() == 1; }, 2s));
  ASSERT_TRUE(wait_until([&] { return this->blocked() == kWaiters - 1; }, 2s));
  std::this_thread::sleep_for(200ms);  // time for a herd to show itself
  EXPECT_EQ(acquired.load(), 1);
  EXPECT_EQ(this->blocked(), kWaiters - 1);
  let_go = true;  // each release wakes the next
  for (auto& t : threads) t.join();
  EXPECT_EQ(acquired.load(), kWaiters);
  EXPECT_LT(ms_since(t0), 5000);  // well inside one fallback wait
}

TYPED_TEST(SemaphoreTest, ThreadsOfOneProcessWaitInItWithOneWaiterInRedis) {
  typename TestFixture::Semaphore holder(this->other, this->name, 2);
  auto p1 = holder.acquire();
  auto p2 = holder.acquire();
  constexpr int kThreads = 6;
  typename TestFixture::Semaphore shared(this->client, this->name, 2, slow_fallback());
  std::atomic<int> acquired{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      SemaphorePermit mine = shared.acquire();
      ++acquired;
    });
  }
  EXPECT_TRUE(wait_until([&] { return this->blocked() == 1; }, 5s));
  std::this_thread::sleep_for(300ms);  // time for a second waiter to show itself
  EXPECT_EQ(this->blocked(), 1);
  EXPECT_EQ(waiting_count(this->client, this->keys.waiting), 1);
  const auto t0 = Clock::now();
  p1.release();
  for (auto& t : threads) t.join();
  EXPECT_EQ(acquired.load(), kThreads);
  EXPECT_LT(ms_since(t0), 5000);  // each release let the next in, well inside one fallback wait
  EXPECT_EQ(waiting_count(this->client, this->keys.waiting), 0);
}

TYPED_TEST(SemaphoreTest, AutoRenewKeepsA300msPermitForFourTimesItsTtl) {
  std::atomic<int> lost{0};
  SemaphoreOptions o;
  o.ttl = 300ms;
  o.on_lost = [&](const std::string&) { ++lost; };
  typename TestFixture::Semaphore sem(this->client, this->name, 1, o);
  typename TestFixture::Semaphore probe(this->other, this->name, 1);
  auto p = sem.acquire();
  const auto t0 = Clock::now();
  bool always = true;
  while (ms_since(t0) < 1200) {
    if (!p.owns()) always = false;
    if (probe.try_acquire()) always = false;  // would mean the permit expired
    std::this_thread::sleep_for(50ms);          // the hold itself: time passing
  }
  EXPECT_TRUE(always);
  EXPECT_TRUE(p.owns());
  EXPECT_EQ(lost.load(), 0);
  const long long score =
      std::stoll(std::string(this->client.command(Command{"ZSCORE"}.key(this->keys.permits).arg(p.id())).string_copy()));
  EXPECT_GT(score, 0);
}

TYPED_TEST(SemaphoreTest, OnLostFiresWhenThePermitIsDeletedExternally) {
  std::atomic<int> lost{0};
  std::string lost_name;
  SemaphoreOptions o;
  o.ttl = 300ms;
  o.on_lost = [&](const std::string& n) {
    lost_name = n;
    ++lost;
  };
  typename TestFixture::Semaphore sem(this->client, this->name, 2, o);
  auto p = sem.acquire();
  this->client.command(Command{"DEL"}.key(this->keys.permits));
  ASSERT_TRUE(wait_until([&] { return lost.load() == 1; }, 3s));
  EXPECT_FALSE(p.owns());
  EXPECT_EQ(lost_name, this->name);
  std::this_thread::sleep_for(300ms);  // no second report
  EXPECT_EQ(lost.load(), 1);
  p.release();  // never throws, leaves others alone
  EXPECT_TRUE(sem.try_acquire());
}

TYPED_TEST(SemaphoreTest, APermitNotRenewedIsFreeAgainAfterItsTtl) {
  // Only the permit's expiry can get the waiter in quickly: no release
  // comes and the fallback waits 10 s.
  typename TestFixture::Semaphore waiter(this->client, this->name, 1, slow_fallback());
  typename TestFixture::Semaphore crashed(this->other, this->name, 1, no_renew(600ms));
  auto p = crashed.acquire();
  const auto t0 = Clock::now();
  auto mine = waiter.try_acquire_for(5s);
  const long long took = ms_since(t0);
  EXPECT_TRUE(mine);
  EXPECT_GE(took, 500);
  EXPECT_LT(took, 1200);
  EXPECT_FALSE(p.owns());
  p.release();  // its permit was taken over: the new holder keeps it
  EXPECT_TRUE(mine->owns());
  EXPECT_EQ(this->held(), 1);
}

TYPED_TEST(SemaphoreTest, TryAcquireForNeverWaitsPastItsDeadline) {
  typename TestFixture::Semaphore holder(this->other, this->name, 1);
  typename TestFixture::Semaphore waiter(this->client, this->name, 1);
  auto p = holder.acquire();
  for (auto timeout : {0ms, 50ms, 300ms}) {
    const auto t0 = Clock::now();
    EXPECT_FALSE(waiter.try_acquire_for(timeout));
    const long long took = ms_since(t0);
    EXPECT_GE(took, timeout.count());
    EXPECT_LT(took, timeout.count() + 150) << "timeout " << timeout.count();
  }
  const auto t0 = Clock::now();
  EXPECT_FALSE(waiter.try_acquire_until(std::chrono::system_clock::now() + 200ms));
  EXPECT_GE(ms_since(t0), 190);
  EXPECT_LT(ms_since(t0), 350);
  EXPECT_EQ(waiting_count(this->client, this->keys.waiting), 0);
}

TYPED_TEST(SemaphoreTest, TryAcquireForGetsAPermitReleasedBeforeItsDeadline) {
  typename TestFixture::Semaphore holder(this->other, this->name, 1);
  typename TestFixture::Semaphore waiter(this->client, this->name, 1, slow_fallback());
  std::atomic<bool> held{false};
  std::atomic<bool> go{false};
  std::thread t([&] {
    auto p = holder.acquire();
    held = true;
    wait_until([&] { return go.load(); }, 5s);
  });
  ASSERT_TRUE(wait_until([&] { return held.load(); }, 5s));
  std::thread release([&] {
    wait_until([&] { return this->blocked() >= 1; }, 5s);
    go = true;
  });
  const auto t0 = Clock::now();
  auto mine = waiter.try_acquire_for(5s);
  EXPECT_TRUE(mine);
  EXPECT_LT(ms_since(t0), 2000);
  t.join();
  release.join();
}

TYPED_TEST(SemaphoreTest, AnUncontendedAcquireAndReleaseCostTheServerTenCalls) {
  typename TestFixture::Semaphore sem(this->client, this->name, 3);
  sem.acquire().release();  // the scripts are loaded
  constexpr int kPairs = 100;
  const long long before = this->server_commands();
  for (int i = 0; i < kPairs; ++i) sem.acquire().release();
  const long long calls = this->server_commands() - before - 1;
  this->RecordProperty("server_calls_per_pair", std::to_string(static_cast<double>(calls) / kPairs));
  // EVALSHA + ZSCORE, TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, PTTL; EVALSHA +
  // ZREM, GET. Sentinels and replicas add a few.
  EXPECT_GE(calls, 10 * kPairs);
  EXPECT_LE(calls, 10 * kPairs + 10) << calls << " calls for " << kPairs << " pairs";
}

TYPED_TEST(SemaphoreTest, PermitsMoveAndAreReleasedByTheirLastOwner) {
  typename TestFixture::Semaphore sem(this->client, this->name, 1);
  SemaphorePermit a = sem.acquire();
  const std::string id = a.id();
  SemaphorePermit b(std::move(a));
  EXPECT_FALSE(a.owns());
  EXPECT_THROW(a.id(), redkit::Error);
  a.release();  // moved from: no-op
  EXPECT_TRUE(b.owns());
  EXPECT_EQ(b.id(), id);
  EXPECT_EQ(this->held(), 1);
  std::thread other([p = std::move(b)]() mutable { p.release(); });  // released by another thread
  other.join();
  EXPECT_EQ(this->held(), 0);
  SemaphorePermit c = sem.acquire();
  typename TestFixture::Semaphore two(this->client, unique_prefix() + "two", 1);
  SemaphorePermit d = two.acquire();
  d = std::move(c);  // releases two's permit, takes over this one
  EXPECT_TRUE(two.try_acquire());
  EXPECT_TRUE(d.owns());
  EXPECT_FALSE(sem.try_acquire());
  {
    SemaphorePermit scoped = std::move(d);
  }  // the destructor releases
  EXPECT_TRUE(sem.try_acquire());
}

// ---- a single server --------------------------------------------------------

TEST(Semaphore, KeysShareTheSlotOfTheNameAndAreApartFromALocksSideKeys) {
  auto plain = redkit::detail::semaphore_keys("jobs");
  EXPECT_EQ(plain.permits, "{jobs}:sem:permits");
  EXPECT_EQ(plain.waiting, "{jobs}:sem:waiters");
  EXPECT_EQ(plain.wake, "{jobs}:sem:wake");
  EXPECT_NE(plain.waiting, redkit::detail::lock_keys("jobs").waiting);
  auto tagged = redkit::detail::semaphore_keys("{user:7}.uploads");
  EXPECT_EQ(tagged.permits, "{user:7}.uploads:sem:permits");
  EXPECT_THROW(redkit::detail::semaphore_keys(""), redkit::ConfigError);
  EXPECT_THROW(redkit::detail::semaphore_keys("a}b"), redkit::ConfigError);
}

TEST(Semaphore, BadCountsAndOptionsOutOfRangeAreRejectedAtConstruction) {
  redkit::Redis client(redkit::test::shared_server().uri());
  const std::string name = unique_prefix() + "sem";
  using std::chrono::milliseconds;
  auto rejected = [&](std::int64_t permits, SemaphoreOptions o) {
    EXPECT_THROW(RedisSemaphore<>(client, name, permits, o), redkit::ConfigError);
  };
  auto with = [](auto change) {
    SemaphoreOptions o;
    change(o);
    return o;
  };
  rejected(0, {});
  rejected(-1, {});
  rejected(std::numeric_limits<std::int64_t>::max(), {});
  rejected(1000000001, {});
  rejected(1, with([](SemaphoreOptions& o) { o.ttl = 0ms; }));
  rejected(1, with([](SemaphoreOptions& o) { o.ttl = milliseconds::max(); }));
  rejected(1, with([](SemaphoreOptions& o) { o.ttl = milliseconds::min(); }));
  rejected(1, with([](SemaphoreOptions& o) { o.retry_min = 0ms; }));
  rejected(1, with([](SemaphoreOptions& o) { o.retry_max = 1ms; }));  // below retry_min
  rejected(1, with([](SemaphoreOptions& o) { o.retry_max = milliseconds::max(); }));
  EXPECT_THROW(RedisSemaphore<>(client, "", 1), redkit::ConfigError);
  EXPECT_THROW(RedisSemaphore<>(client, "a}b", 1), redkit::ConfigError);
  try {
    RedisSemaphore<>(client, name, 0);
  } catch (const redkit::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("permits"), std::string::npos) << e.what();
  }
  // Nothing was stored by the rejected ones.
  EXPECT_EQ(client.command(Command{"EXISTS"}.key(redkit::detail::semaphore_keys(name).permits)).integer(), 0);
  // The edges are accepted, and work.
  SemaphoreOptions edge;
  edge.ttl = redkit::detail::kMaxLockTtl;
  edge.retry_min = 1ms;
  edge.retry_max = std::chrono::hours(1);
  RedisSemaphore<> big(client, name, redkit::detail::kMaxPermits, edge);
  auto p = big.try_acquire();
  ASSERT_TRUE(p);
  EXPECT_EQ(big.available(), redkit::detail::kMaxPermits - 1);
}

TEST(Semaphore, AKeyOfTheWrongTypeIsAReplyErrorNotACrash) {
  redkit::Redis client(redkit::test::shared_server().uri());
  const std::string name = unique_prefix() + "sem";
  RedisSemaphore<> sem(client, name, 2);
  client.command(Command{"SET"}.key(redkit::detail::semaphore_keys(name).permits).arg("not a set"));
  EXPECT_THROW(sem.try_acquire(), redkit::ReplyError);
  EXPECT_THROW(sem.available(), redkit::ReplyError);
}

TEST(Semaphore, AMovedFromSemaphoreThrowsErrorWhenUsedAndNeverCrashes) {
  redkit::Redis client(redkit::test::shared_server().uri());
  RedisSemaphore<> a(client, unique_prefix() + "sem", 2);
  auto held = a.acquire();
  RedisSemaphore<> b(std::move(a));
  EXPECT_THROW(a.acquire(), redkit::Error);
  EXPECT_THROW(a.try_acquire(), redkit::Error);
  EXPECT_THROW(a.try_acquire_for(10ms), redkit::Error);
  EXPECT_THROW(a.try_acquire_until(Clock::now() + 10ms), redkit::Error);
  EXPECT_THROW(a.available(), redkit::Error);
  EXPECT_THROW(a.name(), redkit::Error);
  EXPECT_THROW(a.permits(), redkit::Error);
  try {
    a.try_acquire();
  } catch (const redkit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("moved from"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(held.owns());  // the permit does not depend on the object
  EXPECT_EQ(b.available(), 1);
  a = RedisSemaphore<>(client, unique_prefix() + "again", 1);  // assignable again
  EXPECT_TRUE(a.try_acquire());
  SemaphorePermit empty;
  EXPECT_FALSE(empty.owns());
  EXPECT_THROW(empty.id(), redkit::Error);
  empty.release();
}

TEST(Semaphore, ReleaseNeverThrowsWhenTheServerIsDown) {
  RedisServer server;
  redkit::Options o = redkit::Options::from_uri(server.uri());
  o.command_timeout = 300ms;
  o.connect_timeout = 300ms;
  redkit::Redis client(o);
  RedisSemaphore<> sem(client, unique_prefix() + "sem", 1, no_renew(5s));
  auto p = sem.acquire();
  server.kill();
  const auto t0 = Clock::now();
  p.release();  // noexcept: it cannot throw; what can go wrong is a hang or a permit still owned
  EXPECT_FALSE(p.owns());
  EXPECT_LT(ms_since(t0), 3000);
  EXPECT_THROW(sem.try_acquire(), redkit::IoError);  // unreachable is not "no permit"
}

TEST(Semaphore, FourProcessesTimesFourThreadsWithThreePermitsNeverHaveMoreThanThreeInside) {
  RedisServer& server = redkit::test::shared_server();
  const std::string name = unique_prefix() + "sem";
  const std::string inside = unique_prefix() + "inside";
  const std::string peak = unique_prefix() + "peak";
  const std::string done = unique_prefix() + "done";
  constexpr int kProcesses = 4;
  constexpr int kThreads = 4;
  constexpr int kIterations = 20;
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("semaphore_worker"),
        std::vector<std::string>{"count", server.uri(), name, "3", inside, peak, done, std::to_string(kThreads),
                                 std::to_string(kIterations)}));
  }
  for (auto& child : children) {
    EXPECT_EQ(child->wait(180s), 0) << child->output();
    EXPECT_NE(child->output().find("violations=0 failures=0"), std::string::npos) << child->output();
  }
  EXPECT_EQ(server.cli("GET", done), std::to_string(kProcesses * kThreads * kIterations));
  EXPECT_EQ(server.cli("GET", inside), "0");
  const int seen = std::stoi(server.cli("GET", peak));
  RecordProperty("peak_inside", std::to_string(seen));
  EXPECT_LE(seen, 3);
  EXPECT_GE(seen, 2);  // the permits were really shared out
  EXPECT_EQ(server.cli("ZCOUNT", redkit::detail::semaphore_keys(name).permits, "(1000000000", "+inf"), "0");
}

TEST(Semaphore, AHolderKilledWithSigkillGivesItsPermitBackAfterItsTtl) {
  RedisServer& server = redkit::test::shared_server();
  redkit::Redis client(server.uri());
  const std::string name = unique_prefix() + "sem";
  const auto keys = redkit::detail::semaphore_keys(name);
  ChildProcess holder(redkit::test::helper_path("semaphore_worker"), {"hold", server.uri(), name, "1", "800"});
  ASSERT_TRUE(wait_until([&] { return server.cli("ZCOUNT", keys.permits, "(1000000000", "+inf") == "1"; }, 10s));
  holder.kill(SIGKILL);
  holder.wait(5s);
  RedisSemaphore<> waiter(client, name, 1, slow_fallback());
  EXPECT_FALSE(waiter.try_acquire());  // the dead holder's permit still counts
  const auto t0 = Clock::now();
  auto p = waiter.try_acquire_for(5s);
  EXPECT_TRUE(p);
  EXPECT_LT(ms_since(t0), 1300);  // its TTL, not the 10 s fallback
  EXPECT_EQ(server.cli("ZCOUNT", keys.permits, "(1000000000", "+inf"), "1");
}
