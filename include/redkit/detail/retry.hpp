// A bounded backoff for the clients that follow failovers (sentinel-mode
// Redis and Cluster). Thread safety: a Backoff belongs to one call.
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

  void wait() {
    std::this_thread::sleep_for(delay_);
    delay_ = std::min(delay_ * 2, std::chrono::milliseconds(100));
  }

 private:
  Clock::time_point deadline_;
  std::chrono::milliseconds delay_{5};
};

}  // namespace redkit::detail
