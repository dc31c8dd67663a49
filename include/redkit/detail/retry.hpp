// Helpers for the clients that follow failovers (sentinel-mode Redis and
// Cluster): a bounded backoff, and running work on a connection that was
// already acquired (so that a failed connect, which proves nothing was sent,
// can be told apart from a failure after sending). Thread safety: a Backoff
// belongs to one call; run_on is as thread-safe as the pool.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>

#include "redkit/connection.hpp"
#include "redkit/detail/pool.hpp"
#include "redkit/error.hpp"

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

/// Runs f(Connection&) on c, which came from pool.acquire(), and gives it
/// back to the pool whatever happens. Mirrors with_connection: a timeout
/// leaves the connection unusable; any other I/O error invalidates the pool.
template <class F>
auto run_on(Pool& pool, std::unique_ptr<Connection> c, F&& f) -> decltype(f(std::declval<Connection&>())) {
  try {
    auto result = f(*c);
    pool.release(std::move(c));
    return result;
  } catch (const TimeoutError&) {
    c->mark_broken();
    pool.release(std::move(c));
    throw;
  } catch (const IoError&) {
    pool.release(std::move(c));
    pool.invalidate();
    throw;
  } catch (...) {
    pool.release(std::move(c));
    throw;
  }
}

}  // namespace redkit::detail
