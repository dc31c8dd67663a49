// RedisCounter: a page-view counter and a fixed-window rate limit.
//   REDIS_URL=redis://127.0.0.1:6379/0 ./redkit_example_counter
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include <redkit/redkit.hpp>

using namespace std::chrono_literals;

int main() {
  const char* url = std::getenv("REDIS_URL");
  try {
    redkit::Redis redis(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));

    // Page views: every process on every host increments the same key.
    redkit::RedisCounter<long long> views(redis, "example:views:/index.html");
    views.reset();
    for (int i = 0; i < 5; ++i) views.incr();
    std::cout << "page views after 5 incr(): " << views.get() << "\n";

    // Fixed-window rate limit: at most 3 requests per client per second.
    // The window's expiry is set in the same script as the first increment,
    // so a crash between INCR and EXPIRE can never leave a counter forever.
    redkit::CounterOptions window;
    window.window = 1s;
    redkit::RedisCounter<int> requests(redis, "example:ratelimit:client-42", window);
    redis.command({"DEL", "example:ratelimit:client-42"});
    for (int i = 1; i <= 5; ++i) {
      const auto r = requests.incr_bounded(1, 0, 3);
      std::cout << "request " << i << ": " << (r.applied ? "allowed" : "rejected: the limit is 3 per second")
                << " (count in this window: " << r.value << ")\n";
    }
    std::cout << "the window (set atomically with its first increment) ends in "
              << requests.ttl().value_or(0ms).count() << " ms\n";

    // A small type refuses to wrap around: the stored value is left as it was.
    redkit::RedisCounter<std::uint8_t> small(redis, "example:small");
    small.set(255);
    try {
      small.incr();
    } catch (const redkit::OverflowError& e) {
      std::cout << "incr() of a uint8_t counter at 255 threw OverflowError, as it should; the stored "
                << "value is still " << int(small.get()) << "\n";
    }
    redis.command({"DEL", "example:views:/index.html", "example:ratelimit:client-42", "example:small"});
    return 0;
  } catch (const redkit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
