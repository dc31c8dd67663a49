// Lock renewal that never makes one node's renewals wait for another's.
//
// One Renewer per client per process (client.process_local), holding:
// - the entries: holds that are renewed, each with the time it is next due;
// - one task on the client's scheduler that fires the entries when they are
//   due. Firing never blocks: an entry posts its renewal to a lane and
//   returns. The task is armed for the earliest due time and re-armed only
//   when an earlier one comes, so a hold that ends before its first renewal
//   (ttl/3) never wakes the scheduler thread;
// - the lanes: one thread per node (made on first use, gone after
//   kLaneIdle without work), which sends every renewal queued for its node
//   in one pipeline, the whole batch bounded by command_timeout. A stopped
//   node holds up its own lane only: renewals of the other nodes go on.
//
// Lifetimes: the Renewer holds no client (it lives inside the client's
// per-process state; a client there would keep itself alive). A renewal
// carries a weak handle of the client, owned by the lock; the lock waits
// until its renewals in flight are done (they report done after dropping
// the handle) before it lets the client go, so a lane never holds the last
// handle. Lane completions never touch the scheduler (it may already be
// gone when the client is being destroyed): they only store the entry's
// next due time, which the task reads; while a renewal is in flight the
// task looks again every kInFlightPoll.
//
// Thread safety: every member is thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redkit/command.hpp"
#include "redkit/error.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"
#include "redkit/detail/scheduler.hpp"

namespace redkit::detail {

/// How a renewal went: the key still held our token (Ours), held another
/// or none (NotOurs), or the node could not tell (Failed: I/O, error reply).
enum class RenewOutcome { Ours, NotOurs, Failed };

/// Something the Renewer fires when due (the lock's hold state derives
/// from it).
class RenewalEntry {
 public:
  using Clock = std::chrono::steady_clock;
  /// due() of an entry that needs nothing until someone sets it again.
  static constexpr Clock::rep kIdle = Clock::duration::max().count();
  /// due() of an entry whose renewal is in flight.
  static constexpr Clock::rep kInFlight = kIdle - 1;

  virtual ~RenewalEntry() = default;
  RenewalEntry() = default;
  RenewalEntry(const RenewalEntry&) = delete;
  RenewalEntry& operator=(const RenewalEntry&) = delete;

  /// Runs on the scheduler thread when due (due() was set to kInFlight just
  /// before). Must not block on I/O: it posts its renewal, or ends, and
  /// sets due() again (now or from the renewal's completion).
  virtual void fire(Clock::time_point now) noexcept = 0;

  void set_due(Clock::time_point t) noexcept { due_.store(t.time_since_epoch().count(), std::memory_order_release); }
  void set_due_raw(Clock::rep r) noexcept { due_.store(r, std::memory_order_release); }
  Clock::rep due_raw() const noexcept { return due_.load(std::memory_order_acquire); }

 private:
  template <class>
  friend class Renewer;
  std::atomic<Clock::rep> due_{kIdle};
  std::size_t slot_ = static_cast<std::size_t>(-1);  // in the Renewer's list; guarded by its mutex
};

template <class Client>
class Renewer {
 public:
  using Clock = std::chrono::steady_clock;
  /// A lane with nothing to do ends its thread after this long.
  static constexpr std::chrono::milliseconds kLaneIdle{10000};
  /// While any renewal is in flight, the task looks again this often.
  static constexpr std::chrono::milliseconds kInFlightPoll{20};

  /// One renewal: a script (EVALSHA, and the same by EVAL for a server that
  /// lost its script cache) that answers 1 while the key is ours and 0 when
  /// it is not; done(outcome, sent) runs on the lane thread afterwards, sent
  /// being when the batch was written (the start of the new validity).
  struct Job {
    std::weak_ptr<Client> client;
    Command by_sha;
    Command by_source;
    std::function<void(RenewOutcome, Clock::time_point)> done;
  };

  Renewer() = default;
  Renewer(const Renewer&) = delete;
  Renewer& operator=(const Renewer&) = delete;

  ~Renewer() {
    std::map<std::string, std::shared_ptr<Lane>> lanes;
    {
      std::lock_guard<std::mutex> lk(lanes_m_);
      lanes.swap(lanes_);
    }
    for (auto& entry : lanes) {
      Lane& lane = *entry.second;
      std::thread t;
      {
        std::lock_guard<std::mutex> lk(lane.m);
        lane.stop = true;
        t = std::move(lane.thread);
      }
      lane.cv.notify_all();
      if (!t.joinable()) continue;
      // Never join oneself (a lane thread that let the last client go).
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach();
      } else {
        t.join();
      }
    }
  }

  /// Starts firing entry at its due(). Called with the client alive (its
  /// scheduler is used here).
  void add(const std::shared_ptr<RenewalEntry>& entry, Scheduler& scheduler) {
    std::lock_guard<std::mutex> lk(m_);
    if (entry->slot_ == kNoSlot) {
      entry->slot_ = entries_.size();
      entries_.push_back(entry);
    }
    arm_locked(entry->due_raw(), scheduler);
  }

  /// Makes sure the task runs by entry's (new, earlier) due(). Called with
  /// the client alive.
  void rearm(const RenewalEntry& entry, Scheduler& scheduler) {
    std::lock_guard<std::mutex> lk(m_);
    if (entry.slot_ != kNoSlot) arm_locked(entry.due_raw(), scheduler);
  }

  /// Stops firing entry (a renewal already posted still completes).
  void remove(RenewalEntry& entry) noexcept {
    std::shared_ptr<RenewalEntry> doomed;  // released outside the lock
    std::lock_guard<std::mutex> lk(m_);
    const std::size_t i = entry.slot_;
    if (i == kNoSlot || i >= entries_.size()) return;
    doomed = std::move(entries_[i]);
    if (i + 1 != entries_.size()) {
      entries_[i] = std::move(entries_.back());
      entries_[i]->slot_ = i;
    }
    entries_.pop_back();
    entry.slot_ = kNoSlot;
  }

  /// The name of the one node of a client that does not shard keys, made
  /// with name() on the first call (lock holds ask for it per hold).
  template <class Name>
  std::string single_node(Name&& name) {
    std::lock_guard<std::mutex> lk(lanes_m_);
    if (!single_node_) single_node_ = name();
    return *single_node_;
  }

  /// Queues job on the lane of node (made on first use) and returns at
  /// once. If no lane thread can be started, job.done(Failed) runs here.
  void post(const std::string& node, Job job) noexcept {
    std::shared_ptr<Lane> lane;
    try {
      std::lock_guard<std::mutex> lk(lanes_m_);
      std::shared_ptr<Lane>& slot = lanes_[node];
      if (!slot) slot = std::make_shared<Lane>();
      lane = slot;
    } catch (...) {
      fail(job);
      return;
    }
    std::thread finished;
    {
      std::lock_guard<std::mutex> lk(lane->m);
      if (lane->stop) {
        fail(job);
        return;
      }
      try {
        lane->queue.push_back(std::move(job));
      } catch (...) {
        fail(job);
        return;
      }
      if (lane->running) {
        lane->cv.notify_one();
      } else {
        try {
          finished = std::move(lane->thread);  // one that left after idling, if any
          lane->running = true;
          lane->thread = std::thread([lane] { serve(lane); });
        } catch (...) {
          lane->running = false;
          Job orphan = std::move(lane->queue.back());
          lane->queue.pop_back();
          fail(orphan);
        }
      }
    }
    if (finished.joinable()) finished.join();
  }

 private:
  static constexpr std::size_t kNoSlot = static_cast<std::size_t>(-1);

  struct Lane {
    std::mutex m;
    std::condition_variable cv;
    std::deque<Job> queue;
    std::thread thread;
    bool running = false;  // a thread serves the queue
    bool stop = false;
  };

  static void fail(Job& job) noexcept {
    try {
      if (job.done) job.done(RenewOutcome::Failed, Clock::now());
    } catch (...) {
    }
  }

  // A lane's thread: sends what is queued, in batches, until idle or stopped.
  static void serve(std::shared_ptr<Lane> lane) {
    std::unique_lock<std::mutex> lk(lane->m);
    for (;;) {
      if (lane->stop) {
        std::deque<Job> left;
        left.swap(lane->queue);
        lane->running = false;
        lk.unlock();
        for (Job& job : left) fail(job);
        return;
      }
      if (lane->queue.empty()) {
        if (!lane->cv.wait_for(lk, kLaneIdle, [&] { return lane->stop || !lane->queue.empty(); })) {
          lane->running = false;  // the next post() starts a new thread (and joins this one)
          return;
        }
        continue;
      }
      std::vector<Job> batch;
      batch.reserve(lane->queue.size());
      std::move(lane->queue.begin(), lane->queue.end(), std::back_inserter(batch));
      lane->queue.clear();
      lk.unlock();
      run(batch);
      batch.clear();
      lk.lock();
    }
  }

  // Sends a batch in one pipeline (and the NOSCRIPT ones again by EVAL),
  // then reports each outcome, after dropping the client handle.
  static void run(std::vector<Job>& batch) noexcept {
    std::vector<RenewOutcome> outcome(batch.size(), RenewOutcome::Failed);
    auto sent = Clock::now();
    try {
      std::shared_ptr<Client> client;
      for (Job& job : batch) {
        if ((client = job.client.lock())) break;
      }
      if (client) {
        std::vector<Command> cmds;
        cmds.reserve(batch.size());
        for (Job& job : batch) cmds.push_back(job.by_sha);
        sent = Clock::now();
        std::vector<Reply> replies = client->pipeline(cmds);
        std::vector<std::size_t> redo;
        for (std::size_t i = 0; i < replies.size(); ++i) {
          if (replies[i].is_error() && is_noscript(replies[i].error())) redo.push_back(i);
        }
        if (!redo.empty()) {
          std::vector<Command> again;
          for (std::size_t i : redo) again.push_back(batch[i].by_source);
          std::vector<Reply> more = client->pipeline(again);
          for (std::size_t k = 0; k < redo.size() && k < more.size(); ++k) replies[redo[k]] = std::move(more[k]);
        }
        for (std::size_t i = 0; i < replies.size() && i < batch.size(); ++i) {
          if (replies[i].is_integer()) {
            outcome[i] = replies[i].integer() == 1 ? RenewOutcome::Ours : RenewOutcome::NotOurs;
          }
        }
      }
    } catch (...) {
      // Every outcome stays Failed: tried again soon.
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      try {
        if (batch[i].done) batch[i].done(outcome[i], sent);
      } catch (...) {
      }
    }
  }

  // Caller holds m_. Arms a task for due unless one runs by then already.
  void arm_locked(Clock::rep due, Scheduler& scheduler) {
    if (due >= RenewalEntry::kInFlight) return;
    if (armed_ && armed_due_ <= due) return;
    const std::uint64_t generation = ++generation_;
    armed_ = true;
    armed_due_ = due;
    const auto delay = std::chrono::ceil<std::chrono::milliseconds>(Clock::time_point(Clock::duration(due)) - Clock::now());
    // A task made stale by this one stops itself when it next runs.
    scheduler.schedule(std::max(delay, std::chrono::milliseconds(0)), [this, generation] { return run_task(generation); });
  }

  // The task: fires what is due, then says when to run again.
  std::chrono::milliseconds run_task(std::uint64_t generation) {
    const std::chrono::milliseconds stop{-1};
    std::vector<std::shared_ptr<RenewalEntry>> due;
    {
      std::lock_guard<std::mutex> lk(m_);
      if (generation != generation_) return stop;
      const Clock::rep now = Clock::now().time_since_epoch().count();
      for (const auto& e : entries_) {
        if (e->due_raw() <= now) {
          e->set_due_raw(RenewalEntry::kInFlight);
          due.push_back(e);
        }
      }
    }
    const auto now = Clock::now();
    for (const auto& e : due) e->fire(now);
    due.clear();

    std::lock_guard<std::mutex> lk(m_);
    if (generation != generation_) return stop;
    Clock::rep next = RenewalEntry::kIdle;
    bool in_flight = false;
    for (const auto& e : entries_) {
      const Clock::rep d = e->due_raw();
      if (d == RenewalEntry::kInFlight) {
        in_flight = true;
      } else {
        next = std::min(next, d);
      }
    }
    const auto later = Clock::now();
    if (in_flight) next = std::min(next, (later + kInFlightPoll).time_since_epoch().count());
    if (next == RenewalEntry::kIdle) {
      armed_ = false;
      return stop;
    }
    armed_due_ = next;
    const auto delay = std::chrono::ceil<std::chrono::milliseconds>(Clock::time_point(Clock::duration(next)) - later);
    return std::max(delay, std::chrono::milliseconds(0));
  }

  std::mutex m_;
  std::vector<std::shared_ptr<RenewalEntry>> entries_;
  bool armed_ = false;
  Clock::rep armed_due_ = 0;
  std::uint64_t generation_ = 0;

  std::mutex lanes_m_;  // guards the two below
  std::map<std::string, std::shared_ptr<Lane>> lanes_;
  std::optional<std::string> single_node_;
};

}  // namespace redkit::detail
