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
/// Thread safety: as RedisLock: one object may be shared by threads, a hold
/// belongs to the thread that took it, and the threads of one process that
/// want the name wait in the process while one of them polls the masters.
/// Each acquire, release and extend runs the N per-node calls in parallel
/// (one short-lived thread per node); renewals go through each master's
/// renewal lane, so a master that does not answer delays no other. The
/// per-node timeout is that client's Options::connect_timeout and
/// command_timeout, which should be small against the ttl.
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
#include <initializer_list>
#include <mutex>
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
  /// Redlock waiters poll (see wait_round): nothing to keep in Redis.
  struct WaitState {
    explicit WaitState(const LockKeys&) {}
  };

  /// Where a hold's renewals go: the first master's Renewer fires it, and
  /// each master's own Renewer sends the part for that master, on the lane
  /// of that master, so a master that does not answer delays no other.
  struct RenewalRoute {
    Renewer<Client>* home = nullptr;
    std::vector<std::pair<Renewer<Client>*, std::string>> lanes;  // per master: its Renewer, its node
  };

  RedlockBackend(std::vector<Client> nodes, LockKeys keys) : keys_(std::move(keys)) {
    for (Client& c : nodes) nodes_.push_back(std::make_shared<Client>(std::move(c)));
    quorum_ = nodes_.size() / 2 + 1;
  }

  const std::string& name() const noexcept { return keys_.key; }
  const LockKeys& keys() const noexcept { return keys_; }
  /// The first master's client keeps this process's state of the name.
  Client& home() noexcept { return *nodes_.front(); }

  /// Acquires on every node in parallel (the acquire script with the fence;
  /// our own token already there counts as granted, so a retry after a lost
  /// reply is safe). Held when a quorum granted it and time is left; then
  /// raises the fencing counter of a quorum to the largest fence granted (a
  /// second round), so that any later quorum, which shares a node with this
  /// one, hands out a larger fence. A failed attempt releases every node.
  LockAttempt attempt(const std::string& token, milliseconds ttl, bool /*fenced: always*/) {
    const std::string ttl_text = std::to_string(ttl.count());
    const auto start = LockClock::now();
    auto replies = on_nodes(all_nodes(), [&](Client& c) -> std::optional<std::int64_t> {
      Reply r = c.eval(lock_acquire_fenced_script(), {std::string_view(keys_.key), std::string_view(keys_.fence)},
                       {std::string_view(token), std::string_view(ttl_text), fence_ttl_text()});
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
        c.eval(lock_fence_floor_script(), {std::string_view(keys_.fence)},
               {std::string_view(fence_text), fence_ttl_text()});
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

  /// Extends on every node in parallel (extend()). The new validity when a
  /// quorum extended in time; nullopt when so many nodes answered "not ours"
  /// that no quorum can; otherwise (nodes unreachable) throws IoError.
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
               {std::string_view(keys_.key), std::string_view(keys_.waiting), std::string_view(keys_.wake)},
               {std::string_view(token), wake_ttl_text()});
        return true;
      });
    } catch (...) {
    }
  }

  /// A Redlock's fence comes with its acquire; there is none to issue later.
  std::optional<std::int64_t> fence(const std::string&) { return std::nullopt; }

  // ---- renewal: one part per master (see RenewalRoute) ----

  int renewal_jobs() const noexcept { return static_cast<int>(nodes_.size()); }

  void start_renewal(const std::shared_ptr<Hold<RedlockBackend>>& h) {
    auto home_renewer = home().template process_local<Renewer<Client>>();
    h->route.home = home_renewer.get();
    for (const auto& node : nodes_) {
      h->route.lanes.emplace_back(node->template process_local<Renewer<Client>>().get(), node->node_name(keys_.key));
    }
    h->set_due(LockClock::now() + HoldState::renew_period(h->ttl));
    home_renewer->add(h, home().scheduler());
  }

  void rearm_renewal(HoldState& h) {
    if (auto* r = static_cast<Hold<RedlockBackend>&>(h).route.home) r->rearm(h, home().scheduler());
  }

  void stop_renewal(HoldState& h) noexcept {
    if (auto* r = static_cast<Hold<RedlockBackend>&>(h).route.home) r->remove(h);
  }

  /// Scheduler thread: one renewal per master on that master's lane; the
  /// hold is renewed when a quorum answers "ours" within the validity, lost
  /// when too many answer "not ours", retried soon otherwise. Decided by
  /// the first answers that settle it: a master that does not answer holds
  /// up only its own part.
  void post_renewal(const std::shared_ptr<Hold<RedlockBackend>>& h, milliseconds ttl) noexcept {
    const auto start = LockClock::now();
    std::shared_ptr<Tally> tally;
    try {
      tally = std::make_shared<Tally>();
    } catch (...) {
      for (std::size_t i = 0; i < nodes_.size(); ++i) h->job_done();
      h->completed(RenewOutcome::Failed, start);
      return;
    }
    const std::size_t n = nodes_.size();
    const std::size_t quorum = quorum_;
    const auto valid_until = start + ttl - drift(ttl);
    for (std::size_t i = 0; i < n; ++i) {
      auto done = [h, tally, n, quorum, valid_until](RenewOutcome outcome, LockClock::time_point) {
        h->job_done();
        std::optional<RenewOutcome> decided;
        {
          std::lock_guard<std::mutex> lk(tally->m);
          if (tally->decided) return;
          ++(outcome == RenewOutcome::Ours ? tally->ours : outcome == RenewOutcome::NotOurs ? tally->others : tally->failed);
          if (tally->ours >= quorum) {
            decided = LockClock::now() < valid_until ? RenewOutcome::Ours : RenewOutcome::Failed;
          } else if (tally->others > n - quorum) {
            decided = RenewOutcome::NotOurs;
          } else if (tally->ours + tally->others + tally->failed == n) {
            decided = RenewOutcome::Failed;
          }
          if (decided) tally->decided = true;
        }
        if (decided) h->completed(*decided, valid_until);
      };
      try {
        const std::string ttl_text = std::to_string(ttl.count());
        const std::initializer_list<std::string_view> keys = {keys_.key};
        const std::initializer_list<std::string_view> args = {h->token, ttl_text};
        typename Renewer<Client>::Job job;
        job.client = nodes_[i];
        job.by_sha = lock_extend_script().command(keys, args, true);
        job.by_source = lock_extend_script().command(keys, args, false);
        job.done = done;
        h->route.lanes[i].first->post(h->route.lanes[i].second, std::move(job));
      } catch (...) {
        done(RenewOutcome::Failed, start);
      }
    }
  }

  // ---- waiting ----

  /// Redlock waiters sleep with jittered backoff (a wake-up list on N
  /// masters could only wake one of them per release): one thread per
  /// process, the others wait in the process.
  void wait_round(WaitState&, WaitRound& round, const LockAttempt&, LockClock::time_point deadline,
                  const LockOptions& o) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - LockClock::now());
    const milliseconds wait = std::min(random_between(round.backoff / 2, round.backoff), left);
    if (wait.count() > 0) std::this_thread::sleep_for(wait);
    round.backoff = std::min(round.backoff * 2, o.retry_max);
  }

  void end_wait(WaitState&, bool, bool) noexcept {}

  std::size_t size() const noexcept { return nodes_.size(); }
  std::size_t quorum() const noexcept { return quorum_; }

 private:
  struct Tally {
    std::mutex m;
    std::size_t ours = 0;
    std::size_t others = 0;
    std::size_t failed = 0;
    bool decided = false;
  };

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
          return f(*nodes_[i]);
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

  std::vector<std::shared_ptr<Client>> nodes_;  // renewals hold them weakly
  const LockKeys keys_;
  std::size_t quorum_ = 1;
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

  /// Number of masters. @throws Error if moved from.
  std::size_t masters() const { return this->backend().size(); }
  /// How many masters must grant the lock: masters() / 2 + 1. @throws Error if moved from.
  std::size_t quorum() const { return this->backend().quorum(); }

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
