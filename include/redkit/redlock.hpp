/// @file redlock.hpp
/// redkit::RedisRedlock, the Redlock algorithm: one lock over N independent
/// Redis masters (not replicas of each other), held when a majority
/// (N/2 + 1) granted it, valid for ttl - elapsed - drift on the steady clock.
/// It has RedisLock's interface (Lockable, TimedLockable, extend, renewal,
/// fencing tokens) and speaks the same protocol on each master, with the
/// same key layout, so a RedisLock on one of the masters sees it too.
///
/// When to use it: when the lock must survive the loss of a master without
/// the failover gap of replication (a replica promoted before it received
/// the lock's write lets a second holder in). It costs N round trips in
/// parallel per operation and waiters poll with backoff instead of being
/// woken. Like every lease-based lock it assumes bounded process pauses and
/// clock drift; see the README section "Lock guarantees".
///
/// Thread safety: as RedisLock. Each operation runs the N per-node calls in
/// parallel (one short-lived thread per node); the per-node timeout is that
/// client's Options::connect_timeout and command_timeout, which should be
/// small against the ttl.
///
/// Exceptions: as RedisLock. An attempt that reaches too few masters is a
/// failed attempt (false, or lock() keeps trying), not an exception: some
/// masters being down is what Redlock is for.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "redkit/error.hpp"
#include "redkit/lock.hpp"
#include "redkit/redis.hpp"

namespace redkit {

namespace detail {

/// The Redlock protocol over N clients: RedisRedlock's backend. Thread-safe.
template <class Client>
class RedlockBackend {
 public:
  RedlockBackend(std::vector<Client> nodes, LockKeys keys)
      : nodes_(std::move(nodes)), keys_(std::move(keys)), quorum_(nodes_.size() / 2 + 1) {}

  /// Acquires on every node in parallel. Held when a quorum granted it and
  /// time is left; then raises the fencing counter of a quorum to the
  /// largest fence granted (a second round), so that any later quorum, which
  /// shares a node with this one, hands out a larger fence. A failed attempt
  /// releases every node.
  LockAttempt try_acquire(const std::string& token, milliseconds ttl, milliseconds /*wait: none*/) {
    const std::string ttl_text = std::to_string(ttl.count());
    const auto start = LockClock::now();
    auto replies = on_nodes(all_nodes(), [&](Client& c) -> std::optional<std::int64_t> {
      // No waiters marker ("0"): redlock waiters sleep, they are not woken.
      Reply r = c.eval(lock_acquire_script(),
                       {std::string_view(keys_.key), std::string_view(keys_.fence),
                        std::string_view(keys_.waiters)},
                       {std::string_view(token), std::string_view(ttl_text), std::string_view("0")});
      const long long fence = r.integer();
      if (fence < 1) return std::nullopt;
      return fence;
    });
    std::vector<std::size_t> granted;
    std::int64_t fence = 0;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i] && *replies[i]) {
        granted.push_back(i);
        fence = std::max(fence, **replies[i]);
      }
    }
    LockAttempt a;
    if (granted.size() >= quorum_ && time_left(start, ttl)) {
      const std::string fence_text = std::to_string(fence);
      auto raised = on_nodes(granted, [&](Client& c) -> bool {
        c.eval(lock_fence_floor_script(), {std::string_view(keys_.fence)}, {std::string_view(fence_text)});
        return true;
      });
      const auto ok = static_cast<std::size_t>(std::count_if(
          raised.begin(), raised.end(), [](const std::optional<bool>& r) { return r.has_value(); }));
      if (ok >= quorum_ && time_left(start, ttl)) {
        a.acquired = true;
        a.fence = fence;
        a.valid_until = start + ttl - drift(ttl);
        return a;
      }
    }
    release(token);
    return a;
  }

  /// Extends on every node in parallel. The new validity when a quorum
  /// extended in time; nullopt when so many nodes answered "not ours" that
  /// no quorum can; otherwise (nodes unreachable) throws IoError.
  std::optional<LockClock::time_point> renew(const std::string& token, milliseconds ttl) {
    const std::string ttl_text = std::to_string(ttl.count());
    const auto start = LockClock::now();
    auto replies = on_nodes(all_nodes(), [&](Client& c) -> bool {
      Reply r = c.eval(lock_extend_script(), {std::string_view(keys_.key)},
                       {std::string_view(token), std::string_view(ttl_text)});
      return r.integer() == 1;
    });
    std::size_t ours = 0;
    std::size_t others = 0;
    for (const auto& r : replies) {
      if (r) ++(*r ? ours : others);
    }
    if (ours >= quorum_ && time_left(start, ttl)) return start + ttl - drift(ttl);
    if (others > nodes_.size() - quorum_) return std::nullopt;
    throw IoError("redkit: redlock '" + keys_.key + "': extend reached " + std::to_string(ours) +
                  " of " + std::to_string(nodes_.size()) + " masters, " + std::to_string(quorum_) +
                  " needed");
  }

  /// Releases on every node in parallel. Never throws.
  void release(const std::string& token) noexcept {
    try {
      on_nodes(all_nodes(), [&](Client& c) -> bool {
        c.eval(lock_release_script(),
               {std::string_view(keys_.key), std::string_view(keys_.wake), std::string_view(keys_.waiters)},
               {std::string_view(token)});
        return true;
      });
    } catch (...) {
    }
  }

  /// Renewal runs on the first master's client's scheduler thread.
  Scheduler& scheduler() noexcept { return nodes_.front().scheduler(); }

  /// Redlock waiters sleep (with the engine's jittered backoff): a wake-up
  /// list on N masters could only wake one of them per release.
  struct Waiter {
    bool wait(milliseconds timeout, bool /*at_deadline*/) {
      if (timeout.count() > 0) std::this_thread::sleep_for(timeout);
      return false;
    }
  };
  Waiter waiter() { return {}; }

  std::size_t size() const noexcept { return nodes_.size(); }
  std::size_t quorum() const noexcept { return quorum_; }

 private:
  // Clock drift allowance of the Redlock algorithm: 1% of the ttl plus 2 ms.
  static milliseconds drift(milliseconds ttl) { return ttl / 100 + milliseconds(2); }

  static bool time_left(LockClock::time_point start, milliseconds ttl) {
    return LockClock::now() < start + ttl - drift(ttl);
  }

  std::vector<std::size_t> all_nodes() const {
    std::vector<std::size_t> v(nodes_.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = i;
    return v;
  }

  // Runs f on the given nodes in parallel; a node whose call threw
  // (unreachable, timed out, error reply) gives nullopt.
  template <class F>
  auto on_nodes(const std::vector<std::size_t>& which, F f)
      -> std::vector<std::optional<decltype(f(std::declval<Client&>()))>> {
    using Result = std::optional<decltype(f(std::declval<Client&>()))>;
    std::vector<std::future<Result>> futures;
    futures.reserve(which.size());
    for (std::size_t i : which) {
      futures.push_back(std::async(std::launch::async, [this, i, &f]() -> Result {
        try {
          return f(nodes_[i]);
        } catch (...) {
          return std::nullopt;
        }
      }));
    }
    std::vector<Result> out;
    out.reserve(futures.size());
    for (auto& fu : futures) out.push_back(fu.get());
    return out;
  }

  std::vector<Client> nodes_;
  const LockKeys keys_;
  const std::size_t quorum_;
};

}  // namespace detail

/// A Redlock over N independent masters (see the file comment).
///
///     std::vector<redkit::Redis> masters{redkit::Redis("redis://a:6379"),
///                                        redkit::Redis("redis://b:6379"),
///                                        redkit::Redis("redis://c:6379")};
///     redkit::RedisRedlock<> lock(masters, "orders:42");
///     if (lock.try_lock_for(std::chrono::seconds(2))) { ...; lock.unlock(); }
template <class Client = Redis>
class RedisRedlock {
 public:
  /// A lock named name over the given masters (at least one; an odd number
  /// tolerates the most failures per master). Does not contact them.
  /// @throws ConfigError for no masters, bad options, wait_replicas set, or
  /// a bad name (as RedisLock).
  RedisRedlock(std::vector<Client> masters, std::string name, LockOptions options = {})
      : engine_(make_backend(std::move(masters), name, options), name, options) {}

  RedisRedlock(RedisRedlock&& other) noexcept = default;
  RedisRedlock& operator=(RedisRedlock&& other) noexcept = default;
  RedisRedlock(const RedisRedlock&) = delete;
  RedisRedlock& operator=(const RedisRedlock&) = delete;
  /// Releases the lock if held. Never throws.
  ~RedisRedlock() = default;

  /// Blocks until a quorum granted the lock. Each attempt sends the acquire
  /// script (EVALSHA) to every master in parallel, then a second script
  /// raising the fencing counters of the granting masters; a failed attempt
  /// releases on every master and sleeps with jittered backoff
  /// (LockOptions::retry_min/retry_max) before the next.
  /// @throws Error if this object already owns the lock; ReplyError is not
  /// thrown (a node's error counts as a refusal).
  void lock() { engine_.acquire_until(detail::LockClock::time_point::max()); }

  /// One attempt on every master in parallel; true if a quorum granted it
  /// with validity left.
  bool try_lock() { return engine_.acquire_until(detail::LockClock::time_point::min()); }

  /// Attempts until held or timeout has passed (an attempt is made at the
  /// deadline). A zero or negative timeout makes one attempt.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return engine_.acquire_until(detail::deadline_after(timeout));
  }

  /// Attempts until held or deadline (of any clock) has passed.
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    for (;;) {
      if (engine_.acquire_until(detail::deadline_after(deadline - Clock::now()))) return true;
      if (Clock::is_steady || Clock::now() >= deadline) return false;
    }
  }

  /// Stops renewal, then releases on every master (token-checked, in
  /// parallel). Never throws; a master it could not reach lets the key
  /// expire by its TTL.
  void unlock() noexcept { engine_.unlock(); }

  /// Extends on every master (token-checked PEXPIRE); true when a quorum
  /// extended it in time. False when not held or when the lock is lost
  /// (too many masters no longer hold our token).
  /// @throws IoError when too few masters answered to tell.
  bool extend(std::chrono::milliseconds ttl) { return engine_.extend(ttl); }

  /// True while held: acquired, not unlocked or reported lost, and within
  /// its validity (start of the last successful acquire or renewal + ttl -
  /// drift) on the steady clock. No round trip.
  bool owns_lock() const noexcept { return engine_.owns_lock(); }

  /// The largest fence the granting masters handed out (0 before the first
  /// acquisition). Strictly greater than every earlier holder's as long as
  /// fewer than a quorum of masters lost their counters at once: each
  /// acquisition raises a quorum's counters to its fence, and any two quorums
  /// share a master.
  std::int64_t fencing_token() const noexcept { return engine_.fencing_token(); }

  /// The random token of the latest acquisition, the value on each master.
  const std::string& token() const noexcept { return engine_.token(); }

  /// The lock's name, which is also its key on each master.
  const std::string& name() const noexcept { return engine_.name(); }

  /// Number of masters, and how many must agree.
  std::size_t masters() const noexcept { return engine_.backend().size(); }
  std::size_t quorum() const noexcept { return engine_.backend().quorum(); }

 private:
  using Backend = detail::RedlockBackend<Client>;

  static std::shared_ptr<Backend> make_backend(std::vector<Client> masters, const std::string& name,
                                               const LockOptions& options) {
    detail::check_lock_options(options);
    if (masters.empty()) throw ConfigError("redkit: a redlock needs at least one master");
    if (options.wait_replicas != 0) {
      throw ConfigError("redkit: wait_replicas does not apply to a redlock (its masters have no replicas to wait for)");
    }
    return std::make_shared<Backend>(std::move(masters), detail::lock_keys(name));
  }

  detail::LockEngine<Backend> engine_;
};

}  // namespace redkit
