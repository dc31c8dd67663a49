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

/// A Redlock over N independent masters (see the file comment). Its members
/// are those of detail::BasicLock (lock, try_lock, try_lock_for,
/// try_lock_until, unlock, extend, owns_lock, fencing_token, token, name),
/// plus masters() and quorum(). fencing_token() is the largest fence the
/// granting masters handed out; each acquisition raises a quorum's counters
/// to it, and any two quorums share a master, so it is strictly greater than
/// every earlier holder's as long as fewer than a quorum of masters lose
/// their counters at once.
///
///     std::vector<redkit::Redis> masters{redkit::Redis("redis://a:6379"),
///                                        redkit::Redis("redis://b:6379"),
///                                        redkit::Redis("redis://c:6379")};
///     redkit::RedisRedlock<> lock(masters, "orders:42");
///     if (lock.try_lock_for(std::chrono::seconds(2))) { ...; lock.unlock(); }
template <class Client = Redis>
class RedisRedlock : public detail::BasicLock<detail::RedlockBackend<Client>> {
  using Backend = detail::RedlockBackend<Client>;

 public:
  /// A lock named name over the given masters (at least one; an odd number
  /// tolerates the most failures per master). Does not contact them.
  /// @throws ConfigError for no masters, bad options, wait_replicas set, or
  /// a bad name (as RedisLock).
  RedisRedlock(std::vector<Client> masters, std::string name, LockOptions options = {})
      : detail::BasicLock<Backend>(make_backend(std::move(masters), name, options), name, options) {}

  /// Number of masters.
  std::size_t masters() const noexcept { return this->backend().size(); }
  /// How many masters must grant the lock: masters() / 2 + 1.
  std::size_t quorum() const noexcept { return this->backend().quorum(); }

 private:
  static std::shared_ptr<Backend> make_backend(std::vector<Client> masters, const std::string& name,
                                               const LockOptions& options) {
    detail::check_lock_options(options);
    if (masters.empty()) throw ConfigError("redkit: a redlock needs at least one master");
    if (options.wait_replicas != 0) {
      throw ConfigError("redkit: wait_replicas does not apply to a redlock (its masters have no replicas to wait for)");
    }
    return std::make_shared<Backend>(std::move(masters), detail::lock_keys(name));
  }
};

}  // namespace redkit
