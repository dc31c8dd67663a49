// Child process for the near cache checker (tests/near_checker_test.cpp).
//
//   redkit_helper_near_reader KIND URI PREFIX KEYS DURATION_MS THREADS MAX_ENTRIES MAX_AGE_MS OUT
//     KIND is redis (a Redis URI, also redis-sentinel://) or cluster (any node).
//     THREADS threads read the keys k0 .. k<KEYS-1> under PREFIX through one
//     RedisCache<long long> with a near cache of MAX_ENTRIES copies and
//     MAX_AGE_MS max_age, for DURATION_MS (at most 300,000 reads a thread,
//     paced to about 10,000 a second):
//     get (60 %), get_many of three keys (30 %), get_or_set with a loader
//     that throws (10 %: a hit returns the value, a miss writes nothing).
//     Every read that returned writes a line "KEY VERSION START_NS END_NS" to
//     OUT (VERSION -1 for no value; times on CLOCK_MONOTONIC, which every
//     process shares). A read that failed (a fault in the middle) is not
//     written. Prints "reads=N failed=F near_hits=H near_flushes=X
//     near_invalidations=I" at the end.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <redkit/cache.hpp>
#include <redkit/cluster.hpp>

namespace {

using Clock = std::chrono::steady_clock;

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct Record {
  int key;
  long long version;
  long long start;
  long long end;
};

struct NoLoad : std::runtime_error {
  NoLoad() : std::runtime_error("the checker's readers never load") {}
};

template <class Client>
int run(Client client, const std::string& prefix, int keys, long long duration_ms, int threads,
        std::size_t max_entries, long long max_age_ms, const std::string& out_path) {
  redkit::CacheOptions o;
  o.near_cache.max_entries = max_entries;
  o.near_cache.max_age = std::chrono::milliseconds(max_age_ms);
  o.wait_timeout = std::chrono::milliseconds(0);
  redkit::RedisCache<long long, redkit::Serializer<long long>, Client> cache(client, prefix, o);

  std::vector<std::vector<Record>> records(static_cast<std::size_t>(threads));
  std::vector<long long> failed(static_cast<std::size_t>(threads), 0);
  const auto until = Clock::now() + std::chrono::milliseconds(duration_ms);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(now_ns()) + static_cast<unsigned>(t));
      auto& mine = records[static_cast<std::size_t>(t)];
      mine.reserve(300000);
      auto name = [](int k) { return "k" + std::to_string(k); };
      while (Clock::now() < until && mine.size() < 300000) {
        const int op = static_cast<int>(rng() % 10);
        const int k = static_cast<int>(rng() % static_cast<unsigned>(keys));
        const long long start = now_ns();
        try {
          if (op < 6) {
            const auto v = cache.get(name(k));
            mine.push_back({k, v ? *v : -1, start, now_ns()});
          } else if (op < 9) {
            const int k2 = (k + 1) % keys;
            const int k3 = (k + 2) % keys;
            const auto vs = cache.get_many(std::vector<std::string>{name(k), name(k2), name(k3)});
            const long long end = now_ns();
            const int ks[] = {k, k2, k3};
            for (int i = 0; i < 3; ++i) mine.push_back({ks[i], vs[i] ? *vs[i] : -1, start, end});
          } else {
            const long long v = cache.get_or_set(name(k), []() -> long long { throw NoLoad(); });
            mine.push_back({k, v, start, now_ns()});
          }
        } catch (const NoLoad&) {
          // A miss: nothing was read, nothing written.
        } catch (const redkit::Error&) {
          ++failed[static_cast<std::size_t>(t)];
          std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a fault is on: do not spin on it
        }
        // Paced (about 10,000 reads a second a thread), so that the run is
        // covered end to end and the machine keeps room for the writers.
        std::this_thread::sleep_for(std::chrono::microseconds(20 + rng() % 150));
      }
    });
  }
  for (auto& th : pool) th.join();

  FILE* out = std::fopen(out_path.c_str(), "w");
  if (!out) throw std::runtime_error("cannot write " + out_path);
  long long reads = 0;
  long long fails = 0;
  for (std::size_t t = 0; t < records.size(); ++t) {
    fails += failed[t];
    for (const Record& r : records[t]) {
      std::fprintf(out, "%d %lld %lld %lld\n", r.key, r.version, r.start, r.end);
      ++reads;
    }
  }
  std::fclose(out);
  const auto s = cache.stats();
  std::printf("reads=%lld failed=%lld near_hits=%llu near_flushes=%llu near_invalidations=%llu\n", reads, fails,
              static_cast<unsigned long long>(s.near_hits), static_cast<unsigned long long>(s.near_flushes),
              static_cast<unsigned long long>(s.near_invalidations));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 10) {
    std::fprintf(stderr, "usage: %s KIND URI PREFIX KEYS DURATION_MS THREADS MAX_ENTRIES MAX_AGE_MS OUT\n", argv[0]);
    return 2;
  }
  const std::string kind = argv[1];
  try {
    const int keys = std::atoi(argv[4]);
    const long long duration = std::atoll(argv[5]);
    const int threads = std::atoi(argv[6]);
    const auto max_entries = static_cast<std::size_t>(std::atoll(argv[7]));
    const long long max_age = std::atoll(argv[8]);
    if (keys < 3 || duration <= 0 || duration > 120000 || threads < 1 || threads > 16 || max_entries == 0) {
      std::fprintf(stderr, "near_reader: bad arguments\n");
      return 2;
    }
    if (kind == "cluster") {
      return run(redkit::Cluster(argv[2]), argv[3], keys, duration, threads, max_entries, max_age, argv[9]);
    }
    return run(redkit::Redis(argv[2]), argv[3], keys, duration, threads, max_entries, max_age, argv[9]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "near_reader: %s\n", e.what());
    return 1;
  }
}
