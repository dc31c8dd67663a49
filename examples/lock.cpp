// RedisLock: a distributed lock with std::lock_guard, fencing tokens, a timed
// try, and a callback for a lock lost while held.
//   REDIS_URL=redis://127.0.0.1:6379/0 ./redkit_example_lock
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include <redkit/redkit.hpp>

using namespace std::chrono_literals;

int main() {
  const char* url = std::getenv("REDIS_URL");
  try {
    redkit::Redis redis(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));
    const std::string name = "example:lock:invoice-7";

    // The usual way: a guard, renewed in the background every ttl/3 while
    // held, released when the scope ends (unlock never throws).
    redkit::RedisLock<> lock(redis, name);
    {
      std::lock_guard<redkit::RedisLock<>> guard(lock);
      // Hand the fencing token to the resource you write to, and have it
      // refuse writes carrying a smaller token than it has already seen:
      // a holder that paused past its TTL is then refused, not trusted.
      std::cout << "held '" << lock.name() << "' with fencing token " << lock.fencing_token() << "\n";
    }

    // Another worker's lock on the same name: excluded while the first holds it.
    redkit::RedisLock<> other(redis, name);
    lock.lock();
    const auto t0 = std::chrono::steady_clock::now();
    const bool got = other.try_lock_for(200ms);
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::cout << "second worker, try_lock_for(200ms) while the first holds it: "
              << (got ? "acquired (unexpected!)" : "busy, as it should be") << ", after " << waited.count()
              << " ms\n";
    const std::int64_t first_fence = lock.fencing_token();
    lock.unlock();

    // A waiter blocked in try_lock_for is woken by the release, not by polling.
    // (Each thread has its own RedisLock object; they may share the client.)
    std::atomic<bool> holding{false};
    std::thread holder([&] {
      redkit::RedisLock<> mine(redis, name);
      std::lock_guard<redkit::RedisLock<>> guard(mine);
      holding = true;
      std::this_thread::sleep_for(100ms);
    });
    while (!holding) std::this_thread::sleep_for(1ms);  // let the holder in first
    if (other.try_lock_for(5s)) {
      std::cout << "second worker, blocked in try_lock_for(5s), acquired as soon as the holder released; "
                << "fencing token " << other.fencing_token()
                << (other.fencing_token() > first_fence ? " (greater than the first holder's)" : "") << "\n";
      other.unlock();
    }
    holder.join();

    // Loss: if the key vanishes (expiry during a long pause, a failover,
    // FLUSHALL), the next renewal notices and tells you.
    redkit::LockOptions options;
    options.ttl = 300ms;
    std::atomic<bool> lost{false};
    options.on_lost = [&](const std::string& n) {
      lost = true;
      std::cout << "on_lost('" << n << "') called: the key was deleted while held (as an expiry or a "
                << "failover would do), so this holder must stop writing; here that is the expected result\n";
    };
    redkit::RedisLock<> fragile(redis, name, options);
    fragile.lock();
    redis.command({"DEL", name});  // what an expiry or a failover would do
    for (int i = 0; i < 100 && !lost; ++i) std::this_thread::sleep_for(10ms);
    std::cout << "owns_lock() after the loss: " << std::boolalpha << fragile.owns_lock()
              << " (correct: the hold is gone, and unlock() below deletes nothing)\n";
    fragile.unlock();  // the key is not ours: nothing is deleted

    const std::string tag = "{" + name + "}";
    redis.command({"DEL", name, tag + ":fence", tag + ":wake", tag + ":waiters"});
    return 0;
  } catch (const redkit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
