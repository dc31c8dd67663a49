// Failover under load: a master is killed (SIGKILL) in the middle of a
// workload of counter increments, on a real cluster and a real sentinel set.
// Pins that operations resume within 10 s and that no call started after
// the first success fails; prints the outage and the increments that were
// acknowledged but lost (replication is asynchronous).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <redkit/cluster.hpp>
#include <redkit/counter.hpp>
#include <redkit/redis.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using redkit::test::RedisServer;

namespace {

/// Threads that increment one counter as fast as they can and keep score.
template <class Client>
class Workload {
 public:
  Workload(Client client, std::string key, int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back(
          [this, client, key]() mutable { run(redkit::RedisCounter<long long, Client>(client, key)); });
    }
  }
  ~Workload() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  /// Marks the moment the master is killed.
  void mark_kill() {
    std::lock_guard<std::mutex> lk(m_);
    killed_at_ = Clock::now();
  }
  /// True once a call started after the kill has succeeded.
  bool resumed() {
    std::lock_guard<std::mutex> lk(m_);
    return resumed_at_ != Clock::time_point{};
  }
  std::chrono::milliseconds outage() {
    std::lock_guard<std::mutex> lk(m_);
    return std::chrono::duration_cast<std::chrono::milliseconds>(resumed_at_ - killed_at_);
  }
  long long acknowledged() const { return acked_; }
  /// Acknowledged increments whose effect was lost, once stopped. The new
  /// master counts on from the last value it received, handing out again
  /// the values the old master acknowledged after that: each such value is
  /// acknowledged twice (every increment on the new master is acknowledged,
  /// as none fails after sending there), so the lost count is exact.
  long long acknowledged_but_lost() {
    std::lock_guard<std::mutex> lk(m_);
    std::vector<long long> v = values_;
    std::sort(v.begin(), v.end());
    return static_cast<long long>(v.size() -
                                  static_cast<std::size_t>(std::unique(v.begin(), v.end()) - v.begin()));
  }
  long long failed_calls() const { return failed_; }
  /// Failed calls that may still have been applied: the command was sent
  /// (an I/O error while reading its reply), unlike a refused connect.
  long long ambiguous_calls() const { return ambiguous_; }
  long long failed_after_resume() const { return failed_after_resume_; }
  std::string first_error() {
    std::lock_guard<std::mutex> lk(m_);
    return first_error_;
  }

 private:
  void run(redkit::RedisCounter<long long, Client> counter) {
    std::vector<long long> values;  // what each acknowledged INCR returned
    while (!stop_) {
      const auto started = Clock::now();
      try {
        values.push_back(counter.incr());
        ++acked_;
        std::lock_guard<std::mutex> lk(m_);
        if (killed_at_ != Clock::time_point{} && started > killed_at_ && resumed_at_ == Clock::time_point{}) {
          resumed_at_ = Clock::now();
        }
      } catch (const redkit::Error& e) {
        ++failed_;
        const std::string what = e.what();
        if (what.find("read from") != std::string::npos || what.find("write to") != std::string::npos)
          ++ambiguous_;
        std::lock_guard<std::mutex> lk(m_);
        if (first_error_.empty()) first_error_ = e.what();
        if (resumed_at_ != Clock::time_point{} && started > resumed_at_) {
          ++failed_after_resume_;
          std::fprintf(stderr, "[failover] error after resume: %s\n", e.what());
        }
        // A caller would back off a little before trying again.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    std::lock_guard<std::mutex> lk(m_);
    values_.insert(values_.end(), values.begin(), values.end());
  }

  std::atomic<bool> stop_{false};
  std::atomic<long long> acked_{0};
  std::atomic<long long> failed_{0};
  std::atomic<long long> ambiguous_{0};
  std::atomic<long long> failed_after_resume_{0};
  std::mutex m_;
  Clock::time_point killed_at_{};
  Clock::time_point resumed_at_{};
  std::string first_error_;
  std::vector<long long> values_;
  std::vector<std::thread> threads_;
};

/// Runs the workload, kills `victim` after 500 ms, and checks and reports
/// what happened. Returns after the workload has stopped.
template <class Client>
void kill_during_workload(const char* what, Client client, const std::string& key, RedisServer& victim) {
  constexpr int kThreads = 4;
  Workload<Client> work(client, key, kThreads);
  std::this_thread::sleep_for(500ms);
  const long long before_kill = work.acknowledged();
  // Marked once the victim is dead (SIGKILL and reaped): a call that started
  // between a mark before the kill and the kill itself could still succeed
  // on the old master and pass for the resumption (then "outage 0 ms", and
  // the outage's errors counted as errors after the resumption).
  victim.kill();
  work.mark_kill();

  const bool resumed = redkit::test::wait_until([&] { return work.resumed(); }, 10s, 5ms);
  // Keep going a while: nothing started after the first success may fail.
  std::this_thread::sleep_for(1500ms);
  work.stop();
  ASSERT_TRUE(resumed) << what << ": no increment succeeded within 10 s of the kill; first error: "
                       << work.first_error();
  EXPECT_EQ(work.failed_after_resume(), 0) << what;

  const long long final_value = redkit::RedisCounter<long long, Client>(client, key).get();
  const long long lost = work.acknowledged_but_lost();
  std::printf(
      "[failover] %s: outage %lld ms (kill to first success); %lld increments acknowledged "
      "(%lld before the kill), final value %lld; %lld acknowledged but lost; %lld calls failed "
      "during the outage, %lld of them after sending (first: %s)\n",
      what, static_cast<long long>(work.outage().count()), work.acknowledged(), before_kill, final_value,
      lost, work.failed_calls(), work.ambiguous_calls(), work.first_error().c_str());
  // Every increment is in the final value once, except the lost ones, plus
  // those whose call failed after sending but that were applied.
  EXPECT_GE(final_value, work.acknowledged() - lost) << what;
  EXPECT_LE(final_value, work.acknowledged() - lost + work.ambiguous_calls()) << what;
  std::fflush(stdout);
  ::testing::Test::RecordProperty("outage_ms", static_cast<int>(work.outage().count()));
  ::testing::Test::RecordProperty("acknowledged_but_lost", static_cast<int>(lost));
  EXPECT_LT(work.outage(), 10s) << what;
  EXPECT_GT(before_kill, 0) << what << ": the workload did not run before the kill";
}

}  // namespace

TEST(Failover, ClusterMasterKilledMidWorkloadResumesWithin10s) {
  auto& cluster = redkit::test::shared_cluster();
  cluster.wait_healthy();  // every replica synced, so one can take over
  const std::string key = redkit::test::unique_prefix() + "failover";
  RedisServer& victim = cluster.master_of(redkit::hash_slot(key));
  redkit::Cluster client(cluster.seed_uri());

  kill_during_workload("cluster", client, key, victim);
  EXPECT_NE(&cluster.master_of(redkit::hash_slot(key)), &victim);
}

TEST(Failover, SentinelMasterKilledMidWorkloadResumesWithin10s) {
  auto& set = redkit::test::shared_sentinel();
  set.wait_ready_for_failover();  // sentinels know the replica and each other
  const std::string key = redkit::test::unique_prefix() + "failover";
  RedisServer& victim = set.current_master();
  redkit::Redis client(set.uri());

  kill_during_workload("sentinel", client, key, victim);

  EXPECT_NE(&set.current_master(), &victim);
}
