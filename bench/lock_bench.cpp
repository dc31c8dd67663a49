// RedisLock beside raw hiredis doing the same work, in the same run, against
// one redis-server pinned to CPU 1:
//   1. uncontended lock()+unlock() pairs/s vs raw `SET NX PX` + EVALSHA
//      compare-and-delete: interleaved rounds, median of the paired ratios,
//      client CPU per pair (whole process, so the renewal thread counts) and
//      server CPU per pair; a third side, raw hiredis sending redkit's own
//      two scripts, separates the library's cost from the scripts' cost;
//   2. handoff latency: a release in this process -> a waiter blocked in
//      another process acquires; redkit vs raw pub/sub vs a 100 ms poll loop;
//   3. commands the server receives from 8 waiters during a 2 s hold, vs 8
//      raw waiters polling every 100 ms.
//
//   scripts/bench --benchmark_filter=lock    (or:)
//   taskset -c 1 build/bench/bench/redkit_bench_lock
//
// The handoff waiter is this same program, started again with --child.
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <redkit/lock.hpp>

#include "bench_common.hpp"
#include "support/server.hpp"

namespace {

using redkit::bench::cpu_seconds;
using redkit::bench::median;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// CLOCK_MONOTONIC: one clock for every process on the machine, so a release
// here and an acquire in the child can be compared.
long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// CPU seconds a process used so far (utime + stime from /proc/PID/stat).
double process_cpu_seconds(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
  if (!p) return 0;
  unsigned long utime = 0, stime = 0;
  // Fields after ')': state(3) ... utime(14) stime(15).
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return 0;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// ---- raw hiredis: the reference side ----------------------------------------

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RawReply = std::unique_ptr<redisReply, ReplyFree>;

// One hiredis connection, commands sent with redisCommandArgv.
class Raw {
 public:
  Raw(const std::string& host, int port) : c_(redisConnect(host.c_str(), port)) {
    if (!c_ || c_->err) throw std::runtime_error("raw hiredis: cannot connect");
    timeval tv{15, 0};
    redisSetTimeout(c_, tv);
  }
  ~Raw() { redisFree(c_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  RawReply run(int argc, const char** argv, const size_t* lens) {
    RawReply r(static_cast<redisReply*>(redisCommandArgv(c_, argc, argv, lens)));
    if (!r) throw std::runtime_error(std::string("raw hiredis: ") + c_->errstr);
    if (r->type == REDIS_REPLY_ERROR) throw std::runtime_error("raw hiredis: " + std::string(r->str, r->len));
    return r;
  }
  RawReply run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return run(static_cast<int>(args.size()), argv.data(), lens.data());
  }
  // Reads the next pushed message (pub/sub).
  RawReply read() {
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || !r) throw std::runtime_error(std::string("raw hiredis: ") + c_->errstr);
    return RawReply(static_cast<redisReply*>(r));
  }

 private:
  redisContext* c_;
};

// What one would write by hand: SET NX PX, and a compare-and-delete script
// (which also publishes, for the pub/sub waiter).
const char* const kRawRelease =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";
const char* const kRawReleasePublish =
    "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]); "
    "redis.call('publish', KEYS[2], '1'); return 1 end return 0";

class RawLock {
 public:
  RawLock(Raw& raw, std::string key, std::string token, std::string channel = {})
      : raw_(raw), key_(std::move(key)), token_(std::move(token)), channel_(std::move(channel)) {
    sha_ = raw_.run({"SCRIPT", "LOAD", channel_.empty() ? kRawRelease : kRawReleasePublish})->str;
  }
  bool try_lock() {
    const char* argv[] = {"SET", key_.c_str(), token_.c_str(), "NX", "PX", "30000"};
    const size_t lens[] = {3, key_.size(), token_.size(), 2, 2, 5};
    return raw_.run(6, argv, lens)->type == REDIS_REPLY_STATUS;
  }
  void unlock() {
    if (channel_.empty()) {
      const char* argv[] = {"EVALSHA", sha_.c_str(), "1", key_.c_str(), token_.c_str()};
      const size_t lens[] = {7, sha_.size(), 1, key_.size(), token_.size()};
      if (raw_.run(5, argv, lens)->integer != 1) throw std::runtime_error("raw unlock: not ours");
    } else {
      const char* argv[] = {"EVALSHA", sha_.c_str(), "2", key_.c_str(), channel_.c_str(), token_.c_str()};
      const size_t lens[] = {7, sha_.size(), 1, key_.size(), channel_.size(), token_.size()};
      if (raw_.run(6, argv, lens)->integer != 1) throw std::runtime_error("raw unlock: not ours");
    }
  }
  // Spins with a 1 ms sleep: only used where the lock is about to be free.
  void lock_soon() {
    const auto end = Clock::now() + 10s;
    while (!try_lock()) {
      if (Clock::now() > end) throw std::runtime_error("raw lock: still busy after 10 s");
      std::this_thread::sleep_for(1ms);
    }
  }

 private:
  Raw& raw_;
  std::string key_, token_, channel_, sha_;
};

// ---- handoff: the waiter in the child process ---------------------------------

// Keys of one handoff run: the lock, and the lists that pace the two processes.
struct HandoffKeys {
  explicit HandoffKeys(const std::string& prefix)
      : lock(prefix + "lock"), go(prefix + "go"), ready(prefix + "ready"), result(prefix + "result"),
        channel(prefix + "released") {}
  std::string lock, go, ready, result, channel;
};

// Waits for "go", then waits for the lock the parent holds, and reports the
// moment it got it. Modes: redkit (RedisLock::lock), pubsub (raw SET NX,
// woken by a PUBLISH), poll (raw SET NX every 100 ms).
int child_main(const std::string& mode, int port, const std::string& prefix, int rounds) {
  const HandoffKeys k(prefix);
  Raw ctl("127.0.0.1", port);
  auto wait_go = [&] {
    RawReply r = ctl.run({"BLPOP", k.go, "10"});
    if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("child: no go from the parent");
  };
  auto report = [&](long long t1) { ctl.run({"RPUSH", k.result, std::to_string(t1)}); };

  if (mode == "redkit") {
    redkit::Redis client(redkit::Options::from_uri("redis://127.0.0.1:" + std::to_string(port)));
    redkit::RedisLock<> lock(client, k.lock);
    for (int i = 0; i < rounds; ++i) {
      wait_go();
      if (!lock.try_lock_for(10s)) throw std::runtime_error("child: redkit lock not handed over");
      report(now_ns());
      lock.unlock();
    }
    return 0;
  }
  Raw cmd("127.0.0.1", port);
  RawLock lock(cmd, k.lock, "child-token", mode == "pubsub" ? k.channel : std::string());
  std::unique_ptr<Raw> sub;
  if (mode == "pubsub") {
    sub = std::make_unique<Raw>("127.0.0.1", port);
    sub->run({"SUBSCRIBE", k.channel});
  }
  for (int i = 0; i < rounds; ++i) {
    wait_go();
    bool told = false;
    const auto end = Clock::now() + 10s;
    while (!lock.try_lock()) {
      if (Clock::now() > end) throw std::runtime_error("child: raw lock not handed over");
      if (!told) {
        ctl.run({"RPUSH", k.ready, "1"});
        told = true;
      }
      if (sub) {
        sub->read();  // a release was published (or an old one: try again)
      } else {
        std::this_thread::sleep_for(100ms);
      }
    }
    report(now_ns());
    lock.unlock();
  }
  return 0;
}

// ---- handoff: the parent -------------------------------------------------------

long long info_number(Raw& raw, const char* section, const std::string& field) {
  RawReply r = raw.run({"INFO", section});
  const std::string text(r->str, r->len);
  const auto at = text.find(field);
  return at == std::string::npos ? 0 : std::stoll(text.substr(at + field.size()));
}

std::vector<double> handoff_run(redkit::test::RedisServer& server, const std::string& mode, int rounds) {
  const std::string prefix = "bench:handoff:" + mode + ":";
  const HandoffKeys k(prefix);
  Raw ctl(server.host(), server.port());
  Raw cmd(server.host(), server.port());
  redkit::Redis client(redkit::Options::from_uri(server.uri()));
  redkit::RedisLock<> redkit_lock(client, k.lock);
  RawLock raw_lock(cmd, k.lock, "parent-token", mode == "pubsub" ? k.channel : std::string());
  std::mt19937 rng(12345);

  redkit::test::ChildProcess child("/proc/self/exe", {"--child", mode, std::to_string(server.port()), prefix,
                                                      std::to_string(rounds)});
  std::vector<double> latencies_us;
  for (int i = 0; i < rounds; ++i) {
    if (mode == "redkit") {
      if (!redkit_lock.try_lock_for(10s)) throw std::runtime_error("parent: cannot take the lock back");
    } else {
      raw_lock.lock_soon();
    }
    ctl.run({"RPUSH", k.go, "1"});
    if (mode == "redkit") {
      // The waiter is inside lock(): blocked in BLPOP on the wake list.
      const auto end = Clock::now() + 10s;
      while (info_number(ctl, "clients", "blocked_clients:") < 1) {
        if (Clock::now() > end) throw std::runtime_error("parent: the waiter never blocked");
        std::this_thread::sleep_for(200us);
      }
    } else {
      RawReply r = ctl.run({"BLPOP", k.ready, "10"});
      if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("parent: the waiter never got ready");
    }
    // Release at a random phase of the waiter's poll (only the poll cares).
    const int phase_ms = mode == "poll" ? std::uniform_int_distribution<int>(0, 99)(rng) : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(phase_ms));
    const long long t0 = now_ns();
    if (mode == "redkit") {
      redkit_lock.unlock();
    } else {
      raw_lock.unlock();
    }
    RawReply r = ctl.run({"BLPOP", k.result, "10"});
    if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("parent: no result from the waiter");
    const long long t1 = std::stoll(std::string(r->element[1]->str, r->element[1]->len));
    latencies_us.push_back(static_cast<double>(t1 - t0) / 1e3);
  }
  if (child.wait(30s) != 0) throw std::runtime_error("handoff child failed");
  return latencies_us;
}

// ---- waiting cost --------------------------------------------------------------

// Calls of the given commands (INFO commandstats). Only count commands a
// waiter sends itself: commandstats also counts the commands a script runs
// (a redkit acquire's SET NX shows up under "set").
long long command_calls(Raw& raw, std::initializer_list<const char*> commands) {
  long long sum = 0;
  for (const char* c : commands) sum += info_number(raw, "commandstats", std::string("cmdstat_") + c + ":calls=");
  return sum;
}

// What each kind of waiter sends: redkit the acquire script and BLPOP; the
// raw poller SET NX (and the release script once it holds the lock).
long long waiter_commands(Raw& raw, bool redkit_waiters) {
  return redkit_waiters ? command_calls(raw, {"evalsha", "eval", "blpop"}) : command_calls(raw, {"set", "evalsha"});
}

struct WaitCost {
  long long commands = 0;  // sent by the waiters during the hold
  long long total = 0;     // total_commands_processed delta (incl. inside scripts, INFO)
};

WaitCost waiters_during_hold(redkit::test::RedisServer& server, bool use_redkit, int waiters,
                             std::chrono::milliseconds hold) {
  const std::string key = std::string("bench:waiters:") + (use_redkit ? "redkit" : "poll");
  Raw ctl(server.host(), server.port());
  redkit::Redis holder_client(redkit::Options::from_uri(server.uri()));
  redkit::RedisLock<> holder(holder_client, key);
  if (!holder.try_lock()) throw std::runtime_error("waiters: lock busy");
  redkit::Redis client(redkit::Options::from_uri(server.uri()));
  const long long before = waiter_commands(ctl, use_redkit);
  const long long total_before = info_number(ctl, "stats", "total_commands_processed:");
  std::vector<std::thread> threads;
  for (int i = 0; i < waiters; ++i) {
    threads.emplace_back([&, i] {
      if (use_redkit) {
        redkit::RedisLock<> lock(client, key);
        if (lock.try_lock_for(hold + 10s)) lock.unlock();
      } else {
        Raw raw(server.host(), server.port());
        RawLock lock(raw, key, "raw-waiter-" + std::to_string(i));
        const auto end = Clock::now() + hold + 10s;
        bool got = false;
        while (Clock::now() < end && !(got = lock.try_lock())) std::this_thread::sleep_for(100ms);
        if (got) lock.unlock();
      }
    });
  }
  std::this_thread::sleep_for(hold);
  WaitCost cost;
  cost.commands = waiter_commands(ctl, use_redkit) - before;
  cost.total = info_number(ctl, "stats", "total_commands_processed:") - total_before;
  holder.unlock();
  for (auto& t : threads) t.join();
  return cost;
}

// ---- registration and summary --------------------------------------------------

struct PairSample {
  double pairs_per_s;
  double process_cpu_us;  // per pair, every thread of this process
  double thread_cpu_us;   // per pair, the calling thread only
};

// The uncontended sides, run in interleaved rounds.
enum Side { kRedkit, kRaw, kRawRedkitScripts, kSides };
const char* const kSideNames[kSides] = {"redkit", "raw_hiredis", "raw_hiredis_redkit_scripts"};

struct Results {
  std::vector<PairSample> pairs[kSides];
  double server_cpu_s[kSides] = {};  // the server's CPU while each side ran
  double side_pairs[kSides] = {};
  std::map<std::string, std::vector<double>> handoff_us;
  std::map<std::string, WaitCost> waiting;
};
Results results;

// Raw hiredis sending what RedisLock sends for an uncontended pair: a plain
// SET NX PX and its release script, by EVALSHA.
class RawRedkitScripts {
 public:
  RawRedkitScripts(Raw& raw, const std::string& name) : raw_(raw), keys_(redkit::detail::lock_keys(name)) {
    release_sha_ = raw_.run({"SCRIPT", "LOAD", redkit::detail::lock_release_script().source()})->str;
  }
  void pair() {
    const char* acq[] = {"SET", keys_.key.c_str(), token_, "NX", "PX", "30000"};
    const size_t acq_lens[] = {3, keys_.key.size(), 32, 2, 2, 5};
    if (raw_.run(6, acq, acq_lens)->type != REDIS_REPLY_STATUS) throw std::runtime_error("raw scripts: busy");
    const char* rel[] = {"EVALSHA", release_sha_.c_str(), "3", keys_.key.c_str(), keys_.waiting.c_str(),
                         keys_.wake.c_str(), token_, "2000"};
    const size_t rel_lens[] = {7, release_sha_.size(), 1, keys_.key.size(), keys_.waiting.size(),
                               keys_.wake.size(), 32, 4};
    if (raw_.run(8, rel, rel_lens)->integer != 1) throw std::runtime_error("raw scripts: not ours");
  }

 private:
  Raw& raw_;
  redkit::detail::LockKeys keys_;
  std::string release_sha_;
  const char* token_ = "0123456789abcdef0123456789abcdef";
};

void register_uncontended(redkit::test::RedisServer& server, int pairs_per_round, int rounds) {
  static redkit::Redis client([&] {
    redkit::Options o = redkit::Options::from_uri(server.uri());
    o.pool_size = 1;  // one connection on each side
    return o;
  }());
  static redkit::RedisLock<> lock(client, "bench:uncontended:redkit");  // defaults: 30 s ttl, auto-renew
  static Raw raw(server.host(), server.port());
  static RawLock raw_lock(raw, "bench:uncontended:raw", "0123456789abcdef0123456789abcdef");
  static RawRedkitScripts raw_scripts(raw, "bench:uncontended:raw-scripts");
  static const pid_t server_pid = server.pid();

  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kSides; ++k) {
      const auto side = static_cast<Side>((r + k) % kSides);  // rotate which side goes first
      const std::string name =
          std::string("lock_unlock_uncontended/") + kSideNames[side] + "/round:" + std::to_string(r);
      benchmark::RegisterBenchmark(name.c_str(), [side](benchmark::State& st) {
        const double proc0 = cpu_seconds(RUSAGE_SELF);
        const double thread0 = cpu_seconds(RUSAGE_THREAD);
        const double server0 = process_cpu_seconds(server_pid);
        const auto t0 = Clock::now();
        for (auto _ : st) {
          switch (side) {
            case kRedkit:
              lock.lock();
              lock.unlock();
              break;
            case kRaw:
              if (!raw_lock.try_lock()) throw std::runtime_error("raw: busy");
              raw_lock.unlock();
              break;
            default:
              raw_scripts.pair();
          }
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        const auto n = static_cast<double>(st.iterations());
        PairSample s{n / secs, (cpu_seconds(RUSAGE_SELF) - proc0) / n * 1e6,
                     (cpu_seconds(RUSAGE_THREAD) - thread0) / n * 1e6};
        results.pairs[side].push_back(s);
        results.server_cpu_s[side] += process_cpu_seconds(server_pid) - server0;
        results.side_pairs[side] += n;
        st.counters["pairs_per_s"] = s.pairs_per_s;
        st.counters["cpu_us_per_pair"] = s.process_cpu_us;
      })
          ->Iterations(pairs_per_round)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

void register_handoff(redkit::test::RedisServer& server, const std::string& mode, int rounds) {
  benchmark::RegisterBenchmark(("lock_handoff/" + mode).c_str(), [&server, mode, rounds](benchmark::State& st) {
    std::vector<double> us;
    for (auto _ : st) {
      try {
        us = handoff_run(server, mode, rounds);
      } catch (const std::exception& e) {
        st.SkipWithError(e.what());
        return;
      }
    }
    results.handoff_us[mode] = us;
    st.counters["p50_us"] = percentile(us, 50);
    st.counters["p99_us"] = percentile(us, 99);
    st.counters["samples"] = static_cast<double>(us.size());
  })
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

void register_waiting(redkit::test::RedisServer& server, bool use_redkit) {
  const std::string name = std::string("lock_8_waiters_2s_hold/") + (use_redkit ? "redkit" : "raw_poll_100ms");
  benchmark::RegisterBenchmark(name.c_str(), [&server, use_redkit](benchmark::State& st) {
    WaitCost cost;
    for (auto _ : st) cost = waiters_during_hold(server, use_redkit, 8, 2000ms);
    results.waiting[use_redkit ? "redkit" : "raw_poll_100ms"] = cost;
    st.counters["commands"] = static_cast<double>(cost.commands);
    st.counters["commands_incl_in_script"] = static_cast<double>(cost.total);
  })
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

void print_summary() {
  const auto& a = results.pairs[kRedkit];
  for (Side other : {kRaw, kRawRedkitScripts}) {
    const auto& b = results.pairs[other];
    if (a.empty() || b.empty()) continue;
    std::vector<double> ratios, a_ops, b_ops, a_cpu, b_cpu;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      ratios.push_back(a[i].pairs_per_s / b[i].pairs_per_s);
      a_ops.push_back(a[i].pairs_per_s);
      b_ops.push_back(b[i].pairs_per_s);
      a_cpu.push_back(a[i].process_cpu_us);
      b_cpu.push_back(b[i].process_cpu_us);
    }
    std::printf(
        "\nuncontended lock+unlock, redkit vs %s: %.0f vs %.0f pairs/s, ratio %.3fx (median of %zu paired "
        "rounds); client CPU per pair %.2f vs %.2f us; server CPU per pair %.2f vs %.2f us\n",
        kSideNames[other], median(a_ops), median(b_ops), median(ratios), ratios.size(), median(a_cpu),
        median(b_cpu), results.server_cpu_s[kRedkit] / results.side_pairs[kRedkit] * 1e6,
        results.server_cpu_s[other] / results.side_pairs[other] * 1e6);
  }
  for (const auto& [mode, us] : results.handoff_us) {
    std::printf("handoff %-7s p50 %8.3f ms  p99 %8.3f ms  (%zu handoffs, waiter in another process)\n",
                mode.c_str(), percentile(us, 50) / 1e3, percentile(us, 99) / 1e3, us.size());
  }
  for (const auto& [who, cost] : results.waiting) {
    std::printf("8 waiters, 2 s hold, %-15s %lld commands sent (%lld counting commands run inside scripts)\n",
                (who + ":").c_str(), cost.commands, cost.total);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::strcmp(argv[1], "--child") == 0) {
    try {
      return child_main(argv[2], std::atoi(argv[3]), argv[4], std::atoi(argv[5]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lock_bench child: %s\n", e.what());
      return 1;
    }
  }
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  redkit::test::RedisServer server(so);

  register_uncontended(server, /*pairs_per_round=*/2000, /*rounds=*/10);
  register_handoff(server, "redkit", 200);
  register_handoff(server, "pubsub", 200);
  register_handoff(server, "poll", 20);
  register_waiting(server, true);
  register_waiting(server, false);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_summary();
  return 0;
}
