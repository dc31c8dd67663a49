// Child process for the cache tests (tests/cache_test.cpp).
//
//   redkit_helper_cache_worker load URI PREFIX KEY LOADS_KEY START_LIST LOAD_MS
//     Waits (BLPOP, up to 30 s) for an element on START_LIST so that all
//     workers start together, then get_or_set(KEY) with a loader that INCRs
//     LOADS_KEY and takes LOAD_MS. Prints "value=V loads=L ms=M": the value
//     it got, how many loads this process ran, and how long get_or_set took.
//
//   redkit_helper_cache_worker crash URI PREFIX KEY FLAG_KEY FILL_LOCK_MS
//     get_or_set(KEY) with a loader that SETs FLAG_KEY and then never
//     returns: a loader that dies holding the fill lock when the test kills
//     this process.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <redkit/cache.hpp>

using namespace std::chrono_literals;

namespace {

int load(const std::vector<std::string>& a) {
  if (a.size() != 6) {
    std::fprintf(stderr, "load: URI PREFIX KEY LOADS_KEY START_LIST LOAD_MS\n");
    return 2;
  }
  const std::string &uri = a[0], &prefix = a[1], &key = a[2], &loads_key = a[3], &start = a[4];
  const auto load_time = std::chrono::milliseconds(std::atol(a[5].c_str()));
  redkit::Redis client(uri);
  redkit::CacheOptions options;
  options.fill_lock_ttl = 20s;  // waking by timeout would show as ~20 s
  options.wait_timeout = 20s;
  redkit::RedisCache<std::string> cache(client, prefix, options);

  auto lease = client.lease(start);
  if (lease.command(redkit::Command{"BLPOP"}.key(start).arg("30"), 35s).is_nil()) {
    std::fprintf(stderr, "load: no start signal\n");
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const std::string value = cache.get_or_set(key, [&] {
    const long long n = client.command(redkit::Command{"INCR"}.key(loads_key)).integer();
    std::this_thread::sleep_for(load_time);  // the slow backend being cached
    return "loaded-by-" + std::to_string(::getpid()) + "-as-" + std::to_string(n);
  });
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("value=%s loads=%llu ms=%lld\n", value.c_str(),
              static_cast<unsigned long long>(cache.stats().loads), static_cast<long long>(ms.count()));
  return 0;
}

int crash(const std::vector<std::string>& a) {
  if (a.size() != 5) {
    std::fprintf(stderr, "crash: URI PREFIX KEY FLAG_KEY FILL_LOCK_MS\n");
    return 2;
  }
  redkit::Redis client(a[0]);
  redkit::CacheOptions options;
  options.fill_lock_ttl = std::chrono::milliseconds(std::atol(a[4].c_str()));
  redkit::RedisCache<std::string> cache(client, a[1], options);
  cache.get_or_set(a[2], [&]() -> std::string {
    client.command(redkit::Command{"SET"}.key(a[3]).arg("1"));
    for (;;) ::pause();  // killed here, holding the fill lock
  });
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s load|crash ARGS...\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (mode == "load") return load(args);
    if (mode == "crash") return crash(args);
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cache_worker: %s\n", e.what());
    return 1;
  }
}
