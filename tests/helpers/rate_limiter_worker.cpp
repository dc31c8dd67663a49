// Child process for the multi-process rate limiter test
// (tests/rate_limiter_test.cpp):
//
//   redkit_helper_rate_limiter_worker URI PREFIX KEY RATE PERIOD_MS BURST THREADS RUN_MS [SHIFT_S]
//
// THREADS threads share one RedisRateLimiter and call allow(KEY) as fast as
// they can for RUN_MS (steady clock), reading the server's TIME before each
// call and after each allowed one, so each allowed decision lies between
// its two readings. Prints
//   "allowed=A denied=D start_us=S end_us=E failures=F skew_s=K"
// where S is the earliest reading before an allowed decision and E the
// latest after one, and exits 0 only if no call failed. K is this process's wall clock
// (std::chrono::system_clock) minus the server's TIME, in whole seconds.
//
// SHIFT_S moves this process's wall clock: the program defines
// clock_gettime itself, so every caller in the process (libstdc++'s
// system_clock among them) gets the kernel's time with SHIFT_S seconds
// added to CLOCK_REALTIME (other clocks pass through). skew_s shows that it
// took effect. A limiter that read the client's clock would let a process
// whose clock is ahead take every request, and one behind take none.
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <redkit/rate_limiter.hpp>

namespace {
long long g_shift_s = 0;
}  // namespace

extern "C" int clock_gettime(clockid_t id, struct timespec* ts) noexcept {
  const long r = ::syscall(SYS_clock_gettime, id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += g_shift_s;
  return static_cast<int>(r);
}

namespace {

long long server_time_us(redkit::Redis& redis) {
  redkit::Reply t = redis.command({"TIME"});
  return std::stoll(t[0].string_copy()) * 1000000 + std::stoll(t[1].string_copy());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9 && argc != 10) {
    std::fprintf(stderr, "usage: %s URI PREFIX KEY RATE PERIOD_MS BURST THREADS RUN_MS [SHIFT_S]\n", argv[0]);
    return 2;
  }
  if (argc == 10) g_shift_s = std::atoll(argv[9]);
  try {
    redkit::Redis redis(argv[1]);
    const std::string key = argv[3];
    const redkit::RateLimit limit{std::atoll(argv[4]), std::chrono::milliseconds(std::atoll(argv[5])),
                                  std::atoll(argv[6])};
    redkit::RedisRateLimiter<> limiter(redis, argv[2], limit);
    const int threads = std::atoi(argv[7]);
    const auto run = std::chrono::milliseconds(std::atoll(argv[8]));

    std::mutex m;
    long long allowed = 0, denied = 0, start_us = LLONG_MAX, end_us = 0;
    std::atomic<int> failures{0};
    const auto until = std::chrono::steady_clock::now() + run;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        try {
          // Bounded in time, and in count as a safety net.
          for (long i = 0; i < 10000000 && std::chrono::steady_clock::now() < until; ++i) {
            const long long before = server_time_us(redis);
            if (!limiter.allow(key).allowed) {
              std::lock_guard<std::mutex> lk(m);
              ++denied;
              continue;
            }
            const long long after = server_time_us(redis);
            std::lock_guard<std::mutex> lk(m);
            ++allowed;
            start_us = std::min(start_us, before);
            end_us = std::max(end_us, after);
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "rate_limiter_worker: %s\n", e.what());
          ++failures;
        }
      });
    }
    for (auto& th : pool) th.join();
    const long long local_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
    const long long skew_s = (local_us - server_time_us(redis)) / 1000000;
    std::printf("allowed=%lld denied=%lld start_us=%lld end_us=%lld failures=%d skew_s=%lld\n", allowed, denied,
                start_us, end_us, failures.load(), skew_s);
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rate_limiter_worker: %s\n", e.what());
    return 3;
  }
}
