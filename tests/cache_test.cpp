// RedisCache against real servers: stored bytes, TTLs, decode errors,
// single flight across threads and processes, failing loaders, negative
// caching, early refresh, stale serving, batches, binary keys, clear, big
// values, and the zstd wrapper.
#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <redkit/cache.hpp>
#ifdef REDKIT_HAVE_ZSTD
#include <redkit/compressed.hpp>
#endif

#include "support/clients.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::CacheOptions;
using redkit::Command;
using redkit::RedisCache;
using redkit::Reply;
using redkit::test::ChildProcess;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;
using redkit::test::unique_prefix;
using redkit::test::wait_until;
using redkit::test::ms_since;
using Clock = std::chrono::steady_clock;

// A user type with its own serializer: "x,y".
struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point& o) const { return x == o.x && y == o.y; }
};

template <>
struct redkit::Serializer<Point> {
  static std::string serialize(const Point& p) { return std::to_string(p.x) + "," + std::to_string(p.y); }
  static Point deserialize(std::string_view s) {
    const auto comma = s.find(',');
    if (comma == std::string_view::npos) throw std::invalid_argument("no comma in a Point");
    return Point{std::stoi(std::string(s.substr(0, comma))), std::stoi(std::string(s.substr(comma + 1)))};
  }
};

// A serializer passed as a template argument rather than specialised.
struct UpperCase {
  static std::string serialize(const std::string& s) {
    std::string out = s;
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
  }
  static std::string deserialize(std::string_view s) { return "read:" + std::string(s); }
};

namespace {

// The slot Redis Cluster gives key, written out from the spec (not from the
// code under test).
int cluster_slot(std::string_view key) {
  const auto open = key.find('{');
  if (open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  unsigned crc = 0;
  for (unsigned char c : key) {
    crc ^= static_cast<unsigned>(c) << 8;
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return static_cast<int>(crc & 16383);
}

// A gate the test opens, for loaders that must not finish before it says.
class Gate {
 public:
  void open() {
    {
      std::lock_guard<std::mutex> lk(m_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds deadline = 20s) {
    std::unique_lock<std::mutex> lk(m_);
    return cv_.wait_for(lk, deadline, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace

// ---- over every client kind -------------------------------------------------

template <class Kind>
class CacheTest : public ::testing::Test {
 protected:
  using Client = typename Kind::Client;
  template <class T, class S = redkit::Serializer<T>>
  using Cache = RedisCache<T, S, Client>;

  Client client = Kind::make();
  const std::string prefix = unique_prefix() + "cache:";

  // What a plain GET of key returns ("(nil)" for none).
  std::string raw_get(const std::string& key) {
    Reply r = client.command(Command{"GET"}.key(key));
    return r.is_nil() ? "(nil)" : std::string(r.string());
  }
  void raw_set(const std::string& key, const std::string& value) {
    client.command(Command{"SET"}.key(key).arg(value));
  }
  bool raw_exists(const std::string& key) { return client.command(Command{"EXISTS"}.key(key)).integer() == 1; }
  long long raw_pttl(const std::string& key) { return client.command(Command{"PTTL"}.key(key)).integer(); }
  std::string meta_key(const std::string& key) {
    return redkit::detail::cache::side_base(prefix + key) + std::string(redkit::detail::cache::kMetaSuffix);
  }

  static CacheOptions no_xfetch() {
    CacheOptions o;
    o.xfetch_beta = 0;
    return o;
  }
};
TYPED_TEST_SUITE(CacheTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(CacheTest, CustomSerializerRoundTripsAndStoresExactlyItsBytesAtPrefixPlusKey) {
  typename TestFixture::template Cache<Point> points(this->client, this->prefix);
  points.set("p1", Point{3, -4});
  EXPECT_EQ(this->raw_get(this->prefix + "p1"), "3,-4");
  EXPECT_EQ(points.get("p1"), Point({3, -4}));
  EXPECT_EQ(points.get("absent"), std::nullopt);

  typename TestFixture::template Cache<std::string, UpperCase> shouty(this->client, this->prefix + "u:");
  shouty.set("k", "hello");
  EXPECT_EQ(this->raw_get(this->prefix + "u:k"), "HELLO");
  EXPECT_EQ(shouty.get("k"), "read:HELLO");
}

TYPED_TEST(CacheTest, BuiltInSerializersStoreTextThatOtherClientsReadAndRoundTripExactly) {
  typename TestFixture::template Cache<long long> ints(this->client, this->prefix + "i:");
  ints.set("max", std::numeric_limits<long long>::max());
  ints.set("min", std::numeric_limits<long long>::min());
  EXPECT_EQ(this->raw_get(this->prefix + "i:max"), "9223372036854775807");
  EXPECT_EQ(ints.get("min"), std::numeric_limits<long long>::min());
  // A counter written by INCR reads as a number.
  this->client.command(Command{"INCRBY"}.key(this->prefix + "i:counter").arg(41));
  EXPECT_EQ(ints.get("counter"), 41);

  typename TestFixture::template Cache<double> doubles(this->client, this->prefix + "d:");
  for (double v : {0.1, -2.5e-300, 1e300, 1.0 / 3.0, std::numeric_limits<double>::max()}) {
    doubles.set("v", v);
    EXPECT_EQ(doubles.get("v"), v);
  }
  doubles.set("v", 0.1);
  EXPECT_EQ(this->raw_get(this->prefix + "d:v"), "0.1");

  typename TestFixture::template Cache<std::uint64_t> big(this->client, this->prefix + "u:");
  big.set("v", std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(big.get("v"), std::numeric_limits<std::uint64_t>::max());

  typename TestFixture::template Cache<bool> flags(this->client, this->prefix + "b:");
  flags.set("t", true);
  EXPECT_EQ(this->raw_get(this->prefix + "b:t"), "1");
  EXPECT_EQ(flags.get("t"), true);

  typename TestFixture::template Cache<std::vector<unsigned char>> blobs(this->client, this->prefix + "v:");
  const std::vector<unsigned char> blob{0, 255, 13, 10, 7};
  blobs.set("blob", blob);
  EXPECT_EQ(this->raw_get(this->prefix + "v:blob"), std::string("\0\xff\r\n\a", 5));
  EXPECT_EQ(blobs.get("blob"), blob);
}

TYPED_TEST(CacheTest, NumbersRejectTextThatIsNotExactlyOneNumberOfTheType) {
  typename TestFixture::template Cache<int> ints(this->client, this->prefix);
  for (const char* bad : {"12abc", " 12", "+12", "", "99999999999", "1.5"}) {
    this->raw_set(this->prefix + "k", bad);
    EXPECT_THROW(ints.get("k"), redkit::DecodeError) << "'" << bad << "'";
  }
}

TYPED_TEST(CacheTest, ValueExpiresAfterItsTtl) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix);
  cache.set("short", "v", 150ms);
  const auto left = cache.ttl("short");
  ASSERT_TRUE(left.has_value());
  EXPECT_LE(*left, 150ms);
  EXPECT_GT(*left, 0ms);
  EXPECT_TRUE(wait_until([&] { return !cache.contains("short"); }, 5s));
  EXPECT_EQ(cache.get("short"), std::nullopt);
  EXPECT_EQ(cache.ttl("short"), std::nullopt);

  cache.set("default", "v");  // CacheOptions::ttl, 5 minutes
  EXPECT_GT(cache.ttl("default").value(), 4min);
  EXPECT_THROW(cache.set("k", "v", 0ms), redkit::ConfigError);
}

TYPED_TEST(CacheTest, TtlJitterShortensEachTtlWithinItsFraction) {
  CacheOptions o;
  o.ttl = 100s;
  o.ttl_jitter = 0.5;
  typename TestFixture::template Cache<int> cache(this->client, this->prefix, o);
  std::set<long long> seen;
  for (int i = 0; i < 20; ++i) {
    cache.set("k" + std::to_string(i), i);
    const long long ms = cache.ttl("k" + std::to_string(i)).value().count();
    EXPECT_GT(ms, 49000);
    EXPECT_LE(ms, 100000);
    seen.insert(ms / 1000);
  }
  EXPECT_GT(seen.size(), 5u);  // spread out, not one value
}

TYPED_TEST(CacheTest, EraseContainsAndTtl) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix);
  EXPECT_FALSE(cache.contains("k"));
  EXPECT_FALSE(cache.erase("k"));
  cache.set("k", "v", 10s);
  EXPECT_TRUE(cache.contains("k"));
  EXPECT_TRUE(cache.erase("k"));
  EXPECT_FALSE(cache.contains("k"));
  this->raw_set(this->prefix + "forever", "v");
  EXPECT_EQ(cache.ttl("forever"), std::nullopt);  // no expiry
  EXPECT_EQ(cache.get("forever"), "v");
}

TYPED_TEST(CacheTest, UndecodableBytesGiveDecodeErrorNamingTheKeyAndGetOrSetLoadsOverThem) {
  typename TestFixture::template Cache<Point> cache(this->client, this->prefix);
  this->raw_set(this->prefix + "p", "written by an older release");
  try {
    cache.get("p");
    FAIL() << "no DecodeError";
  } catch (const redkit::DecodeError& e) {
    EXPECT_EQ(e.key(), this->prefix + "p");
    EXPECT_NE(std::string(e.what()).find(this->prefix + "p"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no comma"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.stats().errors, 1u);

  int calls = 0;
  EXPECT_EQ(cache.get_or_set("p", [&] { return ++calls, Point{1, 2}; }), Point({1, 2}));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(this->raw_get(this->prefix + "p"), "1,2");
  EXPECT_EQ(cache.get_or_set("p", [&] { return ++calls, Point{9, 9}; }), Point({1, 2}));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.stats().errors, 2u);

  // Many keys: the first bad one is named.
  this->raw_set(this->prefix + "bad", "garbage");
  try {
    cache.get_many({"p", "bad"});
    FAIL() << "no DecodeError";
  } catch (const redkit::DecodeError& e) {
    EXPECT_EQ(e.key(), this->prefix + "bad");
  }
}

TYPED_TEST(CacheTest, SixteenThreadsMissingOneKeyLoadItOnce) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix);
  constexpr int kThreads = 16;
  std::atomic<int> calls{0};
  auto loader = [&] {
    ++calls;
    // Finish only once every other thread is waiting on this load.
    EXPECT_TRUE(wait_until([&] { return cache.stats().coalesced == kThreads - 1; }, 20s));
    return std::string("loaded once");
  };
  std::vector<std::string> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { got[i] = cache.get_or_set("hot", loader); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(cache.stats().loads, 1u);
  EXPECT_EQ(cache.stats().misses, static_cast<std::uint64_t>(kThreads));
  for (const auto& v : got) EXPECT_EQ(v, "loaded once");
  EXPECT_EQ(this->raw_get(this->prefix + "hot"), "loaded once");
}

TYPED_TEST(CacheTest, AThrowingLoaderReachesEveryCallerAndNothingIsCached) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix);
  constexpr int kThreads = 8;
  std::atomic<int> calls{0};
  auto failing = [&]() -> std::string {
    ++calls;
    EXPECT_TRUE(wait_until([&] { return cache.stats().coalesced == kThreads - 1; }, 20s));
    throw std::runtime_error("backend down");
  };
  std::atomic<int> caught{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      try {
        cache.get_or_set("k", failing);
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()) == "backend down") ++caught;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(caught.load(), kThreads);
  EXPECT_EQ(cache.stats().load_failures, 1u);
  EXPECT_FALSE(cache.contains("k"));

  // The lock was released: the next call loads at once.
  const auto t0 = Clock::now();
  EXPECT_EQ(cache.get_or_set("k", [] { return std::string("recovered"); }), "recovered");
  EXPECT_LT(ms_since(t0), 2000);
  EXPECT_EQ(cache.stats().loads, 2u);
}

TYPED_TEST(CacheTest, NegativeCachingRemembersAbsentForItsOwnTtl) {
  CacheOptions o;
  o.negative_ttl = 300ms;
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, o);
  std::atomic<int> calls{0};
  auto lookup = [&]() -> std::optional<std::string> {
    ++calls;
    return std::nullopt;
  };
  const auto t0 = Clock::now();
  EXPECT_EQ(cache.get_or_set("missing", lookup), std::nullopt);
  EXPECT_EQ(cache.get_or_set("missing", lookup), std::nullopt);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(this->raw_get(this->prefix + "missing"), "(nil)");  // nothing at the value's key
  EXPECT_FALSE(cache.contains("missing"));
  // Remembered until negative_ttl has passed, then asked again.
  EXPECT_TRUE(wait_until([&] { return cache.get_or_set("missing", lookup), calls.load() == 2; }, 5s));
  EXPECT_GE(ms_since(t0), 250);

  // A loader that returns T ignores the marker; its value then wins.
  EXPECT_EQ(cache.get_or_set("missing", [] { return std::string("now here"); }), "now here");
  EXPECT_EQ(cache.get_or_set("missing", lookup), "now here");

  // set() drops the marker.
  EXPECT_EQ(cache.get_or_set("other", lookup), std::nullopt);
  cache.set("other", "set later");
  EXPECT_EQ(cache.get_or_set("other", lookup), "set later");

  // An optional loader with a value stores it like any other.
  EXPECT_EQ(cache.get_or_set("found", [] { return std::optional<std::string>("yes"); }), "yes");
  EXPECT_EQ(cache.get("found"), "yes");
}

TYPED_TEST(CacheTest, WithoutNegativeTtlAnAbsentResultIsNotRemembered) {
  typename TestFixture::template Cache<int> cache(this->client, this->prefix);
  int calls = 0;
  auto lookup = [&]() -> std::optional<int> {
    ++calls;
    return std::nullopt;
  };
  EXPECT_EQ(cache.get_or_set("k", lookup), std::nullopt);
  EXPECT_EQ(cache.get_or_set("k", lookup), std::nullopt);
  EXPECT_EQ(calls, 2);
}

TYPED_TEST(CacheTest, EarlyRefreshEightThreadsAcrossExpirySeeNoMissAndCauseOneReload) {
  CacheOptions o;
  // Above 1, so that even a slow (sanitized, loaded) reader triggers the
  // refresh while the old value has more than one load time left.
  o.xfetch_beta = 2.0;
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, o);
  auto slow = [](std::string v) {
    return [v] {
      std::this_thread::sleep_for(40ms);  // the backend's cost, which XFetch measures
      return v;
    };
  };
  ASSERT_EQ(cache.get_or_set("hot", slow("v1"), 800ms), "v1");
  const auto stored = Clock::now();
  const auto before = cache.stats();

  std::atomic<int> bad{0};
  std::atomic<int> reads{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      // Read until well past the first value's expiry. The reload's 60 s
      // TTL leaves no chance of a second one.
      while (Clock::now() < stored + 1200ms) {
        const std::string v = cache.get_or_set("hot", slow("v2"), 60s);
        if (v != "v1" && v != "v2") ++bad;
        ++reads;
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto after = cache.stats();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 8);
  EXPECT_EQ(after.misses - before.misses, 0u) << "a reader missed";
  EXPECT_EQ(after.loads - before.loads, 1u);
  EXPECT_EQ(after.early_refreshes - before.early_refreshes, 1u);
  EXPECT_EQ(this->raw_get(this->prefix + "hot"), "v2");
  EXPECT_GT(this->raw_pttl(this->prefix + "hot"), 50000);
}

TYPED_TEST(CacheTest, AFailedEarlyRefreshReturnsTheCurrentValueInsteadOfThrowing) {
  CacheOptions o;
  o.xfetch_beta = 1e12;  // with a load time stored, every read is due for an early refresh
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix, o);
  ASSERT_EQ(cache.get_or_set("k", [] { return std::string("v1"); }, 60s), "v1");
  int calls = 0;
  auto failing = [&]() -> std::string {
    ++calls;
    throw std::runtime_error("backend down");
  };
  for (int i = 0; i < 20; ++i) EXPECT_EQ(cache.get_or_set("k", failing, 60s), "v1") << "call " << i;
  EXPECT_EQ(calls, 20);  // each call tried (the lock was released after each failure)
  const auto s = cache.stats();
  EXPECT_EQ(s.early_refreshes, 20u);
  EXPECT_EQ(s.load_failures, 20u);
  EXPECT_EQ(this->raw_get(this->prefix + "k"), "v1");  // the value is untouched
  EXPECT_GT(this->raw_pttl(this->prefix + "k"), 50000);

  // A refresh that works replaces it.
  EXPECT_EQ(cache.get_or_set("k", [] { return std::string("v2"); }, 60s), "v2");
  EXPECT_EQ(this->raw_get(this->prefix + "k"), "v2");
}

TYPED_TEST(CacheTest, GetOrSetStoresTheLoadTimeBesideTheValueNotInIt) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix);
  cache.get_or_set("k", [] {
    std::this_thread::sleep_for(30ms);
    return std::string("plain");
  });
  EXPECT_EQ(this->raw_get(this->prefix + "k"), "plain");
  const std::string meta = this->raw_get(this->meta_key("k"));
  EXPECT_GE(std::stoll(meta), 30) << meta;
  EXPECT_LE(this->raw_pttl(this->meta_key("k")), this->raw_pttl(this->prefix + "k") + 50);
}

TYPED_TEST(CacheTest, AnotherCacheObjectWaitsForTheLoadAndIsWokenWhenTheValueLands) {
  // Two cache objects share nothing in-process, like two processes.
  CacheOptions o = TestFixture::no_xfetch();
  o.fill_lock_ttl = 20s;  // a waiter woken only by the lock's expiry would take 20 s
  o.wait_timeout = 20s;
  typename TestFixture::template Cache<std::string> first(this->client, this->prefix, o);
  typename TestFixture::template Cache<std::string> second(TypeParam::make(), this->prefix, o);
  Gate gate;
  std::atomic<bool> loading{false};
  std::thread loader_thread([&] {
    first.get_or_set("k", [&] {
      loading = true;
      gate.wait();
      return std::string("from first");
    });
  });
  ASSERT_TRUE(wait_until([&] { return loading.load(); }, 10s));
  std::atomic<bool> second_called{false};
  std::string got;
  Clock::time_point returned;
  std::thread waiter([&] {
    got = second.get_or_set("k", [&] {
      second_called = true;
      return std::string("from second");
    });
    returned = Clock::now();
  });
  // The waiter is parked in BLPOP on the server.
  ASSERT_TRUE(wait_until(
      [&] {
        // INFO of the node that owns the key (and its wake list).
        const std::string info(
            this->client.command(Command{"INFO"}.arg("clients").route(this->prefix + "k")).string_copy());
        return info.find("blocked_clients:1") != std::string::npos;
      },
      10s));
  const auto opened = Clock::now();
  gate.open();
  loader_thread.join();
  waiter.join();
  EXPECT_EQ(got, "from first");
  EXPECT_FALSE(second_called.load());
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(returned - opened).count(), 2000);
  EXPECT_EQ(second.stats().loads, 0u);
}

TYPED_TEST(CacheTest, StaleServingAnswersWithTheOldValueWhileAnotherCallerLoads) {
  CacheOptions o = TestFixture::no_xfetch();
  o.stale_ttl = 10s;
  typename TestFixture::template Cache<std::string> first(this->client, this->prefix, o);
  typename TestFixture::template Cache<std::string> second(TypeParam::make(), this->prefix, o);
  first.set("k", "old", 100ms);
  ASSERT_TRUE(wait_until([&] { return !first.contains("k"); }, 5s));
  EXPECT_EQ(first.get("k"), std::nullopt);  // get() never returns the stale copy

  Gate gate;
  std::atomic<bool> loading{false};
  std::string loaded;
  std::thread loader_thread([&] {
    loaded = first.get_or_set("k", [&] {
      loading = true;
      gate.wait();
      return std::string("new");
    });
  });
  ASSERT_TRUE(wait_until([&] { return loading.load(); }, 10s));
  bool second_called = false;
  EXPECT_EQ(second.get_or_set("k", [&] { return second_called = true, std::string("x"); }), "old");
  EXPECT_FALSE(second_called);
  EXPECT_EQ(second.stats().stale_served, 1u);
  // A thread of the loading object is served the stale copy too.
  EXPECT_EQ(first.get_or_set("k", [] { return std::string("y"); }), "old");
  gate.open();
  loader_thread.join();
  EXPECT_EQ(loaded, "new");
  EXPECT_EQ(second.get("k"), "new");
  EXPECT_EQ(second.get_or_set("k", [] { return std::string("z"); }), "new");
}

TYPED_TEST(CacheTest, GetManyKeepsOrderAndReportsMisses) {
  typename TestFixture::template Cache<int> cache(this->client, this->prefix);
  cache.set_many(std::map<std::string, int>{{"a", 1}, {"c", 3}});
  std::vector<std::pair<std::string, int>> more{{"e", 5}};
  cache.set_many(more, 10s);
  EXPECT_LE(cache.ttl("e").value(), 10s);
  const std::vector<std::string> keys{"e", "b", "a", "c", "d", "a"};
  const auto got = cache.get_many(keys);
  ASSERT_EQ(got.size(), keys.size());
  EXPECT_EQ(got[0], 5);
  EXPECT_EQ(got[1], std::nullopt);
  EXPECT_EQ(got[2], 1);
  EXPECT_EQ(got[3], 3);
  EXPECT_EQ(got[4], std::nullopt);
  EXPECT_EQ(got[5], 1);
  EXPECT_TRUE(cache.get_many(std::vector<std::string>{}).empty());
  const auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 4u);
  EXPECT_EQ(stats.misses, 2u);
}

TYPED_TEST(CacheTest, BinaryKeysAndValuesRoundTripThroughEveryOperation) {
  typename TestFixture::template Cache<std::string> cache(this->client, this->prefix);
  const std::string value("v\0\r\n\xff end", 9);
  // NUL, CR LF, and braces that make every kind of side key name.
  const std::vector<std::string> keys{std::string("a\0b", 3), "line\r\nbreak", "{tagged}", "x}y", "x{}y", "{", "}",
                                      "", "{a}b}c", "no{close"};
  for (const auto& k : keys) {
    SCOPED_TRACE(k);
    cache.set(k, value);
    EXPECT_EQ(this->raw_get(this->prefix + k), value);
    EXPECT_EQ(cache.get(k), value);
    EXPECT_TRUE(cache.erase(k));
    EXPECT_EQ(cache.get_or_set(k, [&] { return value + k; }), value + k);
    EXPECT_EQ(this->raw_get(this->prefix + k), value + k);
    EXPECT_TRUE(this->raw_exists(this->meta_key(k)));
  }
  const auto many = cache.get_many(keys);
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(many[i], value + keys[i]);
}

TYPED_TEST(CacheTest, ClearRemovesThePrefixAndItsSideKeysOnly) {
  // Glob characters in the prefix are matched literally: "a*:" must not
  // match the neighbour "aZZ:".
  const std::string base = this->prefix;
  typename TestFixture::template Cache<std::string> mine(this->client, base + "a*:");
  typename TestFixture::template Cache<std::string> neighbour(this->client, base + "aZZ:");
  for (int i = 0; i < 2500; ++i) mine.set("k" + std::to_string(i), "v");
  mine.get_or_set("loaded", [] { return std::string("v"); });
  mine.get_or_set("{tag}", [] { return std::string("v"); });
  neighbour.set("k1", "v");
  neighbour.get_or_set("loaded", [] { return std::string("v"); });
  const std::string lookalike = "{" + base + "a*:zzz";  // not a side key of ours
  // Side-key shaped, but the tag is the one for the next slot, not the value's.
  const std::string qq = base + "a*:qq";
  const std::string wrong_tag =
      "{" + redkit::detail::cache::slot_tag((redkit::hash_slot(qq) + 1) % 16384) + "}" + qq +
      ":rk-meta";
  EXPECT_EQ(redkit::detail::cache::value_key_of_side_key(wrong_tag), std::nullopt);
  this->raw_set(wrong_tag, "v");
  this->raw_set(lookalike, "v");

  EXPECT_EQ(mine.clear(), 2500u + 2u + 2u);  // values and the two meta side keys
  EXPECT_EQ(mine.get("k7"), std::nullopt);
  EXPECT_FALSE(this->raw_exists(redkit::detail::cache::side_base(base + "a*:loaded") + ":rk-meta"));
  EXPECT_FALSE(this->raw_exists(redkit::detail::cache::side_base(base + "a*:{tag}") + ":rk-meta"));
  EXPECT_EQ(neighbour.get("k1"), "v");
  EXPECT_EQ(neighbour.get("loaded"), "v");
  EXPECT_TRUE(this->raw_exists(redkit::detail::cache::side_base(base + "aZZ:loaded") + ":rk-meta"));
  EXPECT_TRUE(this->raw_exists(lookalike));
  EXPECT_TRUE(this->raw_exists(wrong_tag));
  EXPECT_EQ(mine.clear(), 0u);

  // Every glob character, and a '}' that forces the slot-tag form of side keys.
  typename TestFixture::template Cache<std::string> odd(this->client, base + "?[x]\\}:");
  odd.set("k", "v");
  odd.get_or_set("loaded", [] { return std::string("v"); });
  EXPECT_EQ(odd.clear(), 3u);
  EXPECT_FALSE(odd.contains("k"));
  EXPECT_EQ(neighbour.clear(), 3u);
}

TYPED_TEST(CacheTest, AHundredMebibyteValueRoundTrips) {
  // command_timeout bounds a whole command, so moving 100 MiB (slow under
  // the sanitizers) needs a timeout sized for it.
  auto client = TypeParam::make([](redkit::Options& o) { o.command_timeout = 60s; });
  typename TestFixture::template Cache<std::string> cache(client, this->prefix);
  std::string value(100u << 20, '\0');
  for (std::size_t i = 0; i < value.size(); i += 4096) value[i] = static_cast<char>(i / 4096);
  cache.set("big", value, 60s);
  {
    const std::optional<std::string> got = cache.get("big");
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->size(), value.size());
    EXPECT_TRUE(*got == value);
  }
  EXPECT_TRUE(cache.erase("big"));
}

TYPED_TEST(CacheTest, OptionsAreCheckedWhenTheCacheIsMade) {
  auto bad = [&](auto change) {
    CacheOptions o;
    change(o);
    EXPECT_THROW((typename TestFixture::template Cache<int>(this->client, this->prefix, o)), redkit::ConfigError);
  };
  bad([](CacheOptions& o) { o.ttl = 0ms; });
  bad([](CacheOptions& o) { o.ttl_jitter = 1.0; });
  bad([](CacheOptions& o) { o.ttl_jitter = -0.1; });
  bad([](CacheOptions& o) { o.negative_ttl = 0ms; });
  bad([](CacheOptions& o) { o.xfetch_beta = -1; });
  bad([](CacheOptions& o) { o.stale_ttl = -1ms; });
  bad([](CacheOptions& o) { o.fill_lock_ttl = 0ms; });
  bad([](CacheOptions& o) { o.wait_timeout = -1ms; });
}

#ifdef REDKIT_HAVE_ZSTD
TYPED_TEST(CacheTest, CompressedStoresLargeValuesAsZstdFramesAndStillReadsPlainOnes) {
  using Zipped = redkit::Compressed<redkit::Serializer<std::string>, 1024>;
  typename TestFixture::template Cache<std::string> plain(this->client, this->prefix);
  typename TestFixture::template Cache<std::string, Zipped> zipped(this->client, this->prefix);
  const std::string magic("\x28\xB5\x2F\xFD", 4);

  const std::string large(64 * 1024, 'a');
  zipped.set("large", large);
  const std::string stored = this->raw_get(this->prefix + "large");
  EXPECT_EQ(stored.substr(0, 4), magic);
  EXPECT_LT(stored.size(), 1024u);
  EXPECT_EQ(zipped.get("large"), large);

  zipped.set("small", "tiny");
  EXPECT_EQ(this->raw_get(this->prefix + "small"), "tiny");
  EXPECT_EQ(zipped.get("small"), "tiny");

  // Written before compression was turned on: read as they are, even one
  // that begins with the magic bytes.
  plain.set("old", std::string(5000, 'b'));
  plain.set("old-magic", magic + "not a frame");
  EXPECT_EQ(zipped.get("old"), std::string(5000, 'b'));
  EXPECT_EQ(zipped.get("old-magic"), magic + "not a frame");

  // Short, but beginning with the magic: stored as a frame, so never
  // mistaken on the way back.
  zipped.set("new-magic", magic + "x");
  EXPECT_EQ(this->raw_get(this->prefix + "new-magic").substr(0, 4), magic);
  EXPECT_NE(this->raw_get(this->prefix + "new-magic"), magic + "x");
  EXPECT_EQ(zipped.get("new-magic"), magic + "x");

  // A frame with a damaged body fails its checksum.
  std::string damaged = stored;
  damaged[damaged.size() - 6] ^= 0x55;
  this->raw_set(this->prefix + "damaged", damaged);
  EXPECT_THROW(zipped.get("damaged"), redkit::DecodeError);
}
#endif

// ---- a single server --------------------------------------------------------

TEST(Cache, FourProcessesMissingOneKeyLoadItOnceAndAreWokenWhenItLands) {
  RedisServer& server = redkit::test::shared_server();
  const std::string prefix = unique_prefix() + "cache:";
  const std::string loads = prefix + "loads";
  const std::string start = prefix + "start";
  constexpr int kProcesses = 4;
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("cache_worker"),
        std::vector<std::string>{"load", server.uri(), prefix, "hot", loads, start, "300"}));
  }
  server.cli({"RPUSH", start, "go", "go", "go", "go"});
  std::set<std::string> values;
  for (auto& child : children) {
    ASSERT_EQ(child->wait(60s), 0) << child->output();
    const std::string& out = child->output();
    values.insert(out.substr(0, out.find(' ')));
    // Woken by the loader's wake-up, not by the 20 s fill lock running out.
    const long long ms = std::stoll(out.substr(out.find("ms=") + 3));
    EXPECT_LT(ms, 5000) << out;
  }
  EXPECT_EQ(server.cli("GET", loads), "1");
  EXPECT_EQ(values.size(), 1u);
}

TEST(Cache, ALoaderProcessKilledMidLoadDelaysOthersOnlyUntilItsFillLockRunsOut) {
  RedisServer& server = redkit::test::shared_server();
  const std::string prefix = unique_prefix() + "cache:";
  const std::string flag = prefix + "loading";
  ChildProcess crashed(redkit::test::helper_path("cache_worker"), {"crash", server.uri(), prefix, "k", flag, "600"});
  ASSERT_TRUE(wait_until([&] { return server.cli("EXISTS", flag) == "1"; }, 10s));
  crashed.kill();
  crashed.wait(10s);

  redkit::Redis client(server.uri());
  CacheOptions o;
  o.wait_timeout = 20s;
  RedisCache<std::string> cache(client, prefix, o);
  const auto t0 = Clock::now();
  EXPECT_EQ(cache.get_or_set("k", [] { return std::string("after the crash"); }), "after the crash");
  EXPECT_LT(ms_since(t0), 3000);
  EXPECT_EQ(cache.stats().loads, 1u);
}

TEST(Cache, AValueTheServerRefusesGivesAnErrorNamingKeyAndSize) {
  ServerOptions so;
  so.extra_args = {"--proto-max-bulk-len", "1mb"};
  RedisServer server(so);
  redkit::Redis client(server.uri());
  RedisCache<std::string> cache(client, "big:");
  try {
    cache.set("k", std::string(2u << 20, 'x'));
    FAIL() << "a 2 MiB value was accepted";
  } catch (const redkit::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("2097152 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find("'big:k'"), std::string::npos) << what;
    EXPECT_NE(what.find("proto-max-bulk-len"), std::string::npos) << what;
  }
  // The cache goes on working.
  cache.set("k", "small");
  EXPECT_EQ(cache.get("k"), "small");
}

TEST(CacheKeys, SideKeysOfDifferentValueKeysNeverCollide) {
  // The pairs that collided before: prefix "p:" + key "x" beside prefix
  // "{p:" + key "x}"; the empty value key beside "3560"; "{T}K" beside a
  // tagged key spelled the same.
  const std::vector<std::pair<std::string, std::string>> pairs{
      {"p:x", "{p:x}"}, {"", "3560"}, {"a}b", "{" + redkit::detail::cache::slot_tag(cluster_slot("a}b")) + "}a}b"}};
  for (const auto& [a, b] : pairs) {
    SCOPED_TRACE(a + " / " + b);
    EXPECT_NE(redkit::detail::cache::side_base(a), redkit::detail::cache::side_base(b));
  }
  // Every side key decodes back to its value key, and only to it.
  const std::vector<std::string> keys{"plain", "user:{42}", "a}b", "x{}y", "{", "}", "", "a{b", "{p:x}", "p:x",
                                      "3560", "{000000}k:rk-meta", std::string("n\0ul}", 5)};
  for (const std::string& key : keys) {
    SCOPED_TRACE(key);
    for (std::string_view suffix : redkit::detail::cache::kSideSuffixes) {
      const std::string side = redkit::detail::cache::side_key(redkit::detail::cache::side_base(key), suffix);
      const auto back = redkit::detail::cache::value_key_of_side_key(side);
      ASSERT_TRUE(back.has_value()) << side;
      EXPECT_EQ(*back, key);
    }
  }
  EXPECT_FALSE(redkit::detail::cache::value_key_of_side_key("{p:x}:rk-meta").has_value());
  EXPECT_FALSE(redkit::detail::cache::value_key_of_side_key("{12345}k:rk-meta").has_value());
}

TEST(CacheKeys, SideKeysShareTheValueKeysHashSlotAndNeverStartWithAnUntaggedKey) {
  const std::vector<std::string> keys{"plain", "user:{42}", "a}b", "x{}y", "{",     "}",
                                      "",      "a{b",       std::string("n\0ul}", 5), "{}{x}", "tail{"};
  for (const std::string& key : keys) {
    SCOPED_TRACE(key);
    const std::string base = redkit::detail::cache::side_base(key);
    const std::string meta = base + ":rk-meta";
    EXPECT_EQ(cluster_slot(meta), cluster_slot(key));
    EXPECT_NE(meta, key);
  }
}

TEST(CacheKeys, GlobEscapeMatchesThePrefixLiterally) {
  EXPECT_EQ(redkit::detail::cache::glob_escape("a*b?c[d]e\\f{g}"), "a\\*b\\?c\\[d\\]e\\\\f{g}");
}

TEST(SingleFlight, AnExceptionReachesEveryWaiterAndTheNextCallRunsAfresh) {
  redkit::detail::SingleFlight<int> flight;
  std::atomic<std::uint64_t> joined{0};
  std::atomic<int> runs{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      try {
        flight.run("k", [&]() -> int {
          ++runs;
          EXPECT_TRUE(wait_until([&] { return joined.load() == 3; }, 20s));
          throw std::logic_error("no");
        }, joined);
      } catch (const std::logic_error&) {
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(failures.load(), 4);
  EXPECT_FALSE(flight.busy("k"));
  EXPECT_EQ(flight.run("k", [] { return 7; }, joined), 7);
}
