// Child process for the lock tests (tests/lock_test.cpp).
//
//   redkit_helper_lock_worker count URI NAME COUNTER HOLDERS THREADS ITERATIONS SHARING
//     THREADS threads over one shared client, ITERATIONS times each: lock;
//     INCR HOLDERS (a result above 1 means two holders); GET COUNTER, +1,
//     SET COUNTER (a non-atomic read-modify-write); DECR HOLDERS; unlock.
//     SHARING: "own" (one RedisLock per thread), "shared" (one RedisLock for
//     all threads of the process), "fresh" (a new RedisLock per section).
//     Prints "violations=V fence_regressions=F failures=E" and exits 0 only
//     if all are 0 (fences checked per thread, increasing).
//
//   redkit_helper_lock_worker crowd URI NAME COUNTER HOLDERS THREADS
//     THREADS threads, each with its own RedisLock on NAME, all started
//     together; each takes the lock once (lock()), INCRs COUNTER inside and
//     checks HOLDERS as above. Prints "violations=V failures=E connections=C"
//     (C: connections this process opened).
//
//   redkit_helper_lock_worker hold URI NAME TTL_MS
//     Acquires NAME with the given ttl and no renewal, prints "held FENCE",
//     and sleeps until killed: a holder that crashes.
//
//   redkit_helper_lock_worker fenced URI NAME RESOURCE TTL_MS SECONDS
//     For SECONDS: takes NAME (ttl TTL_MS, renewed), gets its fence, records
//     its pid in RESOURCE (field "holder") so the test can stop it, then
//     writes to RESOURCE four times through a script that refuses a fence
//     lower than the last it accepted (the fenced resource of the fencing
//     torture test), 15 ms apart, never checking owns_lock() in between;
//     unlocks. Prints "holds=H writes=W refused=R lost=L".
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <redkit/lock.hpp>

namespace {

using namespace std::chrono_literals;

int count(const std::vector<std::string>& a) {
  if (a.size() != 7) {
    std::fprintf(stderr, "count: URI NAME COUNTER HOLDERS THREADS ITERATIONS own|shared|fresh\n");
    return 2;
  }
  const std::string name = a[1], counter = a[2], holders = a[3], sharing = a[6];
  const int threads = std::atoi(a[4].c_str());
  const int iterations = std::atoi(a[5].c_str());
  redkit::Redis client(a[0]);
  redkit::RedisLock<> shared(client, name);
  std::atomic<int> violations{0};
  std::atomic<int> regressions{0};
  std::atomic<int> failures{0};

  auto section = [&](redkit::RedisLock<>& lock, std::int64_t& last_fence) {
    std::lock_guard<redkit::RedisLock<>> guard(lock);
    const std::int64_t fence = lock.fencing_token();
    if (fence <= last_fence) ++regressions;
    last_fence = fence;
    if (client.command({"INCR", holders}).integer() > 1) ++violations;
    redkit::Reply v = client.command({"GET", counter});
    const long long n = v.is_nil() ? 0 : std::stoll(std::string(v.string()));
    client.command({"SET", counter, std::to_string(n + 1)});
    client.command({"DECR", holders});
  };

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      try {
        std::unique_ptr<redkit::RedisLock<>> own;
        if (sharing == "own") own = std::make_unique<redkit::RedisLock<>>(client, name);
        std::int64_t last_fence = 0;
        for (int i = 0; i < iterations; ++i) {
          if (sharing == "fresh") {
            redkit::RedisLock<> fresh(client, name);
            section(fresh, last_fence);
          } else {
            section(own ? *own : shared, last_fence);
          }
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

int crowd(const std::vector<std::string>& a) {
  if (a.size() != 5) {
    std::fprintf(stderr, "crowd: URI NAME COUNTER HOLDERS THREADS\n");
    return 2;
  }
  const std::string name = a[1], counter = a[2], holders = a[3];
  const int threads = std::atoi(a[4].c_str());
  redkit::Options o = redkit::Options::from_uri(a[0]);
  o.command_timeout = 5000ms;  // a thousand threads on two cores: scheduling delays
  redkit::Redis client(o);
  client.command({"PING"});
  std::atomic<int> violations{0};
  std::atomic<int> failures{0};
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      try {
        redkit::RedisLock<> lock(client, name);
        {
          std::unique_lock<std::mutex> lk(m);
          cv.wait(lk, [&] { return go; });
        }
        std::lock_guard<redkit::RedisLock<>> guard(lock);
        if (client.command({"INCR", holders}).integer() > 1) ++violations;
        client.command({"INCR", counter});
        client.command({"DECR", holders});
      } catch (const std::exception& e) {
        std::fprintf(stderr, "lock_worker: %s\n", e.what());
        ++failures;
      }
    });
  }
  {
    std::lock_guard<std::mutex> lk(m);
    go = true;
  }
  cv.notify_all();
  for (auto& th : pool) th.join();
  std::printf("violations=%d failures=%d connections=%llu\n", violations.load(), failures.load(),
              static_cast<unsigned long long>(client.stats().connections_created));
  return violations == 0 && failures == 0 ? 0 : 1;
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

// The fenced resource: refuses a fence lower than the last it accepted.
// Two different holds writing with one fence value would be a fencing
// failure: counted in "shared_fence". Accepted fences go to KEYS[2] in order.
const redkit::Script& fenced_write() {
  static const redkit::Script s(R"lua(
local last = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
local f = tonumber(ARGV[1])
if f < last then
  redis.call('HINCRBY', KEYS[1], 'refused', 1)
  return 0
end
if f > last then
  redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'writer', ARGV[2])
elseif redis.call('HGET', KEYS[1], 'writer') ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[1], 'shared_fence', 1)
end
redis.call('HINCRBY', KEYS[1], 'accepted', 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
)lua");
  return s;
}

int fenced(const std::vector<std::string>& a) {
  if (a.size() != 5) {
    std::fprintf(stderr, "fenced: URI NAME RESOURCE TTL_MS SECONDS\n");
    return 2;
  }
  const std::string name = a[1], resource = a[2], log = a[2] + ":log";
  redkit::Redis client(a[0]);
  redkit::LockOptions options;
  options.ttl = std::chrono::milliseconds(std::atoll(a[3].c_str()));
  redkit::RedisLock<> lock(client, name, options);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoll(a[4].c_str()));
  int holds = 0, writes = 0, refused = 0, lost = 0;
  const std::string pid = std::to_string(::getpid());
  while (std::chrono::steady_clock::now() < end) {
    if (!lock.try_lock_for(2s)) continue;
    try {
      const std::string fence = std::to_string(lock.fencing_token());
      ++holds;
      const std::string writer = pid + ":" + std::to_string(holds);
      client.command({"HSET", resource, "holder", pid});
      for (int i = 0; i < 4; ++i) {
        ++writes;
        const std::initializer_list<std::string_view> keys = {resource, log};
        const std::initializer_list<std::string_view> args = {fence, writer};
        if (client.eval(fenced_write(), keys, args).integer() == 0) ++refused;
        std::this_thread::sleep_for(15ms);
      }
    } catch (const redkit::LockLostError&) {
      ++lost;  // paused between the acquire and the fence: no fence was issued
    }
    lock.unlock();
  }
  std::printf("holds=%d writes=%d refused=%d lost=%d\n", holds, writes, refused, lost);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fprintf(stderr, "usage: %s count|crowd|hold|fenced ...\n", argv[0]);
    return 2;
  }
  const std::string mode = args.front();
  args.erase(args.begin());
  try {
    if (mode == "count") return count(args);
    if (mode == "crowd") return crowd(args);
    if (mode == "hold") return hold(args);
    if (mode == "fenced") return fenced(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lock_worker: %s\n", e.what());
    return 3;
  }
  std::fprintf(stderr, "lock_worker: unknown mode %s\n", mode.c_str());
  return 2;
}
