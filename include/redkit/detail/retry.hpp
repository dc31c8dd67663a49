// A bounded backoff for the clients that follow failovers (sentinel-mode
// Redis and Cluster), and for the near cache's tracker reconnecting.
// Thread safety: a Backoff belongs to one call (or one thread).
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace redkit::detail {

/// Waits 5, 10, 20, ... up to 100 ms between attempts, and says when a call
/// has used up its budget (measured from construction).
class Backoff {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Backoff(std::chrono::milliseconds budget)
      : deadline_(Clock::now() + (budget.count() > 0 ? budget : std::chrono::milliseconds(1000))) {}

  /// True if another attempt may start after wait().
  bool can_retry() const { return Clock::now() + delay_ <= deadline_; }

  void wait() { std::this_thread::sleep_for(next_delay()); }

  /// The pause before the next attempt (5, 10, 20, ... up to 100 ms), for a
  /// caller that waits in its own way (on a wake-up pipe, say).
  std::chrono::milliseconds next_delay() {
    const std::chrono::milliseconds d = delay_;
    delay_ = std::min(delay_ * 2, std::chrono::milliseconds(100));
    return d;
  }

  /// Back to the first, shortest pause (after an attempt that worked).
  void reset() { delay_ = std::chrono::milliseconds(5); }

 private:
  Clock::time_point deadline_;
  std::chrono::milliseconds delay_{5};
};

}  // namespace redkit::detail
