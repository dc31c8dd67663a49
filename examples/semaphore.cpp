// RedisSemaphore: at most 2 of 5 workers inside at once, across every
// process sharing the name; permits are RAII leases that expire if their
// holder crashes, and a release wakes one waiter.
//   REDIS_URL=redis://127.0.0.1:6379/0 ./redkit_example_semaphore
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <redkit/redkit.hpp>

using namespace std::chrono_literals;

int main() {
  const char* url = std::getenv("REDIS_URL");
  try {
    redkit::Redis redis(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));
    const std::string name = "example:semaphore:exports";

    // One object shared by the threads (several processes may use the same
    // name with the same count: a different count is a ConfigError).
    redkit::RedisSemaphore<> exports(redis, name, 2);
    std::cout << "permits: " << exports.permits() << ", free now: " << exports.available() << "\n";

    std::atomic<int> inside{0};
    std::atomic<int> most{0};
    std::mutex out;
    std::vector<std::thread> workers;
    for (int w = 0; w < 5; ++w) {
      workers.emplace_back([&, w] {
        redkit::SemaphorePermit permit = exports.acquire();  // blocks; woken by a release
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        {
          std::lock_guard<std::mutex> lk(out);
          std::cout << "worker " << w << " exporting (" << now << " inside)\n";
        }
        std::this_thread::sleep_for(50ms);  // the work
        --inside;
      });  // the permit's destructor releases it
    }
    for (auto& t : workers) t.join();
    std::cout << "at most " << most.load() << " workers were inside at once\n";

    // A timed try never waits past its deadline.
    redkit::SemaphorePermit a = exports.acquire();
    redkit::SemaphorePermit b = exports.acquire();
    const auto t0 = std::chrono::steady_clock::now();
    std::optional<redkit::SemaphorePermit> c = exports.try_acquire_for(100ms);
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::cout << "third permit with both held: " << (c ? "acquired" : "none") << " after " << waited.count()
              << " ms\n";
    a.release();  // never throws
    c = exports.try_acquire();
    std::cout << "after one release: " << (c && c->owns() ? "acquired " + c->id().substr(0, 8) + "..." : "none")
              << "\n";
    return most.load() <= 2 ? 0 : 1;
  } catch (const redkit::Error& e) {
    std::cerr << "redkit error: " << e.what() << "\n";
    return 1;
  }
}
