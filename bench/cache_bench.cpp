// RedisCache beside raw hiredis in the same run, against one redis-server
// this program starts on CPU 1:
//  - get() hit of a 100-byte string vs raw GET (redisCommandArgv);
//  - get_many() of 100 keys vs raw MGET;
//  each raw side copies the values into the same result type
//  (std::optional<std::string>, a vector of them), as the cache returns;
//  - a stampede: 32 threads ask for one absent key whose loader takes 50 ms,
//  through get_or_set vs the naive get, load, set; loads and latency, with
//  a backend that serves any number of loads at once and with one that
//  serves one at a time.
//
//   scripts/bench --benchmark_filter=cache
//   (or: taskset -c 1 build/bench/bench/redkit_bench_cache)
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
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
  return 0;
}
