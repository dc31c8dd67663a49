// Child process for the semaphore tests (tests/semaphore_test.cpp).
//
//   redkit_helper_semaphore_worker count URI NAME PERMITS INSIDE PEAK DONE THREADS ITERATIONS
//     THREADS threads sharing one RedisSemaphore (PERMITS permits) over one
//     client, ITERATIONS times each: acquire(); a script INCRs INSIDE and
//     raises PEAK to the count inside (a count above PERMITS is a
//     violation, seen by this process and kept in PEAK for the test); a
//     few round trips of work; DECR INSIDE; INCR DONE; release.
//     Prints "violations=V failures=E" and exits 0 only if both are 0.
//
//   redkit_helper_semaphore_worker hold URI NAME PERMITS TTL_MS
//     Acquires one permit with the given ttl and no renewal, prints
//     "held ID", and sleeps until killed: a holder that crashes.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <redkit/semaphore.hpp>

namespace {

// KEYS: inside, peak. Returns the count inside after entering.
const redkit::Script& enter_script() {
  static const redkit::Script s(R"lua(
local n = redis.call('INCR', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > peak then redis.call('SET', KEYS[2], n) end
return n
)lua");
  return s;
}

int count(const std::vector<std::string>& a) {
  if (a.size() != 8) {
    std::fprintf(stderr, "count: URI NAME PERMITS INSIDE PEAK DONE THREADS ITERATIONS\n");
    return 2;
  }
  const std::string name = a[1], inside = a[3], peak = a[4], done = a[5];
  const long long permits = std::atoll(a[2].c_str());
  const int threads = std::atoi(a[6].c_str());
  const int iterations = std::atoi(a[7].c_str());
  redkit::Redis client(a[0]);
  redkit::RedisSemaphore<> semaphore(client, name, permits);
  std::atomic<int> violations{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      try {
        for (int i = 0; i < iterations; ++i) {
          redkit::SemaphorePermit permit = semaphore.acquire();
          if (!permit.owns()) ++violations;
          const std::initializer_list<std::string_view> keys = {inside, peak};
          const std::initializer_list<std::string_view> none = {};
          if (client.eval(enter_script(), keys, none).integer() > permits) ++violations;
          for (int w = 0; w < 3; ++w) client.command({"PING"});  // time inside, without sleeping
          client.command({"DECR", inside});
          client.command({"INCR", done});
          permit.release();
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "semaphore_worker: %s\n", e.what());
        ++failures;
      }
    });
  }
  for (auto& th : pool) th.join();
  std::printf("violations=%d failures=%d\n", violations.load(), failures.load());
  return violations == 0 && failures == 0 ? 0 : 1;
}

int hold(const std::vector<std::string>& a) {
  if (a.size() != 4) {
    std::fprintf(stderr, "hold: URI NAME PERMITS TTL_MS\n");
    return 2;
  }
  redkit::Redis client(a[0]);
  redkit::SemaphoreOptions options;
  options.ttl = std::chrono::milliseconds(std::atoll(a[3].c_str()));
  options.auto_renew = false;
  redkit::RedisSemaphore<> semaphore(client, a[1], std::atoll(a[2].c_str()), options);
  redkit::SemaphorePermit permit = semaphore.acquire();
  std::printf("held %s\n", permit.id().c_str());
  std::fflush(stdout);
  for (;;) ::pause();  // until SIGKILL: the permit is never released
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
    std::fprintf(stderr, "semaphore_worker: %s\n", e.what());
    return 3;
  }
  std::fprintf(stderr, "semaphore_worker: unknown mode %s\n", mode.c_str());
  return 2;
}
