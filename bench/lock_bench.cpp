// RedisLock beside raw hiredis doing the same work, in the same run, against
// one redis-server pinned to CPU 1:
//   1. uncontended lock()+unlock() pairs/s, reusing one lock object and with
//      a fresh object per pair, vs raw `SET NX PX` + EVALSHA
//      compare-and-delete: interleaved rounds, median of the paired ratios,
//      client CPU per pair (whole process, so background threads count),
//      server calls per pair (INFO total_commands_processed, which counts
//      calls inside scripts) and scheduler wake-ups per pair; a fourth side,
//      raw hiredis sending redkit's own commands, separates the library's
//      cost from the protocol's;
//   2. handoff latency: a release in this process -> a waiter blocked in
//      another process acquires; redkit vs raw pub/sub vs a 100 ms poll loop,
//      with the lock server's commands per handoff (the two processes pace
//      each other through a second server, so the lock server counts lock
//      traffic only);
//   3. thread-to-thread handoff inside one process (two threads sharing one
//      RedisLock);
//   4. every command the server processes while 8 waiters wait through a
//      2 s hold: 8 threads of one process, 8 clients (8 waiters in Redis, as
//      from 8 processes), vs 8 raw waiters polling every 100 ms.
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
using redkit::bench::now_ns;
using redkit::bench::percentile;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

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

long long info_number(Raw& raw, const char* section, const std::string& field) {
  RawReply r = raw.run({"INFO", section});
  return static_cast<long long>(redkit::bench::info_number(std::string_view(r->str, r->len), field));
}

// Every command the server processed, calls inside scripts included, not
// counting the INFO that reads it.
long long server_commands(Raw& raw) { return info_number(raw, "stats", "total_commands_processed"); }
long long info_calls(Raw& raw) { return info_number(raw, "commandstats", "cmdstat_info"); }

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

 private:
  Raw& raw_;
  std::string key_, token_, channel_, sha_;
};

// ---- handoff across processes: the waiter in the child process ----------------

// Keys of one handoff run: the lock (on the lock server), and the lists that
// pace the two processes (on the control server).
struct HandoffKeys {
  explicit HandoffKeys(const std::string& prefix)
      : lock(prefix + "lock"), go(prefix + "go"), ready(prefix + "ready"), result(prefix + "result"),
        channel(prefix + "released") {}
  std::string lock, go, ready, result, channel;
};

// Waits for "go", then waits for the lock the parent holds, notes the moment
// it got it, releases it, and reports that moment. Modes: redkit
// (RedisLock::try_lock_for), pubsub (raw SET NX, woken by a PUBLISH), poll
// (raw SET NX every 100 ms).
int child_main(const std::string& mode, int lock_port, int control_port, const std::string& prefix, int rounds) {
  const HandoffKeys k(prefix);
  Raw ctl("127.0.0.1", control_port);
  auto wait_go = [&] {
    RawReply r = ctl.run({"BLPOP", k.go, "10"});
    if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("child: no go from the parent");
  };
  auto report = [&](long long t1) { ctl.run({"RPUSH", k.result, std::to_string(t1)}); };

  if (mode == "redkit") {
    redkit::Redis client(redkit::Options::from_uri("redis://127.0.0.1:" + std::to_string(lock_port)));
    redkit::RedisLock<> lock(client, k.lock);
    for (int i = 0; i < rounds; ++i) {
      wait_go();
      if (!lock.try_lock_for(10s)) throw std::runtime_error("child: redkit lock not handed over");
      const long long t1 = now_ns();
      lock.unlock();
      report(t1);
    }
    return 0;
  }
  Raw cmd("127.0.0.1", lock_port);
  RawLock lock(cmd, k.lock, "child-token", mode == "pubsub" ? k.channel : std::string());
  std::unique_ptr<Raw> sub;
  if (mode == "pubsub") {
    sub = std::make_unique<Raw>("127.0.0.1", lock_port);
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
    const long long t1 = now_ns();
    lock.unlock();
    report(t1);
  }
  return 0;
}

// ---- handoff across processes: the parent --------------------------------------

struct Handoff {
  std::vector<double> latency_us;
  double commands_per_round = 0;  // the lock server's, lock traffic only
};

Handoff handoff_run(redkit::test::RedisServer& server, redkit::test::RedisServer& control, const std::string& mode,
                    int rounds) {
  const std::string prefix = "bench:handoff:" + mode + ":";
  const HandoffKeys k(prefix);
  Raw ctl(control.host(), control.port());
  Raw probe(server.host(), server.port());  // INFO only (subtracted)
  Raw cmd(server.host(), server.port());
  redkit::Redis client(redkit::Options::from_uri(server.uri()));
  redkit::RedisLock<> redkit_lock(client, k.lock);
  RawLock raw_lock(cmd, k.lock, "parent-token", mode == "pubsub" ? k.channel : std::string());
  std::mt19937 rng(12345);

  redkit::test::ChildProcess child("/proc/self/exe", {"--child", mode, std::to_string(server.port()),
                                                      std::to_string(control.port()), prefix,
                                                      std::to_string(rounds + 1)});  // and a warm-up round
  Handoff out;
  // One warm-up round (scripts loaded, connections open) before counting.
  long long commands0 = 0, info0 = 0;
  for (int i = 0; i <= rounds; ++i) {
    if (i == 1) {
      commands0 = server_commands(probe);
      info0 = info_calls(probe);
    }
    if (mode == "redkit") {
      if (!redkit_lock.try_lock()) throw std::runtime_error("parent: cannot take the lock back");
    } else if (!raw_lock.try_lock()) {
      throw std::runtime_error("parent: cannot take the raw lock back");
    }
    ctl.run({"RPUSH", k.go, "1"});
    if (mode == "redkit") {
      // The waiter is inside try_lock_for(): blocked in BLPOP on the wake list.
      const auto end = Clock::now() + 10s;
      while (info_number(probe, "clients", "blocked_clients") < 1) {
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
    if (i > 0) out.latency_us.push_back(static_cast<double>(t1 - t0) / 1e3);
  }
  const long long infos = info_calls(probe) - info0;  // the INFO polls, and the reads of the counters
  out.commands_per_round = static_cast<double>(server_commands(probe) - commands0 - infos) / rounds;
  if (child.wait(30s) != 0) throw std::runtime_error("handoff child failed");
  return out;
}

// ---- handoff between two threads of one process ----------------------------------

std::vector<double> thread_handoff_run(redkit::test::RedisServer& server, int rounds) {
  redkit::Redis client(redkit::Options::from_uri(server.uri()));
  redkit::RedisLock<> lock(client, "bench:thread-handoff");  // one object, shared by both threads
  std::vector<double> latency_us;
  std::atomic<long long> released_at{0};
  std::atomic<int> held{-1}, ready{-1}, done{-1};  // the round each step has reached
  auto wait_for = [](std::atomic<int>& a, int round) {
    while (a.load() < round) std::this_thread::yield();
  };
  std::thread holder([&] {
    for (int i = 0; i < rounds; ++i) {
      lock.lock();
      held = i;
      wait_for(ready, i);
      std::this_thread::sleep_for(2ms);  // pacing: the waiter is inside lock() by now
      released_at = now_ns();
      lock.unlock();
      wait_for(done, i);
    }
  });
  std::thread waiter([&] {
    for (int i = 0; i < rounds; ++i) {
      wait_for(held, i);
      ready = i;
      lock.lock();
      const long long t1 = now_ns();
      latency_us.push_back(static_cast<double>(t1 - released_at.load()) / 1e3);
      lock.unlock();
      done = i;
    }
  });
  holder.join();
  waiter.join();
  return latency_us;
}

// ---- waiting cost --------------------------------------------------------------

enum class WaitMode { RedkitThreads, RedkitClients, RawPoll };
const char* wait_mode_name(WaitMode m) {
  switch (m) {
    case WaitMode::RedkitThreads: return "redkit_8_threads_one_client";
    case WaitMode::RedkitClients: return "redkit_8_clients";
    default: return "raw_poll_100ms";
  }
}

// Every command the server processed during the hold, calls inside scripts
// included (total_commands_processed), less the INFO that read it.
long long waiters_during_hold(redkit::test::RedisServer& server, WaitMode mode, int waiters,
                              std::chrono::milliseconds hold) {
  const std::string key = std::string("bench:waiters:") + wait_mode_name(mode);
  Raw ctl(server.host(), server.port());
  redkit::Redis holder_client(redkit::Options::from_uri(server.uri()));
  redkit::RedisLock<> holder(holder_client, key);
  if (!holder.try_lock()) throw std::runtime_error("waiters: lock busy");
  std::vector<redkit::Redis> clients;
  const int n_clients = mode == WaitMode::RedkitClients ? waiters : 1;
  for (int i = 0; i < n_clients; ++i) {
    clients.emplace_back(redkit::Options::from_uri(server.uri()));
    clients.back().command({"PING"});  // connected before counting
  }
  std::vector<std::unique_ptr<Raw>> raws;
  if (mode == WaitMode::RawPoll) {
    for (int i = 0; i < waiters; ++i) raws.push_back(std::make_unique<Raw>(server.host(), server.port()));
  }
  const long long before = server_commands(ctl);
  std::vector<std::thread> threads;
  for (int i = 0; i < waiters; ++i) {
    threads.emplace_back([&, i] {
      if (mode != WaitMode::RawPoll) {
        redkit::RedisLock<> lock(clients[static_cast<std::size_t>(i % n_clients)], key);
        if (lock.try_lock_for(hold + 10s)) lock.unlock();
      } else {
        RawLock lock(*raws[static_cast<std::size_t>(i)], key, "raw-waiter-" + std::to_string(i));
        const auto end = Clock::now() + hold + 10s;
        bool got = false;
        while (Clock::now() < end && !(got = lock.try_lock())) std::this_thread::sleep_for(100ms);
        if (got) lock.unlock();
      }
    });
  }
  std::this_thread::sleep_for(hold);
  const long long commands = server_commands(ctl) - before - 1;
  holder.unlock();
  for (auto& t : threads) t.join();
  return commands;
}

// ---- the uncontended sides -------------------------------------------------------

struct PairSample {
  double pairs_per_s;
  double process_cpu_us;  // per pair, every thread of this process
};

enum Side { kRedkitReused, kRedkitFresh, kRaw, kRawRedkitCommands, kSides };
const char* const kSideNames[kSides] = {"redkit_reused_object", "redkit_fresh_object", "raw_hiredis",
                                        "raw_hiredis_redkit_commands"};

struct Results {
  std::vector<PairSample> pairs[kSides];
  double server_cpu_s[kSides] = {};  // the server's CPU while each side ran
  double server_calls[kSides] = {};  // total_commands_processed while each side ran
  double wakeups[kSides] = {};       // scheduler wake-ups while each side ran
  double side_pairs[kSides] = {};
  std::map<std::string, Handoff> handoff;
  std::vector<double> thread_handoff_us;
  std::map<std::string, long long> waiting;
};
Results results;

// Raw hiredis sending what RedisLock sends for an uncontended pair: a plain
// SET NX PX and its release script, by EVALSHA.
class RawRedkitCommands {
 public:
  RawRedkitCommands(Raw& raw, const std::string& name) : raw_(raw), keys_(redkit::detail::lock_keys(name)) {
    release_sha_ = raw_.run({"SCRIPT", "LOAD", redkit::detail::lock_release_script().source()})->str;
  }
  void pair() {
    const char* acq[] = {"SET", keys_.key.c_str(), token_, "NX", "PX", "30000"};
    const size_t acq_lens[] = {3, keys_.key.size(), 32, 2, 2, 5};
    if (raw_.run(6, acq, acq_lens)->type != REDIS_REPLY_STATUS) throw std::runtime_error("raw commands: busy");
    const char* rel[] = {"EVALSHA", release_sha_.c_str(), "3", keys_.key.c_str(), keys_.waiting.c_str(),
                         keys_.wake.c_str(), token_, "2000"};
    const size_t rel_lens[] = {7, release_sha_.size(), 1, keys_.key.size(), keys_.waiting.size(),
                               keys_.wake.size(), 32, 4};
    if (raw_.run(8, rel, rel_lens)->integer != 1) throw std::runtime_error("raw commands: not ours");
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
  static Raw probe(server.host(), server.port());
  static RawLock raw_lock(raw, "bench:uncontended:raw", "0123456789abcdef0123456789abcdef");
  static RawRedkitCommands raw_commands(raw, "bench:uncontended:raw-commands");
  static const pid_t server_pid = server.pid();

  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kSides; ++k) {
      const auto side = static_cast<Side>((r + k) % kSides);  // rotate which side goes first
      const std::string name =
          std::string("lock_unlock_uncontended/") + kSideNames[side] + "/round:" + std::to_string(r);
      benchmark::RegisterBenchmark(name.c_str(), [side](benchmark::State& st) {
        const long long calls0 = server_commands(probe);
        const auto wake0 = client.scheduler().wakeups();
        const double proc0 = cpu_seconds(RUSAGE_SELF);
        const double server0 = process_cpu_seconds(server_pid);
        const auto t0 = Clock::now();
        for (auto _ : st) {
          switch (side) {
            case kRedkitReused:
              lock.lock();
              lock.unlock();
              break;
            case kRedkitFresh: {
              redkit::RedisLock<> fresh(client, "bench:uncontended:redkit-fresh");
              fresh.lock();
              fresh.unlock();
              break;
            }
            case kRaw:
              if (!raw_lock.try_lock()) throw std::runtime_error("raw: busy");
              raw_lock.unlock();
              break;
            default:
              raw_commands.pair();
          }
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        const double proc = cpu_seconds(RUSAGE_SELF) - proc0;
        const double server_cpu = process_cpu_seconds(server_pid) - server0;
        const auto n = static_cast<double>(st.iterations());
        const double calls = static_cast<double>(server_commands(probe) - calls0 - 1);
        results.pairs[side].push_back(PairSample{n / secs, proc / n * 1e6});
        results.server_cpu_s[side] += server_cpu;
        results.server_calls[side] += calls;
        results.wakeups[side] += static_cast<double>(client.scheduler().wakeups() - wake0);
        results.side_pairs[side] += n;
        st.counters["pairs_per_s"] = n / secs;
        st.counters["cpu_us_per_pair"] = proc / n * 1e6;
        st.counters["server_calls_per_pair"] = calls / n;
      })
          ->Iterations(pairs_per_round)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

// The sample count and the distribution, for bench/report.py's chart
// (--benchmark_out JSON).
void percentile_counters(benchmark::State& st, const std::vector<double>& us) {
  st.counters["samples"] = static_cast<double>(us.size());
  for (int p : {0, 5, 10, 20, 30, 40, 60, 70, 80, 90, 95, 100}) {
    st.counters["p" + std::to_string(p) + "_us"] = percentile(us, p);
  }
}

void register_handoff(redkit::test::RedisServer& server, redkit::test::RedisServer& control, const std::string& mode,
                      int rounds) {
  benchmark::RegisterBenchmark(("lock_handoff_across_processes/" + mode).c_str(),
                               [&server, &control, mode, rounds](benchmark::State& st) {
                                 Handoff h;
                                 for (auto _ : st) {
                                   try {
                                     h = handoff_run(server, control, mode, rounds);
                                   } catch (const std::exception& e) {
                                     st.SkipWithError(e.what());
                                     return;
                                   }
                                 }
                                 results.handoff[mode] = h;
                                 st.counters["p50_us"] = percentile(h.latency_us, 50);
                                 st.counters["p99_us"] = percentile(h.latency_us, 99);
                                 st.counters["server_commands_per_handoff"] = h.commands_per_round;
                                 percentile_counters(st, h.latency_us);
                               })
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

void register_thread_handoff(redkit::test::RedisServer& server, int rounds) {
  benchmark::RegisterBenchmark("lock_handoff_between_threads/redkit", [&server, rounds](benchmark::State& st) {
    std::vector<double> us;
    for (auto _ : st) us = thread_handoff_run(server, rounds);
    results.thread_handoff_us = us;
    st.counters["p50_us"] = percentile(us, 50);
    st.counters["p99_us"] = percentile(us, 99);
    percentile_counters(st, us);
  })
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

void register_waiting(redkit::test::RedisServer& server, WaitMode mode) {
  const std::string name = std::string("lock_8_waiters_2s_hold/") + wait_mode_name(mode);
  benchmark::RegisterBenchmark(name.c_str(), [&server, mode](benchmark::State& st) {
    long long commands = 0;
    for (auto _ : st) commands = waiters_during_hold(server, mode, 8, 2000ms);
    results.waiting[wait_mode_name(mode)] = commands;
    st.counters["server_commands"] = static_cast<double>(commands);
  })
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

void print_summary() {
  const auto& raw = results.pairs[kRaw];
  for (Side side : {kRedkitReused, kRedkitFresh, kRawRedkitCommands}) {
    const auto& a = results.pairs[side];
    if (a.empty() || raw.empty()) continue;
    std::vector<double> ratios, a_ops, b_ops, a_cpu, b_cpu;
    for (std::size_t i = 0; i < std::min(a.size(), raw.size()); ++i) {
      ratios.push_back(a[i].pairs_per_s / raw[i].pairs_per_s);
      a_ops.push_back(a[i].pairs_per_s);
      b_ops.push_back(raw[i].pairs_per_s);
      a_cpu.push_back(a[i].process_cpu_us);
      b_cpu.push_back(raw[i].process_cpu_us);
    }
    std::printf(
        "\nuncontended lock+unlock, %s vs raw_hiredis: %.0f vs %.0f pairs/s, ratio %.3fx (median of %zu paired "
        "rounds); client CPU per pair %.2f vs %.2f us; server CPU per pair %.2f vs %.2f us; server calls per "
        "pair %.2f vs %.2f; scheduler wake-ups per 1000 pairs %.2f\n",
        kSideNames[side], median(a_ops), median(b_ops), median(ratios), ratios.size(), median(a_cpu), median(b_cpu),
        results.server_cpu_s[side] / results.side_pairs[side] * 1e6,
        results.server_cpu_s[kRaw] / results.side_pairs[kRaw] * 1e6,
        results.server_calls[side] / results.side_pairs[side], results.server_calls[kRaw] / results.side_pairs[kRaw],
        results.wakeups[side] / results.side_pairs[side] * 1000);
  }
  std::printf("\n");
  for (const auto& [mode, h] : results.handoff) {
    std::printf(
        "handoff across processes, %-7s p50 %8.3f ms  p99 %8.3f ms  server commands per handoff %.2f  (%zu handoffs)\n",
        mode.c_str(), percentile(h.latency_us, 50) / 1e3, percentile(h.latency_us, 99) / 1e3, h.commands_per_round,
        h.latency_us.size());
  }
  if (results.handoff.count("redkit") && results.handoff.count("pubsub")) {
    std::printf("server commands per handoff, redkit / raw pub/sub: %.2fx\n",
                results.handoff["redkit"].commands_per_round / results.handoff["pubsub"].commands_per_round);
  }
  if (!results.thread_handoff_us.empty()) {
    std::printf("handoff between two threads of one process: p50 %.1f us  p99 %.1f us  (%zu handoffs)\n",
                percentile(results.thread_handoff_us, 50), percentile(results.thread_handoff_us, 99),
                results.thread_handoff_us.size());
  }
  for (const auto& [who, commands] : results.waiting) {
    std::printf("8 waiters, 2 s hold, %-28s %lld server commands (total_commands_processed, calls in scripts included)\n",
                (who + ":").c_str(), commands);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 7 && std::strcmp(argv[1], "--child") == 0) {
    try {
      return child_main(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argv[5], std::atoi(argv[6]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lock_bench child: %s\n", e.what());
      return 1;
    }
  }
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  redkit::test::RedisServer server(so);
  redkit::test::RedisServer control(so);  // paces the handoff processes; its commands are not counted

  register_uncontended(server, /*pairs_per_round=*/2000, /*rounds=*/10);
  register_handoff(server, control, "redkit", 200);
  register_handoff(server, control, "pubsub", 200);
  register_handoff(server, control, "poll", 20);
  register_thread_handoff(server, 200);
  register_waiting(server, WaitMode::RedkitThreads);
  register_waiting(server, WaitMode::RedkitClients);
  register_waiting(server, WaitMode::RawPoll);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_summary();
  return 0;
}
