// Child process for the multi-process rate limiter test
// (tests/rate_limiter_test.cpp):
//
//   redkit_helper_rate_limiter_worker URI PREFIX KEY RATE PERIOD_MS BURST THREADS RUN_MS
//
// THREADS threads share one RedisRateLimiter and call allow(KEY) as fast as
// they can for RUN_MS (steady clock). The process reads the server's TIME
// before it starts the threads and after it joins them, so every decision it
// made lies between the two. Prints
//   "allowed=A denied=D start_us=S end_us=E failures=F"
// and exits 0 only if no call failed.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <redkit/rate_limiter.hpp>

namespace {

long long server_time_us(redkit::Redis& redis) {
  redkit::Reply t = redis.command({"TIME"});
  return std::stoll(t[0].string_copy()) * 1000000 + std::stoll(t[1].string_copy());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s URI PREFIX KEY RATE PERIOD_MS BURST THREADS RUN_MS\n", argv[0]);
    return 2;
  }
  try {
    redkit::Redis redis(argv[1]);
    const std::string key = argv[3];
    const redkit::RateLimit limit{std::atoll(argv[4]), std::chrono::milliseconds(std::atoll(argv[5])),
                                  std::atoll(argv[6])};
    redkit::RedisRateLimiter<> limiter(redis, argv[2], limit);
    const int threads = std::atoi(argv[7]);
    const auto run = std::chrono::milliseconds(std::atoll(argv[8]));

    std::atomic<long long> allowed{0}, denied{0};
    std::atomic<int> failures{0};
    const long long start_us = server_time_us(redis);
    const auto until = std::chrono::steady_clock::now() + run;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        try {
          // Bounded in time, and in count as a safety net.
          for (long i = 0; i < 10000000 && std::chrono::steady_clock::now() < until; ++i) {
            (limiter.allow(key).allowed ? allowed : denied)++;
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "rate_limiter_worker: %s\n", e.what());
          ++failures;
        }
      });
    }
    for (auto& th : pool) th.join();
    const long long end_us = server_time_us(redis);
    std::printf("allowed=%lld denied=%lld start_us=%lld end_us=%lld failures=%d\n", allowed.load(),
                denied.load(), start_us, end_us, failures.load());
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rate_limiter_worker: %s\n", e.what());
    return 3;
  }
}
