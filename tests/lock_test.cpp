// RedisLock against real servers: exclusion across threads and processes,
// token-checked release and extend, fencing, renewal and loss, waiting by
// wake-up, the standard lock types, redis-py interop, WAIT for replicas.
#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <redkit/lock.hpp>

#include "support/clients.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::LockOptions;
using redkit::RedisLock;
using redkit::test::ChildProcess;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;
using redkit::test::unique_prefix;
using redkit::test::wait_until;
using Clock = std::chrono::steady_clock;

namespace {

long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// One numeric field of INFO section, from the node that owns route.
template <class Client>
long long info_field(Client& client, const std::string& section, const std::string& field,
                     const std::string& route) {
  redkit::Reply r = client.command(Command{"INFO"}.arg(section).route(route));
  const std::string text(r.string());
  const auto at = text.find(field + ":");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + field.size() + 1));
}

// Commands clients sent to the node that owns route and that a lock waiter
// sends (the scripts, BLPOP). total_commands_processed would also count the
// commands each script runs inside the server.
template <class Client>
long long lock_commands(Client& client, const std::string& route) {
  redkit::Reply r = client.command(Command{"INFO"}.arg("commandstats").route(route));
  const std::string text(r.string());
  long long sum = 0;
  for (const char* cmd : {"evalsha", "eval", "blpop"}) {
    const std::string field = std::string("cmdstat_") + cmd + ":calls=";
    const auto at = text.find(field);
    if (at != std::string::npos) sum += std::stoll(text.substr(at + field.size()));
  }
  return sum;
}

template <class Client>
std::string get(Client& client, const std::string& key) {
  redkit::Reply r = client.command(Command{"GET"}.key(key));
  return r.is_nil() ? "(nil)" : std::string(r.string());
}

template <class Client>
long long pttl(Client& client, const std::string& key) {
  return client.command(Command{"PTTL"}.key(key)).integer();
}

LockOptions no_renew(std::chrono::milliseconds ttl) {
  LockOptions o;
  o.ttl = ttl;
  o.auto_renew = false;
  return o;
}

// Waiters that only a wake-up (or the holder's expiry) can get in quickly.
LockOptions slow_fallback() {
  LockOptions o;
  o.retry_min = 10s;
  o.retry_max = 10s;
  return o;
}

bool python_has_redis() {
  if (::access("/usr/bin/python3", X_OK) != 0) return false;
  ChildProcess py("/usr/bin/python3", {"-c", "import redis"});
  return py.wait(10s) == 0;
}

}  // namespace

// ---- over every client kind -------------------------------------------------

template <class Kind>
class LockTest : public ::testing::Test {
 protected:
  using Client = typename Kind::Client;
  using Lock = RedisLock<Client>;
  Client client = Kind::make();
  const std::string name = unique_prefix() + "lock";

  // Blocked waiters on the node that owns the lock name.
  long long blocked() { return info_field(client, "clients", "blocked_clients", name); }
};
TYPED_TEST_SUITE(LockTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(LockTest, AcquireStoresTokenAtTheNamedKeyAndUnlockDeletesIt) {
  typename TestFixture::Lock lock(this->client, this->name, no_renew(5s));
  EXPECT_FALSE(lock.owns_lock());
  ASSERT_TRUE(lock.try_lock());
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(lock.token().size(), 32u);
  EXPECT_EQ(get(this->client, this->name), lock.token());
  const long long left = pttl(this->client, this->name);
  EXPECT_GT(left, 4000);
  EXPECT_LE(left, 5000);
  lock.unlock();
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(get(this->client, this->name), "(nil)");
  lock.unlock();  // not held: no-op
}

TYPED_TEST(LockTest, TryLockFailsWhileAnotherHoldsAndSucceedsAfterRelease) {
  typename TestFixture::Lock a(this->client, this->name);
  typename TestFixture::Lock b(this->client, this->name);
  ASSERT_TRUE(a.try_lock());
  EXPECT_FALSE(b.try_lock());
  EXPECT_FALSE(b.owns_lock());
  a.unlock();
  EXPECT_TRUE(b.try_lock());
  EXPECT_NE(a.token(), b.token());
}

TYPED_TEST(LockTest, EachAcquisitionDrawsAFreshToken) {
  typename TestFixture::Lock lock(this->client, this->name);
  std::set<std::string> tokens;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(lock.try_lock());
    EXPECT_EQ(lock.token().find_first_not_of("0123456789abcdef"), std::string::npos);
    tokens.insert(lock.token());
    lock.unlock();
  }
  EXPECT_EQ(tokens.size(), 20u);
}

TYPED_TEST(LockTest, ThreadsReadModifyWriteExactlyWithNeverTwoHolders) {
  const std::string counter = unique_prefix() + "counter";
  const std::string holders = unique_prefix() + "holders";
  constexpr int kThreads = 4;
  constexpr int kIterations = 25;
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      typename TestFixture::Lock lock(this->client, this->name);
      for (int i = 0; i < kIterations; ++i) {
        std::lock_guard<typename TestFixture::Lock> guard(lock);
        if (this->client.command(Command{"INCR"}.key(holders)).integer() > 1) ++violations;
        const std::string v = get(this->client, counter);
        const long long n = v == "(nil)" ? 0 : std::stoll(v);
        this->client.command(Command{"SET"}.key(counter).arg(n + 1));
        this->client.command(Command{"DECR"}.key(holders));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(get(this->client, counter), std::to_string(kThreads * kIterations));
}

TYPED_TEST(LockTest, UnlockAfterExpiryDoesNotDeleteOtherHoldersKey) {
  typename TestFixture::Lock first(this->client, this->name, no_renew(150ms));
  typename TestFixture::Lock second(this->client, this->name);
  ASSERT_TRUE(first.try_lock());
  ASSERT_TRUE(wait_until([&] { return second.try_lock(); }, 3s));
  EXPECT_FALSE(first.owns_lock());
  first.unlock();
  EXPECT_EQ(get(this->client, this->name), second.token());
  EXPECT_TRUE(second.owns_lock());
}

TYPED_TEST(LockTest, ExtendAfterLossReturnsFalse) {
  typename TestFixture::Lock first(this->client, this->name, no_renew(150ms));
  typename TestFixture::Lock second(this->client, this->name);
  ASSERT_TRUE(first.try_lock());
  ASSERT_TRUE(wait_until([&] { return second.try_lock(); }, 3s));
  EXPECT_FALSE(first.extend(10s));
  EXPECT_FALSE(first.owns_lock());
  EXPECT_EQ(get(this->client, this->name), second.token());
  EXPECT_LE(pttl(this->client, this->name), 30000);
}

TYPED_TEST(LockTest, ExtendWhileHeldSetsTheNewTtl) {
  typename TestFixture::Lock lock(this->client, this->name, no_renew(1s));
  ASSERT_TRUE(lock.try_lock());
  EXPECT_TRUE(lock.extend(60s));
  EXPECT_GT(pttl(this->client, this->name), 50000);
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_THROW(lock.extend(0ms), redkit::ConfigError);
}

TYPED_TEST(LockTest, FencingTokensStrictlyIncreaseAcrossHolders) {
  typename TestFixture::Lock a(this->client, this->name);
  typename TestFixture::Lock b(this->client, this->name);
  std::int64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    auto& lock = i % 2 ? a : b;
    ASSERT_TRUE(lock.try_lock());
    EXPECT_GT(lock.fencing_token(), last);
    last = lock.fencing_token();
    lock.unlock();
  }
}

TYPED_TEST(LockTest, FencingTokenStillIncreasesAfterTheCounterIsLost) {
  typename TestFixture::Lock lock(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  const std::int64_t before = lock.fencing_token();
  lock.unlock();
  // What a restart without persistence, FLUSHALL or eviction does to it.
  this->client.command(Command{"DEL"}.key("{" + this->name + "}:fence"));
  ASSERT_TRUE(lock.try_lock());
  EXPECT_GT(lock.fencing_token(), before);
}

TYPED_TEST(LockTest, AcquireScriptIsIdempotentForItsOwnToken) {
  // The retry after an ambiguous timeout sends the same token again.
  const auto keys = redkit::detail::lock_keys(this->name);
  auto attempt = [&](const std::string& token, const std::string& ttl) {
    return this->client
        .eval(redkit::detail::lock_acquire_script(),
              {std::string_view(keys.key), std::string_view(keys.fence), std::string_view(keys.waiters)},
              {std::string_view(token), std::string_view(ttl), std::string_view("0")})
        .integer();
  };
  const long long fence = attempt("tok-a", "5000");
  ASSERT_GE(fence, 1);
  EXPECT_EQ(attempt("tok-a", "9000"), fence);  // same fence, TTL renewed
  EXPECT_GT(pttl(this->client, this->name), 8000);
  const long long busy = attempt("tok-b", "5000");
  EXPECT_LT(busy, -8000);  // -2 - the holder's PTTL, for the waiter
  this->client.command(Command{"DEL"}.key(this->name));
}

TYPED_TEST(LockTest, OnlyAReleaseWithAWaiterLeavesAWakeUp) {
  const auto keys = redkit::detail::lock_keys(this->name);
  typename TestFixture::Lock a(this->client, this->name);
  typename TestFixture::Lock b(this->client, this->name);
  ASSERT_TRUE(a.try_lock());
  EXPECT_FALSE(b.try_lock());  // no wait: no waiters marker
  a.unlock();
  EXPECT_EQ(get(this->client, keys.waiters), "(nil)");
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(keys.wake)).integer(), 0);

  ASSERT_TRUE(a.try_lock());
  EXPECT_FALSE(b.try_lock_for(1ms));  // a waiter: leaves the marker
  EXPECT_GT(pttl(this->client, keys.waiters), 1000);
  a.unlock();
  EXPECT_EQ(this->client.command(Command{"LLEN"}.key(keys.wake)).integer(), 1);
  EXPECT_LE(pttl(this->client, keys.wake), 2000);
}

TYPED_TEST(LockTest, AutoRenewKeepsA300msLockForFourTimesItsTtl) {
  std::atomic<int> lost{0};
  LockOptions o;
  o.ttl = 300ms;
  o.on_lost = [&](const std::string&) { ++lost; };
  typename TestFixture::Lock lock(this->client, this->name, o);
  typename TestFixture::Lock other(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  std::this_thread::sleep_for(1200ms);  // four TTLs pass
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(get(this->client, this->name), lock.token());
  EXPECT_FALSE(other.try_lock());
  EXPECT_EQ(lost.load(), 0);
  lock.unlock();
  EXPECT_TRUE(other.try_lock());
}

TYPED_TEST(LockTest, RenewalFollowsExtendInBothDirections) {
  // Shorter: 30 s renewed every 10 s would let a 300 ms key expire.
  typename TestFixture::Lock lock(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  ASSERT_TRUE(lock.extend(300ms));
  std::this_thread::sleep_for(1200ms);  // four of the new TTLs pass
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(get(this->client, this->name), lock.token());
  lock.unlock();

  // Longer, then a new hold with the configured 300 ms: renewed in time.
  LockOptions o;
  o.ttl = 300ms;
  typename TestFixture::Lock short_lived(this->client, this->name, o);
  ASSERT_TRUE(short_lived.try_lock());
  ASSERT_TRUE(short_lived.extend(60s));
  std::this_thread::sleep_for(150ms);  // a renewal runs with the long TTL
  short_lived.unlock();
  ASSERT_TRUE(short_lived.try_lock());
  std::this_thread::sleep_for(1200ms);
  EXPECT_TRUE(short_lived.owns_lock());
  EXPECT_EQ(get(this->client, this->name), short_lived.token());
}

TYPED_TEST(LockTest, OnLostFiresAfterAnExternalDel) {
  std::mutex m;
  std::condition_variable cv;
  std::string lost_name;
  LockOptions o;
  o.ttl = 300ms;
  o.on_lost = [&](const std::string& n) {
    std::lock_guard<std::mutex> lk(m);
    lost_name = n;
    cv.notify_all();
  };
  typename TestFixture::Lock lock(this->client, this->name, o);
  ASSERT_TRUE(lock.try_lock());
  this->client.command(Command{"DEL"}.key(this->name));
  std::unique_lock<std::mutex> lk(m);
  ASSERT_TRUE(cv.wait_for(lk, 3s, [&] { return !lost_name.empty(); }));
  EXPECT_EQ(lost_name, this->name);
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_FALSE(lock.extend(1s));  // known lost: no round trip
}

TYPED_TEST(LockTest, OwnsLockTurnsFalseWhenTheTtlPassesWithoutRenewal) {
  typename TestFixture::Lock lock(this->client, this->name, no_renew(200ms));
  ASSERT_TRUE(lock.try_lock());
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_TRUE(wait_until([&] { return !lock.owns_lock(); }, 2s));
  // It was not ours past our deadline, and the server agrees soon after.
  EXPECT_TRUE(wait_until([&] { return get(this->client, this->name) == "(nil)"; }, 1s));
}

TYPED_TEST(LockTest, MaxHoldBoundsRenewalAndReportsTheLoss) {
  std::atomic<int> lost{0};
  LockOptions o;
  o.ttl = 200ms;
  o.max_hold = 500ms;
  o.on_lost = [&](const std::string&) { ++lost; };
  typename TestFixture::Lock lock(this->client, this->name, o);
  const auto t0 = Clock::now();
  ASSERT_TRUE(lock.try_lock());
  ASSERT_TRUE(wait_until([&] { return lost.load() > 0; }, 3s));
  const long long held = ms_since(t0);
  EXPECT_GE(held, 450);
  EXPECT_LT(held, 1000);
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_TRUE(wait_until([&] { return get(this->client, this->name) == "(nil)"; }, 1s));
  EXPECT_EQ(lost.load(), 1);
}

TYPED_TEST(LockTest, TryLockForReturnsNearItsDeadline) {
  typename TestFixture::Lock holder(this->client, this->name);
  typename TestFixture::Lock waiter(this->client, this->name);
  ASSERT_TRUE(holder.try_lock());
  for (auto timeout : {0ms, 50ms, 300ms}) {
    const auto t0 = Clock::now();
    EXPECT_FALSE(waiter.try_lock_for(timeout));
    const long long took = ms_since(t0);
    EXPECT_GE(took, timeout.count());
    EXPECT_LT(took, timeout.count() + 100) << "timeout " << timeout.count() << " ms";
  }
  const auto t0 = Clock::now();
  EXPECT_FALSE(waiter.try_lock_until(std::chrono::system_clock::now() + 200ms));
  EXPECT_LT(ms_since(t0), 200 + 100);
  EXPECT_FALSE(waiter.owns_lock());
}

TYPED_TEST(LockTest, TryLockForAcquiresWhenReleasedBeforeItsDeadline) {
  typename TestFixture::Lock holder(this->client, this->name);
  typename TestFixture::Lock waiter(this->client, this->name, slow_fallback());
  ASSERT_TRUE(holder.try_lock());
  std::thread release([&] {
    wait_until([&] { return this->blocked() >= 1; }, 5s);
    holder.unlock();
  });
  const auto t0 = Clock::now();
  EXPECT_TRUE(waiter.try_lock_for(5s));
  EXPECT_LT(ms_since(t0), 2000);
  release.join();
  EXPECT_TRUE(waiter.owns_lock());
}

TYPED_TEST(LockTest, ReleaseWakesABlockedWaiterQuickly) {
  typename TestFixture::Lock holder(this->client, this->name);
  typename TestFixture::Lock waiter(this->client, this->name, slow_fallback());
  ASSERT_TRUE(holder.try_lock());
  std::atomic<long long> acquired_at{0};
  std::thread t([&] {
    waiter.lock();
    acquired_at = Clock::now().time_since_epoch().count();
  });
  ASSERT_TRUE(wait_until([&] { return this->blocked() >= 1; }, 5s));
  const auto released_at = Clock::now();
  holder.unlock();
  t.join();
  const auto latency = Clock::time_point(Clock::duration(acquired_at.load())) - released_at;
  // The fallback would take 10 s: only the wake-up explains this.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count(), 500);
  EXPECT_TRUE(waiter.owns_lock());
}

TYPED_TEST(LockTest, OneReleaseWakesOneWaiter) {
  typename TestFixture::Lock holder(this->client, this->name);
  ASSERT_TRUE(holder.try_lock());
  constexpr int kWaiters = 3;
  std::atomic<int> acquired{0};
  std::atomic<bool> let_go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&] {
      typename TestFixture::Lock lock(this->client, this->name, slow_fallback());
      lock.lock();
      ++acquired;
      wait_until([&] { return let_go.load(); }, 10s);
      lock.unlock();
    });
  }
  ASSERT_TRUE(wait_until([&] { return this->blocked() == kWaiters; }, 5s));
  const auto t0 = Clock::now();
  holder.unlock();
  ASSERT_TRUE(wait_until([&] { return acquired.load() == 1; }, 2s));
  ASSERT_TRUE(wait_until([&] { return this->blocked() == kWaiters - 1; }, 2s));
  std::this_thread::sleep_for(200ms);  // time for a herd to show itself
  EXPECT_EQ(acquired.load(), 1);
  EXPECT_EQ(this->blocked(), kWaiters - 1);
  // Each release wakes the next: all through well inside one fallback wait.
  let_go = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(acquired.load(), kWaiters);
  EXPECT_LT(ms_since(t0), 5000);
}

TYPED_TEST(LockTest, WaitersCostTheServerAlmostNothing) {
  typename TestFixture::Lock holder(this->client, this->name);
  ASSERT_TRUE(holder.try_lock());
  constexpr int kWaiters = 8;
  const long long before = lock_commands(this->client, this->name);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&] {
      typename TestFixture::Lock lock(this->client, this->name);
      lock.lock();
      lock.unlock();
    });
  }
  std::this_thread::sleep_for(1s);  // the hold: let time pass
  const long long commands = lock_commands(this->client, this->name) - before;
  holder.unlock();
  for (auto& t : threads) t.join();
  this->RecordProperty("commands_during_1s_hold", std::to_string(commands));
  // A waiter polling every 100 ms would send 80 in this second alone.
  EXPECT_LT(commands, 80) << commands << " commands from " << kWaiters << " waiters in 1 s";
}

TYPED_TEST(LockTest, WorksWithLockGuardUniqueLockAndScopedLock) {
  using Lock = typename TestFixture::Lock;
  Lock a(this->client, this->name);
  Lock probe(this->client, this->name);
  {
    std::lock_guard<Lock> guard(a);
    EXPECT_TRUE(a.owns_lock());
    EXPECT_FALSE(probe.try_lock());
  }
  EXPECT_FALSE(a.owns_lock());
  {
    std::unique_lock<Lock> u(a, 500ms);
    ASSERT_TRUE(u.owns_lock());
    EXPECT_FALSE(probe.try_lock());
    u.unlock();
    EXPECT_FALSE(a.owns_lock());
    EXPECT_TRUE(u.try_lock());
  }
  {
    std::unique_lock<Lock> u(a, std::try_to_lock);
    EXPECT_TRUE(u.owns_lock());
  }
  Lock b(this->client, unique_prefix() + "other");
  {
    std::scoped_lock both(a, b);
    EXPECT_TRUE(a.owns_lock());
    EXPECT_TRUE(b.owns_lock());
  }
  EXPECT_FALSE(a.owns_lock());
  EXPECT_FALSE(b.owns_lock());
  EXPECT_TRUE(probe.try_lock());
}

TYPED_TEST(LockTest, MoveTransfersTheHoldAndItsRenewal) {
  using Lock = typename TestFixture::Lock;
  LockOptions o;
  o.ttl = 300ms;
  Lock a(this->client, this->name, o);
  ASSERT_TRUE(a.try_lock());
  const std::string token = a.token();
  Lock b(std::move(a));
  EXPECT_TRUE(b.owns_lock());
  EXPECT_EQ(b.token(), token);
  std::this_thread::sleep_for(700ms);  // renewal must have moved along
  EXPECT_TRUE(b.owns_lock());
  EXPECT_EQ(get(this->client, this->name), token);

  const std::string other_name = unique_prefix() + "other";
  Lock c(this->client, other_name);
  ASSERT_TRUE(c.try_lock());
  c = std::move(b);  // releases other_name, takes over name
  EXPECT_EQ(get(this->client, other_name), "(nil)");
  EXPECT_TRUE(c.owns_lock());
  EXPECT_EQ(c.name(), this->name);
  c.unlock();
  EXPECT_EQ(get(this->client, this->name), "(nil)");
}

TYPED_TEST(LockTest, LockingALockThisObjectOwnsThrows) {
  typename TestFixture::Lock lock(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  EXPECT_THROW(lock.try_lock(), redkit::Error);
  EXPECT_TRUE(lock.owns_lock());
}

TYPED_TEST(LockTest, AHolderThatCrashedIsReplacedWhenItsTtlRunsOut) {
  // Only the holder's PTTL can get the waiter in quickly: no release comes
  // and the fallback waits 10 s.
  typename TestFixture::Lock waiter(this->client, this->name, slow_fallback());
  typename TestFixture::Lock crashed(this->client, this->name, no_renew(600ms));
  ASSERT_TRUE(crashed.try_lock());
  const auto t0 = Clock::now();
  EXPECT_TRUE(waiter.try_lock_for(5s));
  const long long took = ms_since(t0);
  EXPECT_GE(took, 500);
  EXPECT_LT(took, 1200);
}

// ---- a single server --------------------------------------------------------

TEST(Lock, SideKeysShareTheSlotOfTheName) {
  auto plain = redkit::detail::lock_keys("orders:42");
  EXPECT_EQ(plain.key, "orders:42");
  EXPECT_EQ(plain.fence, "{orders:42}:fence");
  EXPECT_EQ(plain.wake, "{orders:42}:wake");
  EXPECT_EQ(plain.waiters, "{orders:42}:waiters");
  auto tagged = redkit::detail::lock_keys("{user:7}.lock");
  EXPECT_EQ(tagged.key, "{user:7}.lock");
  EXPECT_EQ(tagged.fence, "{user:7}.lock:fence");
  EXPECT_EQ(tagged.wake, "{user:7}.lock:wake");
  EXPECT_EQ(tagged.waiters, "{user:7}.lock:waiters");
  auto empty_tag = redkit::detail::lock_keys("a{b");
  EXPECT_EQ(empty_tag.fence, "{a{b}:fence");  // hashes "a{b", like the name
  EXPECT_THROW(redkit::detail::lock_keys(""), redkit::ConfigError);
  EXPECT_THROW(redkit::detail::lock_keys("a}b"), redkit::ConfigError);
  EXPECT_THROW(redkit::detail::lock_keys("x{}y"), redkit::ConfigError);
}

TEST(Lock, BadOptionsAreRejected) {
  redkit::Redis client(redkit::test::shared_server().uri());
  auto with = [](auto change) {
    LockOptions o;
    change(o);
    return o;
  };
  EXPECT_THROW(RedisLock<>(client, "x", with([](LockOptions& o) { o.ttl = 0ms; })), redkit::ConfigError);
  EXPECT_THROW(RedisLock<>(client, "x", with([](LockOptions& o) { o.retry_min = 0ms; })), redkit::ConfigError);
  EXPECT_THROW(RedisLock<>(client, "x", with([](LockOptions& o) { o.retry_max = 1ms; })), redkit::ConfigError);
  EXPECT_THROW(RedisLock<>(client, "x", with([](LockOptions& o) { o.max_hold = 0ms; })), redkit::ConfigError);
  EXPECT_THROW(RedisLock<>(client, "x", with([](LockOptions& o) {
                 o.wait_replicas = 1;
                 o.wait_timeout = 0ms;
               })),
               redkit::ConfigError);
}

TEST(Lock, FourProcessesTimesTwoThreadsCountExactlyWithNeverTwoHolders) {
  RedisServer& server = redkit::test::shared_server();
  const std::string name = unique_prefix() + "lock";
  const std::string counter = unique_prefix() + "counter";
  const std::string holders = unique_prefix() + "holders";
  constexpr int kProcesses = 4;
  constexpr int kThreads = 2;
  constexpr int kIterations = 25;
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("lock_worker"), std::vector<std::string>{"count", server.uri(), name, counter, holders,
                                                        std::to_string(kThreads),
                                                        std::to_string(kIterations)}));
  }
  for (auto& child : children) {
    EXPECT_EQ(child->wait(120s), 0) << child->output();
    EXPECT_NE(child->output().find("violations=0 fence_regressions=0 failures=0"), std::string::npos)
        << child->output();
  }
  EXPECT_EQ(server.cli("GET", counter), std::to_string(kProcesses * kThreads * kIterations));
  EXPECT_EQ(server.cli("GET", holders), "0");
}

TEST(Lock, AHolderProcessKilledIsReplacedWhenItsTtlRunsOut) {
  RedisServer& server = redkit::test::shared_server();
  redkit::Redis client(server.uri());
  const std::string name = unique_prefix() + "lock";
  ChildProcess holder(redkit::test::helper_path("lock_worker"), {"hold", server.uri(), name, "800"});
  ASSERT_TRUE(wait_until([&] { return server.cli("EXISTS", name) == "1"; }, 10s));
  holder.kill();
  holder.wait(5s);
  RedisLock<> waiter(client, name, slow_fallback());
  const auto t0 = Clock::now();
  EXPECT_TRUE(waiter.try_lock_for(5s));
  EXPECT_LT(ms_since(t0), 1300);
}

TEST(Lock, ExcludesAndIsExcludedByRedisPyLock) {
  if (!python_has_redis()) GTEST_SKIP() << "/usr/bin/python3 has no redis module (python3-redis)";
  RedisServer& server = redkit::test::shared_server();
  redkit::Redis client(server.uri());
  const std::string name = unique_prefix() + "lock";
  const std::string port = std::to_string(server.port());
  // try: one non-blocking acquire; hold: acquire, flag it, release when told.
  const std::string script = R"py(
import sys, time, redis
port, key, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
r = redis.Redis(host='127.0.0.1', port=port)
lock = r.lock(key, timeout=10)
if mode == 'try':
    got = lock.acquire(blocking=False)
    print('acquired' if got else 'busy')
    if got:
        lock.release()
else:
    if not lock.acquire(blocking=True, blocking_timeout=5):
        print('timeout')
        sys.exit(1)
    r.set(key + ':py-held', '1')
    end = time.time() + 10
    while not r.exists(key + ':py-release') and time.time() < end:
        time.sleep(0.005)
    lock.release()
    print('released')
)py";

  // redkit holds: redis-py is excluded.
  RedisLock<> lock(client, name);
  ASSERT_TRUE(lock.try_lock());
  {
    ChildProcess py("/usr/bin/python3", {"-c", script, port, name, "try"});
    ASSERT_EQ(py.wait(20s), 0);
    EXPECT_EQ(py.output(), "busy\n");
  }
  lock.unlock();
  {
    ChildProcess py("/usr/bin/python3", {"-c", script, port, name, "try"});
    ASSERT_EQ(py.wait(20s), 0);
    EXPECT_EQ(py.output(), "acquired\n");
  }

  // redis-py holds: redkit is excluded, and gets in after redis-py's release
  // (which sends no wake-up: the fallback wait covers it).
  ChildProcess py("/usr/bin/python3", {"-c", script, port, name, "hold"});
  ASSERT_TRUE(wait_until([&] { return server.cli("EXISTS", name + ":py-held") == "1"; }, 20s));
  EXPECT_FALSE(lock.try_lock());
  std::thread release([&] {
    std::this_thread::sleep_for(300ms);  // let the waiter block first
    server.cli("SET", name + ":py-release", "1");
  });
  const auto t0 = Clock::now();
  EXPECT_TRUE(lock.try_lock_for(10s));
  const long long took = ms_since(t0);
  release.join();
  EXPECT_EQ(py.wait(20s), 0);
  EXPECT_EQ(py.output(), "released\n");
  EXPECT_LT(took, 300 + 2000 + 500);  // release + at most retry_max + slack
  EXPECT_EQ(server.cli("GET", name), lock.token());
}

// ---- servers of their own ---------------------------------------------------

TEST(LockServer, ServerRestartUnderAHolderIsReportedAsLoss) {
  RedisServer server;
  redkit::Redis client(server.uri());
  std::atomic<int> lost{0};
  LockOptions o;
  o.ttl = 600ms;
  o.on_lost = [&](const std::string&) { ++lost; };
  RedisLock<> lock(client, "restart:lock", o);
  ASSERT_TRUE(lock.try_lock());
  const std::int64_t fence = lock.fencing_token();
  server.restart();  // no persistence: the key and the fence counter are gone
  ASSERT_TRUE(wait_until([&] { return lost.load() > 0; }, 5s));
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(lost.load(), 1);
  lock.unlock();
  ASSERT_TRUE(lock.try_lock());
  EXPECT_GT(lock.fencing_token(), fence);  // reseeded from the server clock
}

TEST(LockServer, UnlockNeverThrowsWhenTheServerIsDown) {
  RedisServer server;
  redkit::Redis client(server.uri());
  RedisLock<> lock(client, "down:lock");
  ASSERT_TRUE(lock.try_lock());
  server.kill();
  const auto t0 = Clock::now();
  lock.unlock();
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_LT(ms_since(t0), 3000);
  EXPECT_THROW(lock.try_lock(), redkit::IoError);
}

TEST(LockServer, WaitReplicasWithoutEnoughReplicasReleasesAndThrows) {
  RedisServer server;
  redkit::Redis client(server.uri());
  LockOptions o;
  o.wait_replicas = 1;
  o.wait_timeout = 100ms;
  RedisLock<> lock(client, "wait:lock", o);
  const auto t0 = Clock::now();
  try {
    lock.try_lock();
    ADD_FAILURE() << "expected NotReplicatedError";
  } catch (const redkit::NotReplicatedError& e) {
    EXPECT_EQ(e.acknowledged(), 0);
    EXPECT_EQ(e.required(), 1);
  }
  EXPECT_LT(ms_since(t0), 1000);
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(server.cli("EXISTS", "wait:lock"), "0");
}

TEST(LockServer, WaitReplicasSucceedsWhenTheReplicaAcknowledges) {
  ServerOptions mo;
  mo.extra_args = {"--repl-diskless-sync-delay", "0"};  // sync the replica at once
  RedisServer master(mo);
  ServerOptions so;
  so.extra_args = {"--replicaof", "127.0.0.1", std::to_string(master.port())};
  RedisServer replica(so);
  ASSERT_TRUE(wait_until(
      [&] { return replica.cli("INFO", "replication").find("master_link_status:up") != std::string::npos; },
      10s));
  redkit::Redis client(master.uri());
  LockOptions o;
  o.wait_replicas = 1;
  o.wait_timeout = 2000ms;
  RedisLock<> lock(client, "wait:lock", o);
  ASSERT_TRUE(lock.try_lock());
  EXPECT_EQ(replica.cli("GET", "wait:lock"), lock.token());
}
