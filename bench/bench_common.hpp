// Paired benchmarks: redkit beside raw hiredis doing the same work against
// the same server in the same run.
//
// Loopback figures on a shared VM swing widely from run to run, so a pair
// is registered as interleaved rounds (redkit, raw, raw, redkit, ...), each
// a fixed number of operations, and the summary quotes the median of the
// per-round throughput ratios plus the client CPU per operation measured
// with getrusage(RUSAGE_THREAD). Run pinned: `taskset -c 1`, with the server
// started on CPU 1 too (ServerOptions::cpu_list).
#pragma once

#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/nodes.hpp"

namespace redkit::bench {

/// CPU seconds (user + system) used so far by who: RUSAGE_THREAD or RUSAGE_SELF.
inline double cpu_seconds(int who = RUSAGE_THREAD) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// Nanoseconds on the steady clock (CLOCK_MONOTONIC): one clock for every
/// process on the machine, so a release in one process and an acquire in
/// another can be compared.
inline long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The p-th percentile of v, p in 0..100 (nearest rank; 0 when empty).
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

/// The median of v (0 when empty).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// A number from INFO text: `field:N` (stats, clients, cpu) or the calls of
/// a commandstats line (`cmdstat_<command>:calls=N,...`); 0 when absent.
/// The one INFO parser of the benchmarks (the test support's info_field).
inline double info_number(std::string_view info, std::string_view field) {
  std::string value = redkit::test::info_field(info, field);
  if (value.rfind("calls=", 0) == 0) value.erase(0, 6);
  return value.empty() ? 0 : std::atof(value.c_str());
}

struct Sample {
  double ops_per_s = 0;
  double cpu_us_per_op = 0;
};

/// The names of a pair's two sides: the first is measured over the second.
struct Sides {
  std::string first = "redkit";
  std::string second = "raw_hiredis";
};

/// Interleaved redkit/raw rounds and their summary.
class Pairs {
 public:
  using Body = std::function<void()>;  // one iteration: ops_per_iteration operations

  static Pairs& instance() {
    static Pairs p;
    return p;
  }

  /// Registers `rounds` rounds of each side, alternating which side runs
  /// first, each round `iterations` calls of its body. The ratio is
  /// redkit_side / raw_side; `sides` names them (e.g. tls vs plain).
  void add(const std::string& name, Body redkit_side, Body raw_side, int ops_per_iteration,
           int iterations, int rounds = 10, Sides sides = {}) {
    add(name, std::move(redkit_side), ops_per_iteration, std::move(raw_side), ops_per_iteration, iterations,
        rounds, std::move(sides));
  }

  /// Same, with sides whose bodies do different numbers of operations (a
  /// body of 1,000 near-cache hits beside a body of one GET), so that both
  /// sides of a round take a comparable time.
  void add(const std::string& name, Body redkit_side, int redkit_ops, Body raw_side, int raw_ops, int iterations,
           int rounds, Sides sides = {}) {
    names_.push_back(name);
    sides_[name] = sides;
    for (int r = 0; r < rounds; ++r) {
      const bool redkit_first = r % 2 == 0;
      for (int k = 0; k < 2; ++k) {
        const bool is_redkit = (k == 0) == redkit_first;
        const std::string side = is_redkit ? sides.first : sides.second;
        Body body = is_redkit ? redkit_side : raw_side;
        const int ops_per_iteration = is_redkit ? redkit_ops : raw_ops;
        benchmark::RegisterBenchmark(
            (name + "/" + side + "/round:" + std::to_string(r)).c_str(),
            [this, name, is_redkit, body, ops_per_iteration](benchmark::State& st) {
              const double cpu0 = cpu_seconds();
              const auto t0 = std::chrono::steady_clock::now();
              for (auto _ : st) body();
              const double secs =
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
              const double ops = static_cast<double>(st.iterations()) * ops_per_iteration;
              Sample s{ops / secs, (cpu_seconds() - cpu0) / ops * 1e6};
              (is_redkit ? redkit_[name] : raw_[name]).push_back(s);
              st.counters["ops_per_s"] = s.ops_per_s;
              st.counters["cpu_us_per_op"] = s.cpu_us_per_op;
            })
            ->Iterations(iterations)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
  }

  /// Prints, per pair, the median of the paired throughput ratios
  /// (redkit / raw) and the medians of ops/s and CPU per op.
  void print_summary() const {
    std::printf("\n%-32s %10s %12s %12s %12s %12s\n", "pair", "ratio", "redkit ops/s", "raw ops/s",
                "redkit cpu/op", "raw cpu/op");
    for (const auto& name : names_) {
      if (!redkit_.count(name) || !raw_.count(name)) continue;  // filtered out
      const auto& a = redkit_.at(name);
      const auto& b = raw_.at(name);
      std::vector<double> ratios, ops_a, ops_b, cpu_a, cpu_b;
      for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        ratios.push_back(a[i].ops_per_s / b[i].ops_per_s);
        ops_a.push_back(a[i].ops_per_s);
        ops_b.push_back(b[i].ops_per_s);
        cpu_a.push_back(a[i].cpu_us_per_op);
        cpu_b.push_back(b[i].cpu_us_per_op);
      }
      const Sides& sides = sides_.at(name);
      const bool named = sides.first != Sides{}.first || sides.second != Sides{}.second;
      std::printf("%-32s %9.3fx %12.0f %12.0f %10.3fus %10.2fus   (median of %zu paired rounds%s)\n",
                  name.c_str(), median(ratios), median(ops_a), median(ops_b), median(cpu_a),
                  median(cpu_b), ratios.size(),
                  named ? ("; " + sides.first + " / " + sides.second).c_str() : "");
    }
  }

 private:
  std::vector<std::string> names_;
  std::map<std::string, Sides> sides_;
  std::map<std::string, std::vector<Sample>> redkit_, raw_;
};

/// A raw hiredis connection for the reference side.
class RawHiredis {
 public:
  RawHiredis(const std::string& host, int port) : c_(redisConnect(host.c_str(), port)) {
    if (!c_ || c_->err) throw std::runtime_error("raw hiredis: cannot connect");
  }
  ~RawHiredis() { redisFree(c_); }
  RawHiredis(const RawHiredis&) = delete;
  RawHiredis& operator=(const RawHiredis&) = delete;

  /// Sends one command and checks it got a non-error reply.
  void command(const std::vector<std::string>& argv) {
    append(argv);
    read_one();
  }
  /// Queues a command (hiredis buffers until the next read).
  void append(const std::vector<std::string>& argv) {
    ptrs_.clear();  // reused: no allocation on the reference side's hot path
    lens_.clear();
    for (const auto& a : argv) {
      ptrs_.push_back(a.data());
      lens_.push_back(a.size());
    }
    redisAppendCommandArgv(c_, static_cast<int>(argv.size()), ptrs_.data(), lens_.data());
  }
  void read_one() {
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || !r) throw std::runtime_error("raw hiredis: I/O error");
    const bool err = static_cast<redisReply*>(r)->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (err) throw std::runtime_error("raw hiredis: error reply");
  }

 private:
  redisContext* c_;
  std::vector<const char*> ptrs_;
  std::vector<size_t> lens_;
};

/// Runs the registered benchmarks, then prints the paired summary.
inline int run_main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  Pairs::instance().print_summary();
  return 0;
}

}  // namespace redkit::bench
