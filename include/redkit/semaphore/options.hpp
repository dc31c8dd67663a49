/// @file semaphore/options.hpp
/// redkit::SemaphoreOptions, the options of RedisSemaphore, and their range
/// checks. Thread safety: plain value type.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "redkit/error.hpp"
#include "redkit/lock/options.hpp"

namespace redkit {

/// Options of a RedisSemaphore. Every field is range-checked when the
/// semaphore is built (ConfigError), so no time arithmetic on them can
/// overflow.
struct SemaphoreOptions {
  /// Lifetime of a permit on the server, 3 ms to 30 days: without renewal a
  /// permit is free again this long after it was acquired (the holder
  /// crashed, hung, or forgot it); with renewal, this long after the last
  /// successful renewal. Measured on the server's clock.
  std::chrono::milliseconds ttl{30000};

  /// Renew every permit every ttl/3 while it is held, through the client's
  /// renewal machinery shared with RedisLock: the client's one scheduler
  /// thread dispatches, one thread per node sends that node's renewals in
  /// one pipeline; never a thread per permit. A permit released before its
  /// first renewal is due costs no thread any work.
  bool auto_renew = true;

  /// Called once per permit, on one of the client's background threads,
  /// when a permit stops being ours without release(): a renewal found it
  /// gone (expired, deleted) or renewals failed (I/O) until our deadline
  /// passed. Its argument is the semaphore's name; owns() is already false
  /// when it runs. Keep it short; it must not destroy the semaphore's client.
  std::function<void(const std::string& name)> on_lost;

  /// Fallback wait of a waiter that is not woken (1 ms to 1 hour each): it
  /// starts at retry_min and doubles up to retry_max, each wait drawn
  /// uniformly from [d/2, d]; it never outlasts the earliest permit's
  /// remaining lifetime. It only matters when no wake-up comes (a holder
  /// crashed and its permit expired, or a woken waiter crashed): a
  /// release() wakes one waiting process at once.
  std::chrono::milliseconds retry_min{500};
  /// Longest fallback wait (see retry_min); not below retry_min.
  std::chrono::milliseconds retry_max{2000};
};

namespace detail {

/// Most permits one semaphore may have.
inline constexpr std::int64_t kMaxPermits = 1000000000;

/// @throws ConfigError naming the first option out of range, or a permit
/// count outside 1 to kMaxPermits.
inline void check_semaphore_options(std::int64_t permits, const SemaphoreOptions& o) {
  using std::chrono::milliseconds;
  if (permits < 1 || permits > kMaxPermits) {
    throw ConfigError("redkit: semaphore permits of " + std::to_string(permits) +
                      " is out of range (1 to 1000000000)");
  }
  auto in = [](milliseconds v, milliseconds lo, milliseconds hi, const char* what, const char* range) {
    check_option_range("SemaphoreOptions", what, v, lo, hi, range);
  };
  in(o.ttl, milliseconds(3), kMaxLockTtl, "ttl", "3 ms to 30 days");
  in(o.retry_min, milliseconds(1), kMaxLockWait, "retry_min", "1 ms to 1 hour");
  in(o.retry_max, milliseconds(1), kMaxLockWait, "retry_max", "1 ms to 1 hour");
  if (o.retry_max < o.retry_min) throw ConfigError("redkit: SemaphoreOptions::retry_max is below retry_min");
}

/// The hold options a permit is renewed with (the lock's renewal state
/// machine, detail::HoldState, reads these).
inline LockOptions permit_hold_options(const SemaphoreOptions& o) {
  LockOptions l;
  l.ttl = o.ttl;
  l.auto_renew = o.auto_renew;
  l.on_lost = o.on_lost;
  l.retry_min = o.retry_min;
  l.retry_max = o.retry_max;
  return l;
}

}  // namespace detail

}  // namespace redkit
