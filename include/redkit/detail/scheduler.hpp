// One background thread per client that runs periodic tasks (lock renewal).
// Thread-safe. The thread starts with the first task and stops with the
// client. cancel() returns only once the task cannot run any more, so a
// lock can stop its renewal before sending its unlock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace redkit::detail {

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;
  /// A periodic task; return the delay until its next run, or a negative
  /// duration to stop.
  using Task = std::function<std::chrono::milliseconds()>;

  Scheduler() = default;
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  ~Scheduler() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  /// Runs task after delay, then again after each delay it returns.
  /// Returns an id for cancel().
  std::uint64_t schedule(std::chrono::milliseconds delay, Task task) {
    std::lock_guard<std::mutex> lk(m_);
    const std::uint64_t id = ++next_id_;
    const Clock::time_point due = Clock::now() + delay;
    const bool earliest = queue_.empty() || due < queue_.begin()->first;
    tasks_.emplace(id, Entry{due, std::move(task)});
    queue_.emplace(due, id);
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { run(); });
    } else if (earliest) {
      wakeups_.fetch_add(1, std::memory_order_relaxed);
      cv_.notify_all();  // only a new first deadline changes what the thread waits for
    }
    return id;
  }

  /// How many times the thread was woken for work: task runs, and new
  /// first deadlines that it had to be told about. For tests and benchmarks
  /// (a lock hold that ends before its first renewal must add nothing).
  std::uint64_t wakeups() const noexcept { return wakeups_.load(std::memory_order_relaxed); }

  /// Removes a task. If it is running on the scheduler thread right now,
  /// waits for that run to end (unless called from the task itself).
  void cancel(std::uint64_t id) noexcept {
    std::unique_lock<std::mutex> lk(m_);
    auto it = tasks_.find(id);
    if (it != tasks_.end()) {
      queue_.erase({it->second.due, id});
      tasks_.erase(it);
    }
    if (std::this_thread::get_id() == thread_.get_id()) return;
    done_cv_.wait(lk, [&] { return running_ != id; });
  }

 private:
  struct Entry {
    Clock::time_point due;
    Task task;
  };

  void run() {
    std::unique_lock<std::mutex> lk(m_);
    while (!stop_) {
      if (queue_.empty()) {
        cv_.wait(lk);
        continue;
      }
      // Copies, not references: cancel() may erase the entry while we wait.
      const auto [due, id] = *queue_.begin();
      if (due > Clock::now()) {
        cv_.wait_until(lk, due);
        continue;
      }
      queue_.erase(queue_.begin());
      Task task = tasks_.at(id).task;
      running_ = id;
      wakeups_.fetch_add(1, std::memory_order_relaxed);
      lk.unlock();
      std::chrono::milliseconds again{-1};
      try {
        again = task();
      } catch (...) {
        // A task reports its own failures; one that throws is dropped.
      }
      lk.lock();
      running_ = 0;
      auto it = tasks_.find(id);
      if (it != tasks_.end()) {
        if (again.count() < 0) {
          tasks_.erase(it);
        } else {
          it->second.due = Clock::now() + again;
          queue_.emplace(it->second.due, id);
        }
      }
      done_cv_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::map<std::uint64_t, Entry> tasks_;                     // by id
  std::set<std::pair<Clock::time_point, std::uint64_t>> queue_;  // by due time
  std::uint64_t next_id_ = 0;
  std::uint64_t running_ = 0;
  bool stop_ = false;
  std::atomic<std::uint64_t> wakeups_{0};
  std::thread thread_;
};

}  // namespace redkit::detail
