/// @file lock/options.hpp
/// redkit::LockOptions, the options of RedisLock and RedisRedlock, and their
/// range checks. Thread safety: plain value type.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "redkit/error.hpp"

namespace redkit {

/// Options of a RedisLock (and RedisRedlock). Defaults suit a lock held for
/// seconds to minutes. Every field is range-checked when the lock is built
/// (ConfigError), so no time arithmetic on them can overflow.
struct LockOptions {
  /// Lifetime of the key on the server, 3 ms to 30 days. Without renewal
  /// the lock is gone this long after it was acquired; with renewal, this
  /// long after the last successful renewal.
  std::chrono::milliseconds ttl{30000};

  /// Renew the key every ttl/3 while the lock is held. The client's one
  /// scheduler thread only dispatches renewals; each node's renewals are
  /// sent by a thread of that node (never a thread per lock), so a node
  /// that does not answer delays no other node's renewals. A hold released
  /// before its first renewal is due costs no thread any work.
  bool auto_renew = true;

  /// Called once, on one of the client's background threads (the scheduler
  /// or a node's renewal thread), when a hold stops being ours without
  /// unlock(): a renewal found the key gone or held by another token,
  /// renewals failed (I/O) until our deadline passed, or max_hold ran out.
  /// owns_lock() is already false when it runs. Keep it short and
  /// non-blocking; it must not destroy the lock or its client.
  std::function<void(const std::string& name)> on_lost;

  /// Upper bound (1 ms to 30 days) on how long one acquisition may be kept
  /// alive, by renewal and by extend() alike: the key expires at the latest
  /// this long after it was acquired. Unset: renew for as long as held.
  std::optional<std::chrono::milliseconds> max_hold;

  /// Fallback wait of a waiter that is not woken (1 ms to 1 hour each): it
  /// starts at retry_min and doubles up to retry_max, each wait drawn
  /// uniformly from [d/2, d]; the first wait never outlasts the holder's
  /// remaining TTL. It only matters when no wake-up comes: the holder
  /// crashed, a woken waiter crashed, or the holder does not send wake-ups
  /// (redis-py, redsync). A release by a redkit lock wakes a waiter at once.
  std::chrono::milliseconds retry_min{500};
  /// Longest fallback wait (see retry_min).
  std::chrono::milliseconds retry_max{2000};

  /// After acquiring, send `WAIT wait_replicas wait_timeout` on the same
  /// connection (0 to 1000 replicas; wait_timeout 1 ms to 1 hour). If fewer
  /// replicas acknowledge in time, or the WAIT fails, the lock is released
  /// before the acquire throws (NotReplicatedError, IoError): it does not
  /// return false, since the lock was free. 0: no WAIT. Not available on
  /// RedisRedlock.
  int wait_replicas = 0;
  /// How long the WAIT of wait_replicas waits for the replicas.
  std::chrono::milliseconds wait_timeout{100};

  /// Issue the fencing token inside the acquire (one script: SET NX PX and
  /// the counter together) instead of on the first fencing_token() call.
  /// For users who always need the fence: it saves the fence's round trip
  /// but makes every acquire a script. RedisRedlock always fences on
  /// acquire.
  bool fence_on_acquire = false;
};

namespace detail {

/// Longest ttl, max_hold and extend() lifetime.
inline constexpr std::chrono::milliseconds kMaxLockTtl = std::chrono::hours(24 * 30);
/// Longest retry_min, retry_max and wait_timeout.
inline constexpr std::chrono::milliseconds kMaxLockWait = std::chrono::hours(1);
/// Most replicas a WAIT may ask for.
inline constexpr int kMaxWaitReplicas = 1000;

/// @throws ConfigError "redkit: <type>::<what> of <v> ms is out of range
/// (<range>)" unless lo <= v <= hi. The one range check of the lock's and
/// the semaphore's time options.
inline void check_option_range(const char* type, const char* what, std::chrono::milliseconds v,
                               std::chrono::milliseconds lo, std::chrono::milliseconds hi, const char* range) {
  if (v < lo || v > hi) {
    throw ConfigError(std::string("redkit: ") + type + "::" + what + " of " + std::to_string(v.count()) +
                      " ms is out of range (" + range + ")");
  }
}

/// @throws ConfigError naming the first option out of range.
inline void check_lock_options(const LockOptions& o) {
  using std::chrono::milliseconds;
  auto in = [](milliseconds v, milliseconds lo, milliseconds hi, const char* what, const char* range) {
    check_option_range("LockOptions", what, v, lo, hi, range);
  };
  in(o.ttl, milliseconds(3), kMaxLockTtl, "ttl", "3 ms to 30 days");
  if (o.max_hold) in(*o.max_hold, milliseconds(1), kMaxLockTtl, "max_hold", "1 ms to 30 days");
  in(o.retry_min, milliseconds(1), kMaxLockWait, "retry_min", "1 ms to 1 hour");
  in(o.retry_max, milliseconds(1), kMaxLockWait, "retry_max", "1 ms to 1 hour");
  if (o.retry_max < o.retry_min) throw ConfigError("redkit: LockOptions::retry_max is below retry_min");
  if (o.wait_replicas < 0 || o.wait_replicas > kMaxWaitReplicas) {
    throw ConfigError("redkit: LockOptions::wait_replicas of " + std::to_string(o.wait_replicas) +
                      " is out of range (0 to 1000)");
  }
  if (o.wait_replicas > 0) in(o.wait_timeout, milliseconds(1), kMaxLockWait, "wait_timeout", "1 ms to 1 hour");
}

/// @throws ConfigError for an extend() lifetime out of range.
inline void check_extend_ttl(std::chrono::milliseconds ttl) {
  if (ttl < std::chrono::milliseconds(1) || ttl > kMaxLockTtl) {
    throw ConfigError("redkit: lock extend ttl of " + std::to_string(ttl.count()) +
                      " ms is out of range (1 ms to 30 days)");
  }
}

}  // namespace detail

}  // namespace redkit
