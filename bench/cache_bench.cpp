// RedisCache beside raw hiredis in the same run, against one redis-server
// this program starts on CPU 1:
//  - get() hit of a 100-byte string vs raw GET (redisCommandArgv);
//  - get_many() of 100 keys vs raw MGET;
//  each raw side copies the values into the same result type
//  (std::optional<std::string>, a vector of them), as the cache returns;
//  - a stampede: 32 threads ask for one absent key whose loader takes 50 ms,
//  through get_or_set vs the naive get, load, set; loads and latency, with
//  a backend that serves any number of loads at once and with one that
//  serves one at a time;
//  - the near cache: a hit from memory vs raw GET (bodies of 1,000 hits vs
//  one GET), get_many of 100 near hits vs raw MGET, the latency of single
//  hits (p50, p99), 2 threads hitting the same keys on CPUs 0 and 1 vs one
//  thread (scaling), the invalidation delay (a raw client's SET
//  acknowledged -> a reader in this process sees the new value; p50, p99),
//  and what tracking costs the server per write with N near caches
//  subscribed (commands, server CPU from INFO cpu, and this process's CPU);
//  the hit rate of a hot-key (Zipf) workload whose working set is ten times
//  max_entries, beside the best any policy could do (the hottest keys'
//  share of the reads).
//
//   scripts/bench --benchmark_filter=cache
//   (or: taskset -c 1 build/bench/bench/redkit_bench_cache)
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <redkit/cache.hpp>

#include "bench_common.hpp"
#include "support/server.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// Raw hiredis, doing what a hand-written cache read does: one command, the
// value(s) copied out of the reply.
class RawReader {
 public:
  RawReader(const std::string& host, int port) : c_(redisConnect(host.c_str(), port)) {
    if (!c_ || c_->err) throw std::runtime_error("raw hiredis: cannot connect");
  }
  ~RawReader() { redisFree(c_); }
  RawReader(const RawReader&) = delete;
  RawReader& operator=(const RawReader&) = delete;

  std::optional<std::string> get(const std::string& key) {
    const char* argv[] = {"GET", key.data()};
    const size_t lens[] = {3, key.size()};
    redisReply* r = command(2, argv, lens);
    std::optional<std::string> out;
    if (r->type == REDIS_REPLY_STRING) out.emplace(r->str, r->len);
    freeReplyObject(r);
    return out;
  }

  std::vector<std::optional<std::string>> mget(const std::vector<std::string>& keys) {
    argv_.assign(1, "MGET");
    lens_.assign(1, 4);
    for (const auto& k : keys) {
      argv_.push_back(k.data());
      lens_.push_back(k.size());
    }
    redisReply* r = command(static_cast<int>(argv_.size()), argv_.data(), lens_.data());
    std::vector<std::optional<std::string>> out(r->elements);
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type == REDIS_REPLY_STRING) out[i].emplace(e->str, e->len);
    }
    freeReplyObject(r);
    return out;
  }

 private:
  redisReply* command(int argc, const char** argv, const size_t* lens) {
    auto* r = static_cast<redisReply*>(redisCommandArgv(c_, argc, argv, lens));
    if (!r) throw std::runtime_error("raw hiredis: I/O error");
    if (r->type == REDIS_REPLY_ERROR) {
      freeReplyObject(r);
      throw std::runtime_error("raw hiredis: error reply");
    }
    return r;
  }

  redisContext* c_;
  std::vector<const char*> argv_;
  std::vector<size_t> lens_;
};

// One stampede: `threads` callers released together on an absent key.
struct Stampede {
  int loads = 0;
  std::vector<double> latencies_ms;
};

template <class Call>
Stampede run_stampede(int threads, Call call) {
  Stampede result;
  std::atomic<int> loads{0};
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  std::vector<double> latencies(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return go; });
      }
      const auto t0 = Clock::now();
      call(loads);
      latencies[static_cast<std::size_t>(i)] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    });
  }
  {
    std::lock_guard<std::mutex> lk(m);
    go = true;
  }
  cv.notify_all();
  for (auto& t : pool) t.join();
  result.loads = loads.load();
  result.latencies_ms = std::move(latencies);
  return result;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

struct StampedeSummary {
  std::string name;
  std::vector<int> loads;
  std::vector<double> latencies_ms;
};
std::vector<StampedeSummary> stampede_results;

void print_stampede_summary() {
  if (std::none_of(stampede_results.begin(), stampede_results.end(),
                   [](const StampedeSummary& s) { return !s.loads.empty(); })) {
    return;  // filtered out
  }
  std::printf("\n%-36s %12s %10s %10s %10s   (32 threads, loader 50 ms)\n", "stampede", "loads/round", "p50",
              "p99", "max");
  for (const auto& s : stampede_results) {
    if (s.loads.empty()) continue;  // filtered out
    double loads = 0;
    for (int l : s.loads) loads += l;
    std::printf("%-36s %12.1f %8.1fms %8.1fms %8.1fms   (%zu rounds)\n", s.name.c_str(),
                loads / static_cast<double>(s.loads.size()), percentile(s.latencies_ms, 0.50),
                percentile(s.latencies_ms, 0.99), percentile(s.latencies_ms, 1.0), s.loads.size());
  }
}

// ---- near cache ---------------------------------------------------------------

using redkit::bench::cpu_seconds;
using redkit::bench::median;

double ns_since(Clock::time_point t0) { return std::chrono::duration<double, std::nano>(Clock::now() - t0).count(); }

void pin_this_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// A number from an INFO section ("used_cpu_sys", "total_commands_processed").
double info_number(redkit::Redis& redis, const char* section, const std::string& field) {
  return redkit::bench::info_number(redis.command(redkit::Command{"INFO"}.arg(section)).string_copy(), field);
}

// The server's CPU seconds (system + user), both from one INFO cpu reply.
double server_cpu_seconds(redkit::Redis& redis) {
  const std::string info = redis.command(redkit::Command{"INFO"}.arg("cpu")).string_copy();
  return redkit::bench::info_number(info, "used_cpu_sys") + redkit::bench::info_number(info, "used_cpu_user");
}

struct NearSummary {
  std::vector<double> hit_ns;         // single near hits, timed one by one
  std::vector<double> scaling;        // 2-thread ops/s / 1-thread ops/s, per repeat
  std::vector<double> one_thread;     // ops/s
  std::vector<double> two_threads;    // ops/s
  std::vector<double> delay_us;       // invalidation delay
  struct Cost {
    int caches;
    double commands_per_write, server_cpu_us_per_write, client_cpu_us_per_write;
  };
  std::vector<Cost> costs;
  struct HotKeys {
    std::size_t keys, max_entries, reads;
    double hit_rate, ideal;
  };
  std::vector<HotKeys> hot;
};
NearSummary near_summary;

// Hits of `keys` from `threads` threads at once (thread i on cpus[i]);
// returns ops/s of all of them together.
template <class Cache>
double near_hit_throughput(Cache& cache, const std::vector<std::string>& keys, const std::vector<int>& cpus,
                           int hits_per_thread) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < cpus.size(); ++t) {
    threads.emplace_back([&, t] {
      pin_this_thread(cpus[t]);
      ++ready;
      while (!go) std::this_thread::yield();
      for (int i = 0; i < hits_per_thread; ++i) benchmark::DoNotOptimize(cache.get(keys[(i + t * 7) % keys.size()]));
    });
  }
  while (ready < static_cast<int>(cpus.size())) std::this_thread::yield();
  const auto t0 = Clock::now();
  go = true;
  for (auto& th : threads) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(hits_per_thread) * static_cast<double>(cpus.size()) / secs;
}

void print_near_summary() {
  const NearSummary& n = near_summary;
  if (!n.hit_ns.empty()) {
    std::vector<double> v = n.hit_ns;
    std::sort(v.begin(), v.end());
    std::printf("\nnear hit latency, one by one (clock reads included): p50 %.0f ns, p99 %.0f ns, p99.9 %.0f ns (%zu hits)\n",
                v[v.size() / 2], v[v.size() * 99 / 100], v[v.size() * 999 / 1000], v.size());
  }
  if (!n.scaling.empty()) {
    std::printf("near hits, same 100 keys: 1 thread (CPU 1) %.2f M/s, 2 threads (CPUs 0, 1) %.2f M/s: scaling %.2fx (median of %zu)\n",
                median(n.one_thread) / 1e6, median(n.two_threads) / 1e6, median(n.scaling), n.scaling.size());
  }
  if (!n.delay_us.empty()) {
    std::vector<double> v = n.delay_us;
    std::sort(v.begin(), v.end());
    std::printf("invalidation delay (raw SET acknowledged -> near cache reader sees the new value): p50 %.0f us, p99 %.0f us, max %.0f us (%zu writes)\n",
                v[v.size() / 2], v[v.size() * 99 / 100], v.back(), v.size());
  }
  if (!n.costs.empty()) {
    std::printf("\n%-28s %14s %18s %18s\n", "tracking cost per SET", "commands", "server CPU", "this process CPU");
    for (const auto& c : n.costs) {
      std::printf("%2d near caches subscribed     %14.3f %16.2fus %16.2fus\n", c.caches, c.commands_per_write,
                  c.server_cpu_us_per_write, c.client_cpu_us_per_write);
    }
  }
  for (const auto& h : n.hot) {
    std::printf("\nhot keys (Zipf s=1 over %zu keys, max_entries %zu, %zu reads after warm-up): near hit rate %.1f %%, "
                "best possible (the %zu hottest keys' share) %.1f %%\n",
                h.keys, h.max_entries, h.reads, h.hit_rate * 100, h.max_entries, h.ideal * 100);
  }
}

}  // namespace

int main(int argc, char** argv) {
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  redkit::test::RedisServer server(so);

  redkit::Options o = redkit::Options::from_uri(server.uri());
  o.pool_size = 1;  // one connection on each side
  redkit::Redis redis(o);
  RawReader raw(server.host(), server.port());
  auto& pairs = redkit::bench::Pairs::instance();

  // get() hit of a 100-byte string.
  redkit::RedisCache<std::string> cache(redis, "bench:cache:");
  cache.set("one", std::string(100, 'v'), std::chrono::hours(1));
  const std::string raw_key = "bench:cache:one";
  pairs.add("cache_get_hit_100B", [&] { benchmark::DoNotOptimize(cache.get("one")); },
            [&] { benchmark::DoNotOptimize(raw.get(raw_key)); }, 1, 20000, 20);

  // get_many() of 100 keys.
  std::vector<std::string> keys, raw_keys;
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 100; ++i) {
    keys.push_back("many:" + std::to_string(i));
    raw_keys.push_back("bench:cache:" + keys.back());
    items.emplace_back(keys.back(), std::string(100, static_cast<char>('a' + i % 26)));
  }
  cache.set_many(items, std::chrono::hours(1));
  pairs.add("cache_get_many_100x100B", [&] { benchmark::DoNotOptimize(cache.get_many(keys)); },
            [&] { benchmark::DoNotOptimize(raw.mget(raw_keys)); }, 100, 2000, 20);

  // ---- the near cache ----
  redkit::CacheOptions near_options;
  near_options.near_cache.max_entries = 10000;
  redkit::Options near_client_options = redkit::Options::from_uri(server.uri());
  near_client_options.pool_size = 1;
  redkit::Redis near_redis(near_client_options);
  redkit::RedisCache<std::string> near(near_redis, "bench:cache:", near_options);
  // Read until each key is a near hit (the first read of a key keeps it).
  auto warm = [&](const std::string& key) {
    for (int i = 0; i < 1000; ++i) {
      const auto before = near.stats().near_hits;
      near.get(key);
      if (near.stats().near_hits > before) return;
    }
    throw std::runtime_error("near cache: " + key + " was never kept");
  };
  warm("one");
  for (const auto& k : keys) warm(k);
  pairs.add(
      "near_get_hit_100B",
      [&] {
        for (int i = 0; i < 1000; ++i) benchmark::DoNotOptimize(near.get("one"));
      },
      1000, [&] { benchmark::DoNotOptimize(raw.get(raw_key)); }, 1, 2000, 20);
  pairs.add(
      "near_get_many_100x100B", [&] { benchmark::DoNotOptimize(near.get_many(keys)); }, 100,
      [&] { benchmark::DoNotOptimize(raw.mget(raw_keys)); }, 100, 2000, 20);

  benchmark::RegisterBenchmark("near/hit_latency", [&](benchmark::State& st) {
    for (auto _ : st) {
      for (int i = 0; i < 200000; ++i) {
        const auto t0 = Clock::now();
        benchmark::DoNotOptimize(near.get("one"));
        near_summary.hit_ns.push_back(ns_since(t0));
      }
    }
  })->Iterations(1)->Unit(benchmark::kMillisecond);

  benchmark::RegisterBenchmark("near/two_threads_same_keys", [&](benchmark::State& st) {
    for (auto _ : st) {
      for (int r = 0; r < 5; ++r) {
        const double one = near_hit_throughput(near, keys, {1}, 2000000);
        const double two = near_hit_throughput(near, keys, {0, 1}, 2000000);
        near_summary.one_thread.push_back(one);
        near_summary.two_threads.push_back(two);
        near_summary.scaling.push_back(two / one);
      }
    }
    pin_this_thread(1);
  })->Iterations(1)->Unit(benchmark::kMillisecond);

  benchmark::RegisterBenchmark("near/invalidation_delay", [&](benchmark::State& st) {
    redkit::bench::RawHiredis writer(server.host(), server.port());
    redkit::RedisCache<std::string> reader(near_redis, "bench:inv:", near_options);
    for (auto _ : st) {
      for (int v = 0; v <= 1000; ++v) {
        // The reader holds the current version in memory...
        const std::string current = std::to_string(v);
        for (int i = 0; i < 100000; ++i) {
          const auto before = reader.stats().near_hits;
          if (reader.get("k") == current && reader.stats().near_hits > before) break;
        }
        // ... when a raw client writes the next one.
        const std::string next = std::to_string(v + 1);
        writer.command({"SET", "bench:inv:k", next});
        const auto acked = Clock::now();
        while (reader.get("k") != next) sched_yield();
        if (v > 0) near_summary.delay_us.push_back(ns_since(acked) / 1000.0);
      }
    }
  })->Iterations(1)->Unit(benchmark::kMillisecond);

  benchmark::RegisterBenchmark("near/tracking_cost", [&](benchmark::State& st) {
    redkit::bench::RawHiredis writer(server.host(), server.port());
    for (auto _ : st) {
      for (int n : {0, 1, 4, 16}) {
        std::vector<std::unique_ptr<redkit::Redis>> clients;
        std::vector<std::unique_ptr<redkit::RedisCache<std::string>>> caches;
        for (int i = 0; i < n; ++i) {
          clients.push_back(std::make_unique<redkit::Redis>(near_client_options));
          caches.push_back(std::make_unique<redkit::RedisCache<std::string>>(*clients.back(), "bench:track:", near_options));
          caches.back()->get("k0");  // starts tracking
        }
        constexpr int kWrites = 20000;
        const double cpu0 = server_cpu_seconds(redis);
        const double cmd0 = info_number(redis, "stats", "total_commands_processed");
        const double self0 = cpu_seconds(RUSAGE_SELF) - cpu_seconds(RUSAGE_THREAD);
        for (int w = 0; w < kWrites; ++w) writer.command({"SET", "bench:track:k" + std::to_string(w % 100), "v"});
        const double self1 = cpu_seconds(RUSAGE_SELF) - cpu_seconds(RUSAGE_THREAD);
        const double cmd1 = info_number(redis, "stats", "total_commands_processed");
        const double cpu1 = server_cpu_seconds(redis);
        // The INFO that read cmd0 is counted in cmd1 (the INFO cpu calls
        // fall outside [cmd0, cmd1]); the trackers' PINGs
        // (one a second per connection) are part of the cost.
        near_summary.costs.push_back({n, (cmd1 - cmd0 - 1) / kWrites, (cpu1 - cpu0) * 1e6 / kWrites,
                                      (self1 - self0) * 1e6 / kWrites});
      }
    }
  })->Iterations(1)->Unit(benchmark::kMillisecond);

  benchmark::RegisterBenchmark("near/hot_keys_working_set_10x", [&](benchmark::State& st) {
    constexpr std::size_t kKeys = 10000, kMax = 1000, kWarm = 50000, kReads = 100000;
    redkit::CacheOptions small = near_options;
    small.near_cache.max_entries = kMax;
    redkit::RedisCache<std::string> hot(near_redis, "bench:hot:", small);
    std::vector<std::pair<std::string, std::string>> values;
    for (std::size_t i = 0; i < kKeys; ++i) values.emplace_back("k" + std::to_string(i), std::string(100, 'h'));
    for (std::size_t at = 0; at < kKeys; at += 1000) {
      hot.set_many(std::vector<std::pair<std::string, std::string>>(values.begin() + at, values.begin() + at + 1000),
                   std::chrono::hours(1));
    }
    // Zipf(1): key i drawn with weight 1 / (i + 1), from a fixed seed.
    std::vector<double> cdf(kKeys);
    double sum = 0;
    for (std::size_t i = 0; i < kKeys; ++i) cdf[i] = (sum += 1.0 / static_cast<double>(i + 1));
    double top = 0;
    for (std::size_t i = 0; i < kMax; ++i) top += 1.0 / static_cast<double>(i + 1);
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> u(0.0, sum);
    auto draw = [&] { return static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin()); };
    for (auto _ : st) {
      for (std::size_t i = 0; i < kWarm; ++i) benchmark::DoNotOptimize(hot.get(values[draw()].first));
      const auto before = hot.stats().near_hits;
      for (std::size_t i = 0; i < kReads; ++i) benchmark::DoNotOptimize(hot.get(values[draw()].first));
      const double rate = static_cast<double>(hot.stats().near_hits - before) / static_cast<double>(kReads);
      near_summary.hot.push_back({kKeys, kMax, kReads, rate, top / sum});
    }
  })->Iterations(1)->Unit(benchmark::kMillisecond);

  // The stampede: each round a fresh absent key, 32 threads at once.
  constexpr int kThreads = 32;
  constexpr auto kLoadTime = std::chrono::milliseconds(50);
  redkit::Options wide = redkit::Options::from_uri(server.uri());
  wide.pool_size = kThreads;  // the naive side is not throttled by the pool
  redkit::Redis stampede_client(wide);
  redkit::RedisCache<std::string> stampede_cache(stampede_client, "bench:stampede:");
  // The backend: 50 ms per load. "parallel": any number at once (a sleep);
  // "serial": one at a time, like a database that serves this query from
  // one worker, so that every extra load makes the others wait.
  std::mutex backend;
  auto loader = [&](std::atomic<int>& loads, bool serial) {
    ++loads;
    std::unique_lock<std::mutex> one_at_a_time(backend, std::defer_lock);
    if (serial) one_at_a_time.lock();
    std::this_thread::sleep_for(kLoadTime);
    return std::string(100, 'x');
  };
  int round = 0;
  auto register_stampede = [&](const std::string& name, int rounds, auto call) {
    stampede_results.push_back({name, {}, {}});
    const std::size_t slot = stampede_results.size() - 1;
    benchmark::RegisterBenchmark(("stampede_32x50ms/" + name).c_str(),
                                 [&, slot, call](benchmark::State& st) {
                                   for (auto _ : st) {
                                     const std::string key = "k" + std::to_string(++round);
                                     Stampede s = run_stampede(kThreads, [&](std::atomic<int>& loads) {
                                       call(key, loads);
                                     });
                                     auto& out = stampede_results[slot];
                                     out.loads.push_back(s.loads);
                                     out.latencies_ms.insert(out.latencies_ms.end(), s.latencies_ms.begin(),
                                                             s.latencies_ms.end());
                                   }
                                   // Over every round, as print_stampede_summary prints
                                   // them (and bench/report.py charts them).
                                   const auto& out = stampede_results[slot];
                                   if (out.loads.empty()) return;
                                   double loads = 0;
                                   for (int l : out.loads) loads += l;
                                   st.counters["loads_per_round"] = loads / static_cast<double>(out.loads.size());
                                   st.counters["p50_ms"] = percentile(out.latencies_ms, 0.50);
                                   st.counters["p99_ms"] = percentile(out.latencies_ms, 0.99);
                                   st.counters["max_ms"] = percentile(out.latencies_ms, 1.0);
                                 })
        ->Iterations(rounds)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  };
  for (const bool serial : {false, true}) {
    const std::string backend_kind = serial ? "serial_backend" : "parallel_backend";
    const int rounds = serial ? 5 : 10;
    register_stampede(backend_kind + "/get_or_set", rounds, [&, serial](const std::string& key, std::atomic<int>& loads) {
      benchmark::DoNotOptimize(stampede_cache.get_or_set(key, [&] { return loader(loads, serial); }));
    });
    register_stampede(backend_kind + "/naive_get_load_set", rounds,
                      [&, serial](const std::string& key, std::atomic<int>& loads) {
                        std::optional<std::string> v = stampede_cache.get(key);
                        if (!v) {
                          v = loader(loads, serial);
                          stampede_cache.set(key, *v);
                        }
                        benchmark::DoNotOptimize(v);
                      });
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  pairs.print_summary();
  print_stampede_summary();
  print_near_summary();
  return 0;
}
