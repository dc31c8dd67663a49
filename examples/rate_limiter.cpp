// RedisRateLimiter: a per-client API limit shared by every process, a job
// that waits for its turn, requests that cost more than one, and reset().
//   REDIS_URL=redis://127.0.0.1:6379/0 ./redkit_example_rate_limiter
// Exits non-zero if any step does not show what it should.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include <redkit/redkit.hpp>

using namespace std::chrono_literals;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::cout << "  UNEXPECTED: " << what << "\n";
    ++failures;
  }
}

long long ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

int main() {
  const char* url = std::getenv("REDIS_URL");
  try {
    redkit::Redis redis(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));

    // 5 requests per second per client, at most 3 at once.
    const redkit::RateLimit api{5, 1s, 3};
    redkit::RedisRateLimiter<> limiter(redis, "example:rl:api:", api);
    limiter.reset("client-42");

    std::cout << "five requests from client-42 at once, limit 5/s with a burst of 3:\n";
    for (int i = 1; i <= 5; ++i) {
      const redkit::RateLimitResult r = limiter.allow("client-42");
      std::cout << "  request " << i << ": ";
      if (r.allowed) {
        std::cout << "allowed, " << r.remaining << " more may go now\n";
      } else {
        std::cout << "denied (HTTP 429), retry after " << r.retry_after.count() << " ms\n";
      }
      check(r.allowed == (i <= 3), "the first 3 allowed, the rest denied");
    }

    // What Redis holds: one key, the theoretical arrival time in µs on the
    // server's clock, expiring when the bucket has drained.
    const std::string stored = redis.command({"GET", "example:rl:api:client-42"}).string_copy();
    const long long pttl = redis.command({"PTTL", "example:rl:api:client-42"}).integer();
    std::cout << "Redis holds one key for client-42: \"" << stored << "\" (µs since the epoch, on the server's "
              << "clock), expiring in " << pttl << " ms, when all 3 slots are free again\n";
    // The key expires at the TAT rounded up to the millisecond (PXAT); PTTL
    // counts from the server's current millisecond, rounded down, so it may
    // read one more than the 600 ms the bucket takes to drain.
    const long long expires_at_ms = redis.command({"PEXPIRETIME", "example:rl:api:client-42"}).integer();
    const long long tat_us = std::stoll(stored);  // the whole µs before any "+num/den"
    const bool fraction = stored.find('+') != std::string::npos;
    check(expires_at_ms == (tat_us + (fraction ? 1 : 0) + 999) / 1000,
          "the key expires at the stored time, rounded up to the millisecond");
    check(pttl > 0 && pttl <= 601, "the key lives at most 3 × 200 ms (+1 ms of PTTL rounding)");
    const bool denied_again = !limiter.allow("client-42").allowed;
    const bool unchanged = redis.command({"GET", "example:rl:api:client-42"}).string_copy() == stored;
    std::cout << "one more request: " << (denied_again ? "denied" : "allowed") << ", and the key is "
              << (unchanged ? "byte for byte as it was: a denial writes nothing" : "changed") << "\n";
    check(denied_again && unchanged, "a denial leaves the key as it was");

    // Another client object (as another process would have) shares the limit:
    // the decision is made in Redis, on Redis's clock.
    redkit::Redis elsewhere(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));
    redkit::RedisRateLimiter<> other(elsewhere, "example:rl:api:", api);
    const bool shared_denied = !other.allow("client-42").allowed;
    std::cout << "the same key through another client: " << (shared_denied ? "denied too" : "allowed")
              << ", because the limit lives in Redis, not in the process\n";
    check(shared_denied, "another client sees the same limit");

    // A batch job waits for its turn instead of failing: wait() sleeps each
    // retry_after (plus a little jitter) and tries again, never past its timeout.
    limiter.reset("batch");
    const auto t0 = std::chrono::steady_clock::now();
    int done = 0;
    for (int job = 0; job < 6; ++job) {
      if (limiter.wait("batch", 2s)) ++done;
    }
    const long long took = ms(std::chrono::steady_clock::now() - t0);
    std::cout << "six jobs through wait(): " << done << " ran in " << took
              << " ms (3 at once, then one per 200 ms: GCRA's 600 ms, plus wake-up jitter)\n";
    check(done == 6 && took >= 550 && took < 1500, "6 jobs in about 600 ms");

    // A request may cost more than one: an upload of 3 units takes the whole burst.
    limiter.reset("uploads");
    const auto big = limiter.allow("uploads", 3);
    const auto next = limiter.allow("uploads");
    std::cout << "an upload costing 3: " << (big.allowed ? "allowed" : "denied") << "; the next request: "
              << (next.allowed ? "allowed" : "denied") << ", retry after " << next.retry_after.count() << " ms\n";
    check(big.allowed && !next.allowed, "a cost of 3 uses the burst of 3");

    // A cost above the burst could never be allowed: that is a ConfigError, not a wait for ever.
    try {
      limiter.allow("uploads", 4);
      check(false, "cost 4 > burst 3 must throw");
    } catch (const redkit::ConfigError& e) {
      std::cout << "a cost of 4 with a burst of 3 threw ConfigError, as it should: " << e.what() << "\n";
    }

    // reset() forgets a key: the next request finds the whole burst.
    limiter.reset("uploads");
    const auto fresh = limiter.allow("uploads");
    std::cout << "after reset(\"uploads\"): " << (fresh.allowed ? "allowed" : "denied") << ", " << fresh.remaining
              << " more may go now\n";
    check(fresh.allowed && fresh.remaining == 2, "reset gives the whole burst back");

    for (const char* k : {"client-42", "batch", "uploads"}) limiter.reset(k);
    return failures == 0 ? 0 : 1;
  } catch (const redkit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
