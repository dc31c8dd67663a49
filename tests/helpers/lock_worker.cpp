// Child process for the lock tests (tests/lock_test.cpp).
//
//   redkit_helper_lock_worker count URI NAME COUNTER HOLDERS THREADS ITERATIONS
//     THREADS threads, each with its own RedisLock on NAME over one shared
//     client, ITERATIONS times: lock; INCR HOLDERS (a result above 1 means two
//     holders); GET COUNTER, +1, SET COUNTER (a non-atomic read-modify-write);
//     DECR HOLDERS; unlock. Prints "violations=V fence_regressions=F" and
//     exits 0 only if both are 0.
//
//   redkit_helper_lock_worker hold URI NAME TTL_MS
//     Acquires NAME with the given ttl and no renewal, prints "held FENCE",
//     and sleeps until killed: a holder that crashes.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <redkit/lock.hpp>

namespace {

int count(const std::vector<std::string>& a) {
  if (a.size() != 6) {
    std::fprintf(stderr, "count: URI NAME COUNTER HOLDERS THREADS ITERATIONS\n");
    return 2;
  }
  const std::string name = a[1], counter = a[2], holders = a[3];
  const int threads = std::atoi(a[4].c_str());
  const int iterations = std::atoi(a[5].c_str());
  redkit::Redis client(a[0]);
  std::atomic<int> violations{0};
  std::atomic<int> regressions{0};
  std::atomic<int> failures{0};

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      try {
        redkit::RedisLock<> lock(client, name);
        std::int64_t last_fence = 0;
        for (int i = 0; i < iterations; ++i) {
          std::lock_guard<redkit::RedisLock<>> guard(lock);
          if (lock.fencing_token() <= last_fence) ++regressions;
          last_fence = lock.fencing_token();
          if (client.command({"INCR", holders}).integer() > 1) ++violations;
          redkit::Reply v = client.command({"GET", counter});
          const long long n = v.is_nil() ? 0 : std::stoll(std::string(v.string()));
          client.command({"SET", counter, std::to_string(n + 1)});
          client.command({"DECR", holders});
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "lock_worker: %s\n", e.what());
        ++failures;
      }
    });
  }
  for (auto& th : pool) th.join();
  std::printf("violations=%d fence_regressions=%d failures=%d\n", violations.load(), regressions.load(),
              failures.load());
  return violations == 0 && regressions == 0 && failures == 0 ? 0 : 1;
}

int hold(const std::vector<std::string>& a) {
  if (a.size() != 3) {
    std::fprintf(stderr, "hold: URI NAME TTL_MS\n");
    return 2;
  }
  redkit::Redis client(a[0]);
  redkit::LockOptions options;
  options.ttl = std::chrono::milliseconds(std::atoll(a[2].c_str()));
  options.auto_renew = false;
  redkit::RedisLock<> lock(client, a[1], options);
  lock.lock();
  std::printf("held %lld\n", static_cast<long long>(lock.fencing_token()));
  std::fflush(stdout);
  for (;;) ::pause();  // until SIGKILL: the lock is never released
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fprintf(stderr, "usage: %s count|hold ...\n", argv[0]);
    return 2;
  }
  const std::string mode = args.front();
  args.erase(args.begin());
  try {
    if (mode == "count") return count(args);
    if (mode == "hold") return hold(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lock_worker: %s\n", e.what());
    return 3;
  }
  std::fprintf(stderr, "lock_worker: unknown mode %s\n", mode.c_str());
  return 2;
}
