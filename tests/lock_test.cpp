// RedisLock against real servers: exclusion across threads and processes,
// one object shared by threads, token-checked release and extend, fencing on
// demand, renewal and loss (and renewal per node), waiting by wake-up (one
// waiter in Redis per process), the standard lock types, redis-py interop,
// WAIT for replicas, faults through a loopback proxy, failover and the
// fencing torture test.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <redkit/lock.hpp>
#include <redkit/slot.hpp>

#include "support/clients.hpp"
#include "support/cluster.hpp"
#include "support/fault_proxy.hpp"
#include "support/nodes.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::LockOptions;
using redkit::RedisLock;
using redkit::test::ChildProcess;
using redkit::test::FaultProxy;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;
using redkit::test::unique_prefix;
using redkit::test::wait_until;
using redkit::test::waiting_count;
using redkit::test::info_number;
using redkit::test::ms_since;
using Clock = std::chrono::steady_clock;

namespace {

// Every command the node that owns route processed, calls inside scripts
// included (INFO total_commands_processed), not counting the INFO that
// reads it.
template <class Client>
long long server_commands(Client& client, const std::string& route) {
  return info_number(client, "stats", "total_commands_processed", route);
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

// The id of the one connection blocked in BLPOP on a server, or "".
std::string blocked_client_id(const RedisServer& server) {
  const std::string list = server.cli("CLIENT", "LIST");
  std::size_t at = 0;
  while (at < list.size()) {
    const std::size_t nl = list.find('\n', at);
    const std::string line = list.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    at = nl == std::string::npos ? list.size() : nl + 1;
    if (line.find("cmd=blpop") == std::string::npos) continue;
    const auto id = line.find("id=");
    return line.substr(id + 3, line.find(' ', id) - id - 3);
  }
  return "";
}

}  // namespace

// ---- over every client kind -------------------------------------------------

template <class Kind>
class LockTest : public ::testing::Test {
 public:
  using Client = typename Kind::Client;
  using Lock = RedisLock<Client>;
  Client client = Kind::make();
  // Another client stands for another process: it has its own per-process
  // state, so its locks meet this client's in Redis only.
  Client other = Kind::make();
  const std::string name = unique_prefix() + "lock";

  // Blocked waiters on the node that owns the lock name.
  long long blocked() { return info_number(client, "clients", "blocked_clients", name); }
  Client make() { return Kind::make(); }
};
TYPED_TEST_SUITE(LockTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(LockTest, AcquireStoresTokenAtTheNamedKeyAndUnlockDeletesIt) {
  typename TestFixture::Lock lock(this->client, this->name, no_renew(5s));
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(lock.token(), "");
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
  typename TestFixture::Lock b(this->other, this->name);
  ASSERT_TRUE(a.try_lock());
  const std::string first = a.token();
  EXPECT_FALSE(b.try_lock());
  EXPECT_FALSE(b.owns_lock());
  a.unlock();
  EXPECT_TRUE(b.try_lock());
  EXPECT_NE(first, b.token());
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

// Four threads, each section a non-atomic read-modify-write; `sharing`
// says which lock object each section goes through.
template <class Fixture>
void read_modify_write(Fixture& f, const std::string& sharing) {
  using Lock = typename Fixture::Lock;
  const std::string counter = unique_prefix() + "counter";
  const std::string holders = unique_prefix() + "holders";
  constexpr int kThreads = 4;
  constexpr int kIterations = 25;
  std::atomic<int> violations{0};
  Lock shared(f.client, f.name);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::unique_ptr<Lock> own;
      if (sharing == "own") own = std::make_unique<Lock>(f.client, f.name);
      for (int i = 0; i < kIterations; ++i) {
        std::unique_ptr<Lock> fresh;
        if (sharing == "fresh") fresh = std::make_unique<Lock>(f.client, f.name);
        Lock& lock = fresh ? *fresh : own ? *own : shared;
        std::lock_guard<Lock> guard(lock);
        if (!lock.owns_lock()) ++violations;
        if (f.client.command(Command{"INCR"}.key(holders)).integer() > 1) ++violations;
        const std::string v = get(f.client, counter);
        const long long n = v == "(nil)" ? 0 : std::stoll(v);
        f.client.command(Command{"SET"}.key(counter).arg(n + 1));
        f.client.command(Command{"DECR"}.key(holders));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(get(f.client, counter), std::to_string(kThreads * kIterations));
}

TYPED_TEST(LockTest, ThreadsWithAnObjectEachReadModifyWriteExactly) { read_modify_write(*this, "own"); }
TYPED_TEST(LockTest, ThreadsSharingOneObjectReadModifyWriteExactly) { read_modify_write(*this, "shared"); }
TYPED_TEST(LockTest, ThreadsWithAFreshObjectPerSectionReadModifyWriteExactly) { read_modify_write(*this, "fresh"); }

TYPED_TEST(LockTest, ASharedObjectsHoldBelongsToTheThreadThatTookIt) {
  typename TestFixture::Lock lock(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  const std::string token = lock.token();
  std::thread other([&] {
    EXPECT_FALSE(lock.owns_lock());
    EXPECT_EQ(lock.token(), "");
    EXPECT_THROW(lock.fencing_token(), redkit::LockLostError);
    EXPECT_FALSE(lock.extend(10s));
    lock.unlock();  // not this thread's hold: nothing happens
    EXPECT_FALSE(lock.try_lock());  // busy in this process: no round trip
    EXPECT_FALSE(lock.try_lock_for(50ms));
  });
  other.join();
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(get(this->client, this->name), token);
  EXPECT_GT(lock.fencing_token(), 0);
  lock.unlock();
  EXPECT_EQ(get(this->client, this->name), "(nil)");
}

TYPED_TEST(LockTest, ThreadsOfOneProcessWaitInItWithOneWaiterAndOneConnectionInRedis) {
  typename TestFixture::Lock holder(this->other, this->name);
  ASSERT_TRUE(holder.try_lock());
  this->client.command(Command{"PING"}.route(this->name));  // the command pool is warm
  const auto created = this->client.stats().connections_created;
  constexpr int kThreads = 8;
  std::atomic<int> acquired{0};
  typename TestFixture::Lock shared(this->client, this->name, slow_fallback());
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      if (i % 2 == 0) {
        shared.lock();
        ++acquired;
        shared.unlock();
      } else {
        typename TestFixture::Lock own(this->client, this->name, slow_fallback());
        own.lock();
        ++acquired;
        own.unlock();
      }
    });
  }
  EXPECT_TRUE(wait_until([&] { return this->blocked() == 1; }, 5s));
  std::this_thread::sleep_for(300ms);  // time for a second waiter to show itself
  EXPECT_EQ(this->blocked(), 1);
  EXPECT_EQ(waiting_count(this->client, "{" + this->name + "}:waiters"), 1);
  // One dedicated connection (and at most one more pooled one) for all eight.
  EXPECT_LE(this->client.stats().connections_created - created, 2u);
  const auto t0 = Clock::now();
  holder.unlock();
  for (auto& t : threads) t.join();
  EXPECT_EQ(acquired.load(), kThreads);
  EXPECT_LT(ms_since(t0), 5000);  // each release let the next in, well inside one fallback wait
  EXPECT_EQ(waiting_count(this->client, "{" + this->name + "}:waiters"), 0);
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
  typename TestFixture::Lock second(this->other, this->name);
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
  EXPECT_THROW(lock.extend(std::chrono::hours(24 * 365 * 1000)), redkit::ConfigError);
  EXPECT_THROW(lock.extend(std::chrono::milliseconds::max()), redkit::ConfigError);
}

TYPED_TEST(LockTest, FencingTokensStrictlyIncreaseAcrossHolders) {
  typename TestFixture::Lock a(this->client, this->name);
  typename TestFixture::Lock b(this->other, this->name);
  std::int64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    auto& lock = i % 2 ? a : b;
    ASSERT_TRUE(lock.try_lock());
    const std::int64_t fence = lock.fencing_token();
    EXPECT_GT(fence, last);
    EXPECT_EQ(lock.fencing_token(), fence);  // cached for the hold
    last = fence;
    lock.unlock();
  }
}

TYPED_TEST(LockTest, TheFenceIsIssuedOnDemandCachedForTheHoldAndItsCounterExpires) {
  const std::string fence_key = "{" + this->name + "}:fence";
  typename TestFixture::Lock lock(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(fence_key)).integer(), 0);  // not at acquire
  const std::int64_t fence = lock.fencing_token();
  const long long ttl = pttl(this->client, fence_key);
  EXPECT_GT(ttl, 3500000);  // an hour after its last use
  EXPECT_LE(ttl, 3600000);
  const long long before = server_commands(this->client, this->name);
  EXPECT_EQ(lock.fencing_token(), fence);
  EXPECT_EQ(server_commands(this->client, this->name) - before, 1);  // only the second INFO
  lock.unlock();

  LockOptions o;
  o.fence_on_acquire = true;
  typename TestFixture::Lock fenced(this->client, this->name, o);
  ASSERT_TRUE(fenced.try_lock());
  const long long after_acquire = server_commands(this->client, this->name);
  EXPECT_GT(fenced.fencing_token(), fence);
  EXPECT_EQ(server_commands(this->client, this->name) - after_acquire, 1);  // the fence came with the acquire
  EXPECT_GT(pttl(this->client, fence_key), 3500000);
}

TYPED_TEST(LockTest, FencingTokenOfAHoldThatIsGoneThrowsLockLostErrorAndIssuesNone) {
  const std::string fence_key = "{" + this->name + "}:fence";
  typename TestFixture::Lock lock(this->client, this->name);
  EXPECT_THROW(lock.fencing_token(), redkit::LockLostError);  // never held
  ASSERT_TRUE(lock.try_lock());
  const std::int64_t first = lock.fencing_token();
  lock.unlock();
  EXPECT_THROW(lock.fencing_token(), redkit::LockLostError);  // released

  ASSERT_TRUE(lock.try_lock());
  this->client.command(Command{"DEL"}.key(this->name));  // taken away before the fence was asked for
  try {
    lock.fencing_token();
    ADD_FAILURE() << "expected LockLostError";
  } catch (const redkit::LockLostError& e) {
    EXPECT_NE(std::string(e.what()).find(this->name), std::string::npos) << e.what();
  }
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(get(this->client, fence_key), std::to_string(first));  // nothing was issued
  static_assert(std::is_base_of_v<redkit::Error, redkit::LockLostError>);
}

TYPED_TEST(LockTest, FencingTokenStillIncreasesAfterTheCounterIsLost) {
  typename TestFixture::Lock lock(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  const std::int64_t before = lock.fencing_token();
  lock.unlock();
  // What a restart without persistence, FLUSHALL, eviction or its TTL does to it.
  this->client.command(Command{"DEL"}.key("{" + this->name + "}:fence"));
  ASSERT_TRUE(lock.try_lock());
  EXPECT_GT(lock.fencing_token(), before);
}

TYPED_TEST(LockTest, TheAcquireScriptsRecogniseTheirOwnToken) {
  // The retry after an ambiguous failure sends the same token again.
  const auto keys = redkit::detail::lock_keys(this->name);
  auto fenced = [&](const std::string& token, const std::string& ttl) {
    return this->client
        .eval(redkit::detail::lock_acquire_fenced_script(), {std::string_view(keys.key), std::string_view(keys.fence)},
              {std::string_view(token), std::string_view(ttl), std::string_view("3600000")})
        .integer();
  };
  const long long fence = fenced("tok-a", "5000");
  ASSERT_GE(fence, 1);
  EXPECT_EQ(fenced("tok-a", "9000"), fence);  // same fence, TTL renewed
  EXPECT_GT(pttl(this->client, this->name), 8000);
  EXPECT_LT(fenced("tok-b", "5000"), -8000);  // -2 - the holder's PTTL, for the waiter
  auto recognise = [&](const std::string& token) {
    return this->client
        .eval(redkit::detail::lock_recognise_script(), {std::string_view(keys.key)},
              {std::string_view(token), std::string_view("7000")})
        .integer();
  };
  EXPECT_EQ(recognise("tok-a"), 1);
  EXPECT_LT(recognise("tok-b"), -6000);
  this->client.command(Command{"DEL"}.key(this->name));
  EXPECT_EQ(recognise("tok-b"), 1);
  this->client.command(Command{"DEL"}.key(this->name));
}

TYPED_TEST(LockTest, AnUncontendedPairCostsTheServerFourCallsAsRaw) {
  typename TestFixture::Lock lock(this->client, this->name);
  lock.lock();  // the scripts are loaded
  lock.unlock();
  constexpr int kPairs = 100;
  const long long before = server_commands(this->client, this->name);
  for (int i = 0; i < kPairs; ++i) {
    lock.lock();
    lock.unlock();
  }
  const long long calls = server_commands(this->client, this->name) - before - 1;
  this->RecordProperty("server_calls_per_pair", std::to_string(static_cast<double>(calls) / kPairs));
  // SET NX PX; EVALSHA with MGET, DEL: raw's 4. A few more may come from
  // the sentinels and replicas talking to the same node meanwhile.
  EXPECT_GE(calls, 4 * kPairs);
  EXPECT_LE(calls, 4 * kPairs + 10) << calls << " calls for " << kPairs << " pairs";
}

// Untrusted side keys: a waiting count that is not a number makes a waiter's
// registration fail with a typed error, and the holder's release still
// releases (and wakes nobody).
TYPED_TEST(LockTest, AForeignValueInTheWaitingCountIsAReplyErrorAndTheReleaseStillWorks) {
  const auto keys = redkit::detail::lock_keys(this->name);
  typename TestFixture::Lock a(this->client, this->name);
  typename TestFixture::Lock b(this->other, this->name, slow_fallback());
  ASSERT_TRUE(a.try_lock());
  this->client.command(Command{"SET"}.key(keys.waiting).arg("not a number").arg("PX").arg(60000));
  EXPECT_THROW(b.try_lock_for(200ms), redkit::ReplyError);
  EXPECT_EQ(get(this->client, keys.waiting), "not a number");  // left as it was
  a.unlock();
  EXPECT_EQ(get(this->client, this->name), "(nil)");
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(keys.wake)).integer(), 0);
  this->client.command(Command{"DEL"}.key(keys.waiting));
  EXPECT_TRUE(b.try_lock());
  b.unlock();
}

TYPED_TEST(LockTest, HoldsShorterThanTheirFirstRenewalNeverWakeTheScheduler) {
  { typename TestFixture::Lock warm(this->client, this->name); warm.lock(); warm.unlock(); }
  const auto before = this->client.scheduler().wakeups();
  for (int i = 0; i < 200; ++i) {
    typename TestFixture::Lock fresh(this->client, this->name);  // a fresh object per hold
    fresh.lock();
    fresh.unlock();
  }
  EXPECT_LE(this->client.scheduler().wakeups() - before, 1u);
}

TYPED_TEST(LockTest, ALockPerEntityOnOneClientWorksPastTheLocalStateSweeps) {
  // One lock name per entity, a fresh object per hold: the client's table of
  // per-name state is swept as it grows (first at 64 names), while some
  // names are still in use.
  std::vector<std::unique_ptr<typename TestFixture::Lock>> kept;
  for (int i = 0; i < 300; ++i) {
    const std::string entity = this->name + ":entity:" + std::to_string(i);
    typename TestFixture::Lock lock(this->client, entity);
    ASSERT_TRUE(lock.try_lock()) << entity;
    EXPECT_TRUE(lock.owns_lock());
    lock.unlock();
    EXPECT_FALSE(lock.owns_lock());
    if (i % 50 == 0) {  // a few stay held across the sweeps
      kept.push_back(std::make_unique<typename TestFixture::Lock>(this->client, entity));
      ASSERT_TRUE(kept.back()->try_lock()) << entity;
    }
  }
  for (std::size_t k = 0; k < kept.size(); ++k) {
    EXPECT_TRUE(kept[k]->owns_lock());
    // Another object on the held name, made after the sweeps, is excluded.
    typename TestFixture::Lock other(this->client, this->name + ":entity:" + std::to_string(50 * k));
    EXPECT_FALSE(other.try_lock());
    kept[k]->unlock();
    EXPECT_TRUE(other.try_lock());
    other.unlock();
  }
}

TYPED_TEST(LockTest, AReleaseMovesOneWaitingProcessToTheWakeList) {
  const auto keys = redkit::detail::lock_keys(this->name);
  typename TestFixture::Lock a(this->client, this->name);
  typename TestFixture::Lock b(this->other, this->name, slow_fallback());
  ASSERT_TRUE(a.try_lock());
  EXPECT_FALSE(b.try_lock());  // no wait: no registration
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(keys.waiting)).integer(), 0);
  a.unlock();
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(keys.wake)).integer(), 0);  // nobody to wake

  ASSERT_TRUE(a.try_lock());
  EXPECT_FALSE(b.try_lock_for(1ms));  // gave up: registered, then left
  EXPECT_EQ(waiting_count(this->client, keys.waiting), 0);

  std::atomic<bool> got{false};
  std::thread waiter([&] { got = b.try_lock_for(10s); });
  EXPECT_TRUE(wait_until([&] { return this->blocked() == 1; }, 5s));
  EXPECT_EQ(waiting_count(this->client, keys.waiting), 1);
  const long long ttl = pttl(this->client, keys.waiting);
  EXPECT_GT(ttl, 50000);
  EXPECT_LE(ttl, 60000);
  a.unlock();
  waiter.join();
  EXPECT_TRUE(got.load());
  // The wake-up was taken and the registration used: nobody is counted
  // (the count lingers at 0 until its TTL) and no wake-up is left.
  EXPECT_EQ(waiting_count(this->client, keys.waiting), 0);
  EXPECT_EQ(this->client.command(Command{"EXISTS"}.key(keys.wake)).integer(), 0);
  b.unlock();
}

TYPED_TEST(LockTest, AutoRenewKeepsA300msLockForFourTimesItsTtl) {
  std::atomic<int> lost{0};
  LockOptions o;
  o.ttl = 300ms;
  o.on_lost = [&](const std::string&) { ++lost; };
  typename TestFixture::Lock lock(this->client, this->name, o);
  typename TestFixture::Lock other(this->other, this->name);
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
  // A holder in this process (the wait is local) and in another (in Redis).
  for (bool same_process : {true, false}) {
    typename TestFixture::Lock holder(same_process ? this->client : this->other, this->name);
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
    holder.unlock();
  }
}

TYPED_TEST(LockTest, TryLockForAcquiresWhenReleasedBeforeItsDeadline) {
  typename TestFixture::Lock holder(this->other, this->name);
  typename TestFixture::Lock waiter(this->client, this->name, slow_fallback());
  std::atomic<bool> held{false};
  std::thread release([&] {  // the hold is this thread's: it releases it
    held = holder.try_lock();
    wait_until([&] { return this->blocked() >= 1; }, 5s);
    holder.unlock();
  });
  EXPECT_TRUE(wait_until([&] { return held.load(); }, 5s));
  const auto t0 = Clock::now();
  EXPECT_TRUE(waiter.try_lock_for(5s));
  EXPECT_LT(ms_since(t0), 2000);
  release.join();
  EXPECT_TRUE(waiter.owns_lock());
}

TYPED_TEST(LockTest, ReleaseWakesABlockedWaiterQuickly) {
  typename TestFixture::Lock holder(this->other, this->name);
  typename TestFixture::Lock waiter(this->client, this->name, slow_fallback());
  ASSERT_TRUE(holder.try_lock());
  std::atomic<long long> acquired_at{0};
  std::thread t([&] {
    waiter.lock();
    acquired_at = Clock::now().time_since_epoch().count();
    waiter.unlock();
  });
  ASSERT_TRUE(wait_until([&] { return this->blocked() >= 1; }, 5s));
  const auto released_at = Clock::now();
  holder.unlock();
  t.join();
  const auto latency = Clock::time_point(Clock::duration(acquired_at.load())) - released_at;
  // The fallback would take 10 s: only the wake-up explains this.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(latency).count(), 500);
}

TYPED_TEST(LockTest, OneReleaseWakesOneWaitingProcess) {
  typename TestFixture::Lock holder(this->other, this->name);
  ASSERT_TRUE(holder.try_lock());
  constexpr int kWaiters = 3;  // three clients: three processes, each waiting in Redis
  std::vector<typename TestFixture::Client> clients;
  for (int i = 0; i < kWaiters; ++i) clients.push_back(this->make());
  std::atomic<int> acquired{0};
  std::atomic<bool> let_go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      typename TestFixture::Lock lock(clients[static_cast<std::size_t>(i)], this->name, slow_fallback());
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
  // Eight waiting processes (eight clients), every server command counted,
  // calls inside scripts included.
  typename TestFixture::Lock holder(this->other, this->name);
  ASSERT_TRUE(holder.try_lock());
  constexpr int kWaiters = 8;
  std::vector<typename TestFixture::Client> clients;
  for (int i = 0; i < kWaiters; ++i) {
    clients.push_back(this->make());
    clients.back().command(Command{"PING"}.route(this->name));
  }
  const long long before = server_commands(this->client, this->name);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      typename TestFixture::Lock lock(clients[static_cast<std::size_t>(i)], this->name);
      lock.lock();
      lock.unlock();
    });
  }
  std::this_thread::sleep_for(1s);  // the hold: let time pass
  const long long commands = server_commands(this->client, this->name) - before - 1;
  holder.unlock();
  for (auto& t : threads) t.join();
  this->RecordProperty("server_commands_during_1s_hold", std::to_string(commands));
  // A waiter polling every 100 ms would cost 80 in this second alone; here
  // each waiter's first round is a SET, a 3-call registration script and a
  // BLPOP, then a SET and a BLPOP per fallback wait (about one in this
  // second). The sentinels and replicas add a few of their own, and in
  // sentinel mode each waiter's new wait connection is checked with ROLE
  // (one more per waiter: 80 to 83 in all, measured under ASan).
  constexpr bool kSentinel = std::is_same_v<TypeParam, redkit::test::SentinelMaster>
#ifdef REDKIT_TEST_TLS_KINDS
                             || std::is_same_v<TypeParam, redkit::test::TlsSentinelMaster>
#endif
      ;
  const long long bound = 80 + (kSentinel ? kWaiters : 0);
  EXPECT_LT(commands, bound) << commands << " commands from " << kWaiters << " waiters in 1 s";
}

TYPED_TEST(LockTest, WorksWithLockGuardUniqueLockAndScopedLock) {
  using Lock = typename TestFixture::Lock;
  Lock a(this->client, this->name);
  Lock probe(this->other, this->name);
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

TYPED_TEST(LockTest, LockingALockThisThreadHoldsThrows) {
  typename TestFixture::Lock lock(this->client, this->name);
  typename TestFixture::Lock second(this->client, this->name);
  ASSERT_TRUE(lock.try_lock());
  EXPECT_THROW(lock.try_lock(), redkit::Error);
  EXPECT_THROW(lock.lock(), redkit::Error);
  EXPECT_THROW(second.lock(), redkit::Error);  // would wait for itself for ever
  EXPECT_FALSE(second.try_lock());              // through another object: busy
  EXPECT_TRUE(lock.owns_lock());
}

TYPED_TEST(LockTest, AHolderThatCrashedIsReplacedWhenItsTtlRunsOut) {
  // Only the holder's PTTL can get the waiter in quickly: no release comes
  // and the fallback waits 10 s.
  typename TestFixture::Lock waiter(this->client, this->name, slow_fallback());
  typename TestFixture::Lock crashed(this->other, this->name, no_renew(600ms));
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
  EXPECT_EQ(plain.waiting, "{orders:42}:waiters");
  auto tagged = redkit::detail::lock_keys("{user:7}.lock");
  EXPECT_EQ(tagged.key, "{user:7}.lock");
  EXPECT_EQ(tagged.fence, "{user:7}.lock:fence");
  EXPECT_EQ(tagged.wake, "{user:7}.lock:wake");
  EXPECT_EQ(tagged.waiting, "{user:7}.lock:waiters");
  auto empty_tag = redkit::detail::lock_keys("a{b");
  EXPECT_EQ(empty_tag.fence, "{a{b}:fence");  // hashes "a{b", like the name
  EXPECT_THROW(redkit::detail::lock_keys(""), redkit::ConfigError);
  EXPECT_THROW(redkit::detail::lock_keys("a}b"), redkit::ConfigError);
  EXPECT_THROW(redkit::detail::lock_keys("x{}y"), redkit::ConfigError);
}

TEST(Lock, OptionsOutOfRangeAreRejectedAtConstruction) {
  redkit::Redis client(redkit::test::shared_server().uri());
  auto with = [](auto change) {
    LockOptions o;
    change(o);
    return o;
  };
  using std::chrono::hours;
  using std::chrono::milliseconds;
  const milliseconds thousand_years = hours(24 * 365 * 1000);
  auto rejected = [&](LockOptions o) { EXPECT_THROW(RedisLock<>(client, "x", o), redkit::ConfigError); };
  rejected(with([](LockOptions& o) { o.ttl = 0ms; }));
  rejected(with([&](LockOptions& o) { o.ttl = thousand_years; }));
  rejected(with([](LockOptions& o) { o.ttl = milliseconds::max(); }));
  rejected(with([](LockOptions& o) { o.ttl = milliseconds::min(); }));
  rejected(with([](LockOptions& o) { o.retry_min = 0ms; }));
  rejected(with([](LockOptions& o) { o.retry_max = 1ms; }));  // below retry_min
  rejected(with([](LockOptions& o) { o.retry_max = milliseconds::max(); }));
  rejected(with([](LockOptions& o) { o.retry_min = hours(2); o.retry_max = hours(2); }));
  rejected(with([](LockOptions& o) { o.max_hold = 0ms; }));
  rejected(with([&](LockOptions& o) { o.max_hold = thousand_years; }));
  rejected(with([](LockOptions& o) { o.wait_replicas = -1; }));
  rejected(with([](LockOptions& o) { o.wait_replicas = 100000; }));
  rejected(with([](LockOptions& o) {
    o.wait_replicas = 1;
    o.wait_timeout = 0ms;
  }));
  rejected(with([](LockOptions& o) {
    o.wait_replicas = 1;
    o.wait_timeout = milliseconds::max();
  }));
  try {
    RedisLock<>(client, "x", with([&](LockOptions& o) { o.ttl = thousand_years; }));
  } catch (const redkit::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("ttl"), std::string::npos) << e.what();
  }
  // The edges are accepted, and work.
  LockOptions edge;
  edge.ttl = redkit::detail::kMaxLockTtl;
  edge.retry_min = 1ms;
  edge.retry_max = hours(1);
  edge.max_hold = redkit::detail::kMaxLockTtl;
  RedisLock<> lock(client, unique_prefix() + "edge", edge);
  ASSERT_TRUE(lock.try_lock());
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_GT(client.command(Command{"PTTL"}.key(lock.name())).integer(), 2000000000LL);
  lock.unlock();
}

TEST(Lock, AMovedFromLockThrowsErrorWhenUsedAndNeverCrashes) {
  redkit::Redis client(redkit::test::shared_server().uri());
  RedisLock<> a(client, unique_prefix() + "lock");
  ASSERT_TRUE(a.try_lock());
  RedisLock<> b(std::move(a));
  EXPECT_THROW(a.lock(), redkit::Error);
  EXPECT_THROW(a.try_lock(), redkit::Error);
  EXPECT_THROW(a.try_lock_for(10ms), redkit::Error);
  EXPECT_THROW(a.try_lock_until(Clock::now() + 10ms), redkit::Error);
  EXPECT_THROW(a.extend(1s), redkit::Error);
  EXPECT_THROW(a.fencing_token(), redkit::Error);
  EXPECT_THROW(a.token(), redkit::Error);
  EXPECT_THROW(a.name(), redkit::Error);
  try {
    a.lock();
  } catch (const redkit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("moved from"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(a.owns_lock());
  a.unlock();  // no-op, never throws
  EXPECT_TRUE(b.owns_lock());
  a = RedisLock<>(client, unique_prefix() + "again");  // assignable again
  EXPECT_TRUE(a.try_lock());
  a.unlock();
  b.unlock();
}

// N processes x 4 threads, each process sharing its lock objects as `sharing` says.
void four_processes(const std::string& sharing) {
  RedisServer& server = redkit::test::shared_server();
  const std::string name = unique_prefix() + "lock";
  const std::string counter = unique_prefix() + "counter";
  const std::string holders = unique_prefix() + "holders";
  constexpr int kProcesses = 4;
  constexpr int kThreads = 4;
  constexpr int kIterations = 20;
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("lock_worker"),
        std::vector<std::string>{"count", server.uri(), name, counter, holders, std::to_string(kThreads),
                                 std::to_string(kIterations), sharing}));
  }
  for (auto& child : children) {
    EXPECT_EQ(child->wait(180s), 0) << child->output();
    EXPECT_NE(child->output().find("violations=0 fence_regressions=0 failures=0"), std::string::npos)
        << child->output();
  }
  EXPECT_EQ(server.cli("GET", counter), std::to_string(kProcesses * kThreads * kIterations));
  EXPECT_EQ(server.cli("GET", holders), "0");
}

TEST(Lock, FourProcessesTimesFourThreadsSharingOneObjectCountExactlyWithNeverTwoHolders) {
  four_processes("shared");
}
TEST(Lock, FourProcessesTimesFourThreadsWithAFreshObjectPerSectionCountExactly) { four_processes("fresh"); }
TEST(Lock, FourProcessesTimesFourThreadsWithAnObjectEachCountExactly) { four_processes("own"); }

TEST(Lock, AThousandThreadsInFourProcessesAllGetItInTurnOnAFewConnectionsEach) {
  RedisServer& server = redkit::test::shared_server();
  const std::string name = unique_prefix() + "lock";
  const std::string counter = unique_prefix() + "counter";
  const std::string holders = unique_prefix() + "holders";
  constexpr int kProcesses = 4;
  constexpr int kThreads = 250;
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("lock_worker"),
        std::vector<std::string>{"crowd", server.uri(), name, counter, holders, std::to_string(kThreads)}));
  }
  for (auto& child : children) {
    ASSERT_EQ(child->wait(300s), 0) << child->output();
    const std::string out = child->output();
    EXPECT_NE(out.find("violations=0 failures=0"), std::string::npos) << out;
    const auto at = out.find("connections=");
    ASSERT_NE(at, std::string::npos) << out;
    // The command pool (4) and one wait connection, at most.
    EXPECT_LE(std::stoi(out.substr(at + 12)), 5) << out;
  }
  EXPECT_EQ(server.cli("GET", counter), std::to_string(kProcesses * kThreads));
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

TEST(Lock, FencingTortureNeverAcceptsAStaleWriteFromAHolderStoppedPastItsTtl) {
  // Kleppmann's case: a holder pauses past its TTL, another takes the lock
  // and writes, the first wakes up and writes with its old fence. The
  // resource (a script that refuses a fence lower than the last accepted)
  // must refuse every such write. Holders are stopped at random, 600 ms at a
  // time, with a 200 ms TTL.
  RedisServer& server = redkit::test::shared_server();
  const std::string name = unique_prefix() + "lock";
  const std::string resource = unique_prefix() + "resource";
  constexpr int kProcesses = 4;
  constexpr int kSeconds = 6;
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("lock_worker"),
        std::vector<std::string>{"fenced", server.uri(), name, resource, "200", std::to_string(kSeconds)}));
  }
  std::mt19937 rng(20261127);
  int stops = 0;
  const auto end = Clock::now() + std::chrono::seconds(kSeconds - 1);
  while (Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(100, 300)(rng)));
    const std::string holder = server.cli("HGET", resource, "holder");
    pid_t pid = -1;
    for (auto& c : children) {
      if (std::to_string(c->pid()) == holder) pid = c->pid();
    }
    if (pid < 0) continue;
    ::kill(pid, SIGSTOP);  // most likely inside its hold
    ++stops;
    std::this_thread::sleep_for(600ms);
    ::kill(pid, SIGCONT);
  }
  int refused_by_workers = 0;
  for (auto& child : children) {
    EXPECT_EQ(child->wait(60s), 0) << child->output();
    const std::string out = child->output();
    const auto at = out.find("refused=");
    if (at != std::string::npos) refused_by_workers += std::stoi(out.substr(at + 8));
  }
  const std::string refused = server.cli("HGET", resource, "refused");
  const std::string accepted = server.cli("HGET", resource, "accepted");
  const std::string shared = server.cli("HGET", resource, "shared_fence");
  // The accepted fences, in the order the resource took them: never lower
  // than one before, and never one value from two holds.
  const std::string log = server.cli("LRANGE", resource + ":log", "0", "-1");
  long long previous = 0;
  int out_of_order = 0;
  for (std::size_t at = 0; at < log.size();) {
    const std::size_t nl = log.find('\n', at);
    const long long f = std::stoll(log.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
    if (f < previous) ++out_of_order;
    previous = f;
    at = nl == std::string::npos ? log.size() : nl + 1;
  }
  std::printf("[fencing torture] %d stops of 600 ms (ttl 200 ms), %s writes accepted, %s stale writes refused\n",
              stops, accepted.c_str(), refused == "(nil)" ? "0" : refused.c_str());
  ::testing::Test::RecordProperty("stale_writes_refused", refused);
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(shared, "(nil)");  // no fence value was accepted from two holds
  EXPECT_GE(stops, 5);
  ASSERT_NE(refused, "(nil)") << "no stop produced a stale write: the test proved nothing";
  EXPECT_GE(std::stoi(refused), 1);
  EXPECT_EQ(std::stoi(refused), refused_by_workers);
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

// ---- faults: through a loopback proxy, or done to the server ----------------

// A client that reaches the shared server through proxy, with a short
// command timeout.
redkit::Redis through(const FaultProxy& proxy) {
  redkit::Options o = redkit::Options::from_uri(proxy.uri());
  o.command_timeout = 300ms;
  return redkit::Redis(o);
}

TEST(LockFaults, AnAcquireWhoseReplyIsLostToAResetIsRecognisedByTheRetry) {
  RedisServer& server = redkit::test::shared_server();
  FaultProxy proxy(server.port());
  redkit::Redis client = through(proxy);
  const std::string name = unique_prefix() + "lock";
  RedisLock<> lock(client, name);
  proxy.reset_after_command_containing({"\r\nSET\r\n", name});
  ASSERT_TRUE(lock.try_lock());  // the SET ran, its reply was lost: the retry finds our token
  EXPECT_EQ(proxy.matched(), 1u);
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(server.cli("GET", name), lock.token());
  lock.unlock();
  EXPECT_EQ(server.cli("EXISTS", name), "0");
}

TEST(LockFaults, AnAcquireWhoseReplyStallsPastTheTimeoutIsRecognisedByTheRetry) {
  RedisServer& server = redkit::test::shared_server();
  FaultProxy proxy(server.port());
  redkit::Redis client = through(proxy);
  const std::string name = unique_prefix() + "lock";
  RedisLock<> lock(client, name);
  proxy.mute_after_command_containing({"\r\nSET\r\n", name});
  const auto t0 = Clock::now();
  ASSERT_TRUE(lock.try_lock());
  EXPECT_GE(ms_since(t0), 250);  // the first reply never came
  EXPECT_EQ(proxy.matched(), 1u);
  EXPECT_EQ(server.cli("GET", name), lock.token());
  lock.unlock();
  EXPECT_EQ(server.cli("EXISTS", name), "0");
}

TEST(LockFaults, AnAcquireWhoseRetryFailsTooIsReleasedBeforeItThrows) {
  RedisServer& server = redkit::test::shared_server();
  FaultProxy proxy(server.port());
  redkit::Redis client = through(proxy);
  const std::string name = unique_prefix() + "lock";
  RedisLock<> lock(client, name);
  proxy.reset_after_command_containing({"\r\nSET\r\n", name});
  proxy.reset_after_command_containing({"EVALSHA", redkit::detail::lock_recognise_script().sha(), name});
  EXPECT_THROW(lock.try_lock(), redkit::IoError);
  EXPECT_EQ(proxy.matched(), 2u);
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(server.cli("EXISTS", name), "0");  // not left for its 30 s TTL
  RedisLock<> other(redkit::Redis(server.uri()), name);
  EXPECT_TRUE(other.try_lock());
}

TEST(LockFaults, AFenceOnAcquireWhoseReplyIsLostIsRecognisedWithItsFence) {
  RedisServer& server = redkit::test::shared_server();
  FaultProxy proxy(server.port());
  redkit::Redis client = through(proxy);
  const std::string name = unique_prefix() + "lock";
  LockOptions o;
  o.fence_on_acquire = true;
  RedisLock<> lock(client, name, o);
  ASSERT_TRUE(lock.try_lock());
  const std::int64_t first = lock.fencing_token();
  lock.unlock();
  proxy.reset_after_command_containing({"EVALSHA", redkit::detail::lock_acquire_fenced_script().sha(), name});
  ASSERT_TRUE(lock.try_lock());
  EXPECT_EQ(proxy.matched(), 1u);
  const std::int64_t second = lock.fencing_token();
  EXPECT_GT(second, first);
  EXPECT_EQ(server.cli("GET", "{" + name + "}:fence"), std::to_string(second));  // one fence for the hold
}

TEST(LockFaults, AWaitThatFailsReleasesTheLockBeforeTheAcquireThrows) {
  RedisServer& server = redkit::test::shared_server();
  FaultProxy proxy(server.port());
  redkit::Redis client = through(proxy);
  const std::string name = unique_prefix() + "lock";
  LockOptions o;
  o.wait_replicas = 1;
  o.wait_timeout = 100ms;
  RedisLock<> lock(client, name, o);
  proxy.reset_after_command_containing({"\r\nWAIT\r\n"});
  EXPECT_THROW(lock.try_lock(), redkit::IoError);
  EXPECT_EQ(proxy.matched(), 1u);
  EXPECT_FALSE(lock.owns_lock());
  EXPECT_EQ(server.cli("EXISTS", name), "0");
}

TEST(LockFaults, AWaiterWhoseWaitConnectionIsKilledTwiceLooksAgainAndAcquires) {
  RedisServer& server = redkit::test::shared_server();
  redkit::Redis holder_client(server.uri());
  redkit::Redis waiter_client(server.uri());
  const std::string name = unique_prefix() + "lock";
  RedisLock<> holder(holder_client, name);
  RedisLock<> waiter(waiter_client, name, slow_fallback());
  ASSERT_TRUE(holder.try_lock());
  std::atomic<bool> got{false};
  std::string error;
  std::thread t([&] {
    try {
      got = waiter.try_lock_for(20s);
      if (got) waiter.unlock();
    } catch (const redkit::Error& e) {
      error = e.what();
    }
  });
  for (int kill = 0; kill < 2; ++kill) {
    std::string id;
    EXPECT_TRUE(wait_until([&] { return !(id = blocked_client_id(server)).empty(); }, 5s));
    if (!id.empty()) server.cli("CLIENT", "KILL", "ID", id);
  }
  EXPECT_TRUE(wait_until([&] { return !blocked_client_id(server).empty(); }, 5s));  // blocked again
  const auto t0 = Clock::now();
  holder.unlock();
  t.join();
  EXPECT_EQ(error, "");
  EXPECT_TRUE(got.load());
  EXPECT_LT(ms_since(t0), 2000);  // woken by the release, not the 10 s fallback
}

TEST(LockFaults, AWaiterWhoseServerDiesGetsIoErrorNotBusy) {
  RedisServer server;
  redkit::Options o = redkit::Options::from_uri(server.uri());
  o.connect_timeout = 200ms;
  o.command_timeout = 300ms;
  redkit::Redis holder_client(o);
  redkit::Redis waiter_client(o);
  RedisLock<> holder(holder_client, "dies:lock");
  RedisLock<> waiter(waiter_client, "dies:lock", slow_fallback());
  ASSERT_TRUE(holder.try_lock());
  std::atomic<int> outcome{0};  // 1 acquired, 2 false, 3 IoError
  std::thread t([&] {
    try {
      outcome = waiter.try_lock_for(20s) ? 1 : 2;
    } catch (const redkit::IoError&) {
      outcome = 3;
    }
  });
  EXPECT_TRUE(wait_until([&] { return !blocked_client_id(server).empty(); }, 5s));
  const auto t0 = Clock::now();
  server.kill();
  t.join();
  EXPECT_EQ(outcome.load(), 3);
  EXPECT_LT(ms_since(t0), 5000);
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

TEST(LockCluster, RenewalOnAHealthyMasterGoesOnWhileAnotherMasterIsStopped) {
  // No replicas (no failover) and no full-coverage requirement, so the
  // healthy masters keep serving while one is stopped.
  redkit::test::ClusterOptions co;
  co.replicas_per_master = 0;
  co.server.extra_args = {"--cluster-require-full-coverage", "no"};
  redkit::test::RedisCluster cluster(co);
  redkit::Options o = redkit::Options::from_uri(cluster.seed_uri());
  o.command_timeout = 1000ms;
  redkit::Cluster client(o);
  auto masters = cluster.masters();
  ASSERT_GE(masters.size(), 2u);
  RedisServer& stopped = *masters[0];
  RedisServer& healthy = *masters[1];
  auto name_on = [&](RedisServer& node, const std::string& base) {
    for (int i = 0;; ++i) {
      std::string n = base + std::to_string(i);
      if (&cluster.master_of(redkit::hash_slot(n)) == &node) return n;
    }
  };
  // Six locks whose renewals will hang on the stopped master (ttl 1.5 s:
  // renewed every 500 ms, each attempt there waits command_timeout)...
  LockOptions short_ttl;
  short_ttl.ttl = 1500ms;
  std::vector<std::unique_ptr<RedisLock<redkit::Cluster>>> doomed;
  for (int i = 0; i < 6; ++i) {
    doomed.push_back(std::make_unique<RedisLock<redkit::Cluster>>(client, name_on(stopped, "stop" + std::to_string(i) + ":"), short_ttl));
    ASSERT_TRUE(doomed.back()->try_lock());
  }
  // ... and one on a healthy master, renewed every second.
  std::atomic<int> lost{0};
  LockOptions o3;
  o3.ttl = 3000ms;
  o3.on_lost = [&](const std::string&) { ++lost; };
  const std::string healthy_name = name_on(healthy, "ok:");
  RedisLock<redkit::Cluster> kept(client, healthy_name, o3);
  ASSERT_TRUE(kept.try_lock());
  ASSERT_EQ(::kill(stopped.pid(), SIGSTOP), 0);
  std::this_thread::sleep_for(4500ms);  // one and a half of its TTLs
  const bool owned = kept.owns_lock();
  const std::string value = healthy.cli("GET", healthy_name);
  const std::string left = healthy.cli("PTTL", healthy_name);
  ::kill(stopped.pid(), SIGCONT);
  EXPECT_TRUE(owned);
  EXPECT_EQ(value, kept.token());
  EXPECT_GT(std::stoll(left), 1000);
  EXPECT_EQ(lost.load(), 0);
  kept.unlock();
  for (auto& l : doomed) l->unlock();
}

TEST(LockSentinel, AWaiterBlockedThroughAFailoverAcquiresWithNoError) {
  redkit::test::SentinelSet set;
  set.wait_ready_for_failover();
  auto client_options = [&] {
    redkit::Options o = redkit::Options::from_uri(set.uri());
    o.command_timeout = 5000ms;  // rides out the failover inside one call
    return o;
  };
  redkit::Redis holder_client(client_options());
  redkit::Redis waiter_client(client_options());
  const std::string name = unique_prefix() + "lock";
  RedisLock<> holder(holder_client, name);
  RedisLock<> waiter(waiter_client, name, slow_fallback());
  ASSERT_TRUE(holder.try_lock());
  RedisServer& old_master = set.current_master();
  std::atomic<bool> got{false};
  std::string error;
  std::thread t([&] {
    try {
      got = waiter.try_lock_for(30s);
      if (got) waiter.unlock();
    } catch (const redkit::Error& e) {
      error = e.what();
    }
  });
  EXPECT_TRUE(wait_until([&] { return !blocked_client_id(old_master).empty(); }, 5s));
  set.wait_replica_synced();
  redkit::Reply r = redkit::test::node_command(set.sentinel_ports().front(), {"SENTINEL", "FAILOVER", set.master_name()});
  EXPECT_FALSE(r.is_error()) << r.error();
  EXPECT_TRUE(wait_until([&] { return &set.current_master() != &old_master; }, 20s));
  RedisServer& new_master = set.current_master();
  // The waiter looked again and blocks on the new master.
  EXPECT_TRUE(wait_until([&] { return !blocked_client_id(new_master).empty(); }, 20s));
  EXPECT_FALSE(got.load());
  const auto t0 = Clock::now();
  holder.unlock();
  t.join();
  EXPECT_EQ(error, "");
  EXPECT_TRUE(got.load());
  EXPECT_LT(ms_since(t0), 5000);
}
