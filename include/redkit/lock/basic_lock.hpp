/// @file lock/basic_lock.hpp
/// detail::BasicLock, the public Lockable / TimedLockable interface of
/// RedisLock and RedisRedlock over their backend (one server, or N masters).
/// What each call sends is said per backend: "one server" is RedisLock,
/// "Redlock" is RedisRedlock.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "redkit/lock/engine.hpp"
#include "redkit/lock/options.hpp"

namespace redkit::detail {

/// Thread safety: like a std::mutex, one object may be used by any number
/// of threads at once. A hold belongs to the thread that took it:
/// owns_lock(), fencing_token(), token(), extend() and unlock() answer for
/// the calling thread, through this object. Threads of one process that
/// want the same name (through one object or several made with the same
/// client) wait in the process; one of them at a time acquires in Redis.
/// Moving or destroying an object while other threads use it is undefined,
/// as for any object.
///
/// Moved-from state: every member throws Error("... was moved from") except
/// owns_lock() (false), unlock() (no-op), assignment and destruction.
template <class Backend>
class BasicLock {
 public:
  BasicLock(BasicLock&& other) noexcept = default;
  /// Releases every hold taken through this object, then takes over
  /// other's name, options and holds.
  BasicLock& operator=(BasicLock&& other) noexcept = default;
  BasicLock(const BasicLock&) = delete;
  BasicLock& operator=(const BasicLock&) = delete;

  /// Blocks until the calling thread holds the lock. One server: one plain
  /// `SET key token NX PX ttl` (with fence_on_acquire: the acquire script,
  /// which also issues the fence); while another process holds it, this
  /// process registers once in the count `{name}:waiters` (EVALSHA) and one of its
  /// threads blocks in BLPOP on `{name}:wake` on one dedicated connection,
  /// woken by the release (or by the fallback wait), then tries again; the
  /// other threads of the process wait in the process. Redlock: the acquire
  /// script on every master in parallel, then a script raising the granting
  /// masters' fencing counters; a failed attempt releases on every master
  /// and sleeps with jittered backoff. @throws IoError (the server cannot be
  /// reached: never reported as "busy"), ReplyError (one server),
  /// NotReplicatedError, Error if the calling thread already holds the
  /// name, or if this object was moved from.
  void lock() { engine_.acquire_until(LockClock::time_point::max()); }

  /// One attempt; true if the calling thread now holds the lock. False at
  /// once, with no round trip, while another thread of this process holds
  /// the name. @throws as lock(), except that it never waits.
  bool try_lock() { return engine_.acquire_until(LockClock::time_point::min()); }

  /// Tries until the lock is the calling thread's or timeout has passed,
  /// waiting as lock() does; returns shortly after the deadline (one more
  /// attempt is made when it comes). A zero or negative timeout makes one
  /// attempt. @throws as lock().
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return engine_.acquire_until(deadline_after(timeout));
  }

  /// Tries until the lock is the calling thread's or deadline (of any
  /// clock) has passed. The wait runs on the steady clock; a clock that is
  /// not steady is checked again when it ends, and waiting goes on if it
  /// went back. @throws as lock().
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    for (;;) {
      if (engine_.acquire_until(deadline_after(deadline - Clock::now()))) return true;
      if (Clock::is_steady || Clock::now() >= deadline) return false;
    }
  }

  /// Releases the calling thread's hold taken through this object: stops
  /// its renewal, then deletes the key where it still holds our token (one
  /// server: one EVALSHA that reads the token and the waiting count in one
  /// MGET, deletes, and, when a process is counted as waiting, turns one
  /// registration into a wake-up in `{name}:wake`; Redlock: the same on every
  /// master in parallel); a key that is gone or another holder's is left
  /// alone. Then the next waiting thread of this process may try. Never
  /// throws: a key it could not reach expires by its TTL. No-op when the
  /// calling thread holds nothing through this object.
  void unlock() noexcept { engine_.unlock(); }

  /// Sets the TTL of the calling thread's hold to ttl (1 ms to 30 days,
  /// capped by max_hold) where the key still holds our token (EVALSHA:
  /// compare, then PEXPIRE; Redlock: on every master, and a quorum must
  /// succeed); later renewals keep this TTL. False, without a round trip,
  /// when the calling thread holds nothing here or its hold is known lost;
  /// false when the key is gone or another's (the hold is then lost).
  /// @throws ConfigError for ttl out of range, IoError (Redlock: too few
  /// masters answered to tell), ReplyError, Error if moved from.
  bool extend(std::chrono::milliseconds ttl) { return engine_.extend(ttl); }

  /// True while the calling thread holds the lock through this object:
  /// acquired, not unlocked, not found lost, and within our deadline on the
  /// steady clock (the time the last acquire or renewal was sent, plus the
  /// TTL; Redlock: less the clock drift allowance). No round trip.
  bool owns_lock() const noexcept { return engine_.owns_lock(); }

  /// The fencing token of the calling thread's hold: strictly greater than
  /// any earlier holder's on this name, in any process. One server: issued
  /// on the first call in a hold by a script that increments the name's
  /// fencing counter only while our token holds the key (EVALSHA), then
  /// cached for the hold; with fence_on_acquire (and Redlock: the largest
  /// fence the granting masters handed out) it came with the acquire and
  /// costs no round trip. Pass it to the resource you protect and have it
  /// refuse writes with a smaller token than it has seen.
  /// @throws LockLostError when the calling thread holds nothing through
  /// this object, or its hold is gone (expired, taken over, found lost:
  /// no fence is issued then), IoError, ReplyError, Error if moved from.
  std::int64_t fencing_token() { return engine_.fencing_token(); }

  /// The random token of the calling thread's hold through this object
  /// (stored as the key's value), "" when it holds nothing here. A fresh one
  /// is drawn for each acquisition. The reference stays valid until this
  /// object's next acquisition or destruction. @throws Error if moved from.
  const std::string& token() const { return engine_.token(); }

  /// The lock's name, which is also its key. @throws Error if moved from.
  const std::string& name() const { return engine_.name(); }

 protected:
  BasicLock(std::shared_ptr<Backend> backend, const std::string& name, const LockOptions& options)
      : engine_(std::move(backend), name, options) {}
  /// Releases every hold taken through this object, by any thread.
  ~BasicLock() = default;
  const Backend& backend() const { return engine_.backend(); }

 private:
  LockEngine<Backend> engine_;
};

}  // namespace redkit::detail
