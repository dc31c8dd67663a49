// RedisSemaphore beside raw hiredis doing the same work, in the same run,
// against one redis-server pinned to CPU 1:
//   1. uncontended acquire()+release() pairs/s vs raw hiredis sending the
//      very same two scripts by EVALSHA (same keys and arguments):
//      interleaved rounds, median of the paired ratios, client CPU per pair
//      (RUSAGE_THREAD: the uncontended path does its I/O on the caller);
//   2. the same pair beside RedisLock's lock()+unlock() pair, interleaved
//      rounds, median of the paired ratios;
//   3. server calls per pair (INFO total_commands_processed, which counts
//      calls inside scripts) for the semaphore, the raw scripts and the lock;
//   4. handoff: a release in this process -> a waiter blocked in another
//      process (a fork()ed child with its own client) acquires; p50 and p99
//      on CLOCK_MONOTONIC, which both processes share.
//
//   /work/tools/slot --exclusive taskset -c 1 build/release/bench/redkit_bench_semaphore
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <redkit/lock.hpp>
#include <redkit/semaphore.hpp>

#include "bench_common.hpp"
#include "support/server.hpp"

namespace {

using namespace std::chrono_literals;
using redkit::bench::median;
using redkit::bench::now_ns;
using redkit::bench::percentile;
using Clock = std::chrono::steady_clock;

// The raw side: the semaphore's own scripts by EVALSHA over one hiredis connection.
struct RawSemaphore {
  RawSemaphore(const redkit::test::RedisServer& server, const std::string& name)
      : raw(server.host(), server.port()), keys(redkit::detail::semaphore_keys(name)) {
    raw.command({"SCRIPT", "LOAD", redkit::detail::semaphore_acquire_script().source()});
    raw.command({"SCRIPT", "LOAD", redkit::detail::semaphore_release_script().source()});
    acquire_argv = {"EVALSHA", redkit::detail::semaphore_acquire_script().sha(), "2", keys.permits, keys.waiting,
                    "raw-permit-id-0123456789abcdef00", "30000", "3", "none", "60000", "3600000"};
    release_argv = {"EVALSHA", redkit::detail::semaphore_release_script().sha(), "3", keys.permits, keys.waiting,
                    keys.wake, "raw-permit-id-0123456789abcdef00", "2000"};
  }
  void pair() {
    raw.command(acquire_argv);
    raw.command(release_argv);
  }
  redkit::bench::RawHiredis raw;
  redkit::detail::SemaphoreKeys keys;
  std::vector<std::string> acquire_argv, release_argv;
};

long long server_commands(redkit::Redis& client) {
  return static_cast<long long>(
      redkit::bench::info_number(client.command({"INFO", "stats"}).string_copy(), "total_commands_processed"));
}

struct Results {
  std::vector<double> sem_vs_lock;  // paired ratios, pairs/s
  std::vector<double> sem_ops, lock_ops;
  double calls_sem = 0, calls_raw = 0, calls_lock = 0;
  std::vector<double> handoff_us;
} results;

// Child of the handoff: waits for "go", acquires (blocking in Redis until the
// parent releases), reports when it got the permit, releases, repeats.
[[noreturn]] void handoff_child(const std::string& uri, const std::string& name, const std::string& go,
                                const std::string& times, int rounds) {
  int rc = 0;
  try {
    redkit::Redis client(uri);
    redkit::SemaphoreOptions o;
    o.retry_min = 10s;  // only a wake-up gets it in quickly
    o.retry_max = 10s;
    redkit::RedisSemaphore<> sem(client, name, 1, o);
    redkit::Lease lease = client.lease();
    for (int i = 0; i < rounds; ++i) {
      lease.command(redkit::Command{"BLPOP"}.key(go).arg("10"), 15s).check();
      redkit::SemaphorePermit p = sem.acquire();
      const long long t = now_ns();
      client.command({"RPUSH", times, std::to_string(t)});
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "semaphore_bench child: %s\n", e.what());
    rc = 1;
  }
  std::_Exit(rc);
}

std::vector<double> handoff_run(redkit::test::RedisServer& server, int rounds) {
  const std::string name = redkit::test::unique_prefix() + "handoff";
  const std::string go = name + ":go", times = name + ":times";
  redkit::Redis client(server.uri());
  redkit::RedisSemaphore<> sem(client, name, 1);
  const pid_t child = ::fork();
  if (child == 0) handoff_child(server.uri(), name, go, times, rounds);
  std::vector<double> us;
  redkit::Lease lease = client.lease();
  auto blocked = [&] {
    return redkit::bench::info_number(client.command({"INFO", "clients"}).string_copy(), "blocked_clients");
  };
  for (int i = 0; i < rounds; ++i) {
    redkit::SemaphorePermit p = sem.acquire();  // after the child released its last one
    client.command({"RPUSH", go, "1"});
    // The child popped "go" and blocks in the semaphore's BLPOP.
    const auto until = Clock::now() + 10s;
    while (Clock::now() < until && !(client.command({"LLEN", go}).integer() == 0 && blocked() == 1)) {
      std::this_thread::sleep_for(200us);
    }
    const long long t0 = now_ns();
    p.release();
    redkit::Reply r = lease.command(redkit::Command{"BLPOP"}.key(times).arg("10"), 15s);
    if (!r.is_array()) break;
    us.push_back(static_cast<double>(std::stoll(std::string(r[1].string())) - t0) / 1e3);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  redkit::test::RedisServer server(so);
  redkit::Redis client(server.uri());
  const std::string name = redkit::test::unique_prefix() + "sem";
  redkit::RedisSemaphore<> sem(client, name, 3);
  redkit::RedisLock<> lock(client, redkit::test::unique_prefix() + "lock");
  RawSemaphore raw(server, name);
  sem.acquire().release();
  lock.lock();
  lock.unlock();

  constexpr int kPairs = 2000;
  constexpr int kRounds = 10;
  redkit::bench::Pairs::instance().add(
      "semaphore_acquire_release", [&] { sem.acquire().release(); }, [&] { raw.pair(); }, 1, kPairs, kRounds);

  benchmark::RegisterBenchmark("semaphore_vs_lock_pair", [&](benchmark::State& st) {
    for (auto _ : st) {
      for (int r = 0; r < kRounds; ++r) {
        double sem_rate = 0, lock_rate = 0;
        for (int k = 0; k < 2; ++k) {
          const bool sem_side = (k == 0) == (r % 2 == 0);
          const auto t0 = Clock::now();
          for (int i = 0; i < kPairs; ++i) {
            if (sem_side) {
              sem.acquire().release();
            } else {
              lock.lock();
              lock.unlock();
            }
          }
          const double rate = kPairs / std::chrono::duration<double>(Clock::now() - t0).count();
          (sem_side ? sem_rate : lock_rate) = rate;
        }
        results.sem_ops.push_back(sem_rate);
        results.lock_ops.push_back(lock_rate);
        results.sem_vs_lock.push_back(sem_rate / lock_rate);
      }
    }
    st.counters["ratio"] = median(results.sem_vs_lock);
  })->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

  benchmark::RegisterBenchmark("server_calls_per_pair", [&](benchmark::State& st) {
    constexpr int kN = 1000;
    for (auto _ : st) {
      auto count = [&](auto&& body) {
        const long long before = server_commands(client);
        for (int i = 0; i < kN; ++i) body();
        return static_cast<double>(server_commands(client) - before - 1) / kN;  // less the INFO
      };
      results.calls_sem = count([&] { sem.acquire().release(); });
      results.calls_raw = count([&] { raw.pair(); });
      results.calls_lock = count([&] {
        lock.lock();
        lock.unlock();
      });
    }
    st.counters["semaphore"] = results.calls_sem;
  })->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

  benchmark::RegisterBenchmark("semaphore_handoff_between_processes", [&](benchmark::State& st) {
    for (auto _ : st) results.handoff_us = handoff_run(server, 200);
    st.counters["p50_us"] = percentile(results.handoff_us, 50);
  })->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

  const int rc = redkit::bench::run_main(argc, argv);
  if (!results.sem_vs_lock.empty()) {
    std::printf("\nuncontended pair, semaphore acquire+release vs lock lock+unlock: %.0f vs %.0f pairs/s, ratio %.3fx "
                "(median of %zu paired rounds)\n",
                median(results.sem_ops), median(results.lock_ops), median(results.sem_vs_lock),
                results.sem_vs_lock.size());
  }
  if (results.calls_sem > 0) {
    std::printf("server calls per pair (total_commands_processed, calls in scripts included): semaphore %.2f, raw "
                "EVALSHA of the same scripts %.2f, lock %.2f\n",
                results.calls_sem, results.calls_raw, results.calls_lock);
  }
  if (!results.handoff_us.empty()) {
    std::printf("handoff from a release in one process to a waiter blocked in another: p50 %.3f ms  p99 %.3f ms  "
                "(%zu handoffs)\n",
                percentile(results.handoff_us, 50) / 1e3, percentile(results.handoff_us, 99) / 1e3,
                results.handoff_us.size());
  }
  return rc;
}
