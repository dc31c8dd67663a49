/// @file lock.hpp
/// redkit::RedisLock, a distributed lock at one Redis key that behaves like
/// a std::timed_mutex: Lockable and TimedLockable, so std::lock_guard,
/// std::unique_lock and std::scoped_lock work with it.
///
/// Thread safety: one RedisLock object is used by one thread at a time, like
/// the owner of a std::mutex. Distinct RedisLock objects on the same name, in
/// threads of one process or in different processes, exclude each other:
/// that is the point. They may share one client (the client is thread-safe).
/// The renewal callback (LockOptions::on_lost) runs on the client's
/// scheduler thread.
///
/// Exceptions: acquiring throws IoError (TimeoutError, ClosedError) when the
/// server cannot be reached, ReplyError if it answers with an error (e.g. the
/// key holds a non-string), NotReplicatedError when LockOptions::wait_replicas
/// is set and too few replicas acknowledged, ConfigError for bad options or
/// names, Error if the OS has no CSPRNG. unlock() and the destructor never
/// throw.
///
/// Key layout: the lock's value (a random token) lives at exactly the key
/// named, set with PX, so redis-py's Lock and other clients that follow the
/// `SET key token NX PX ttl` protocol exclude and are excluded. Three side
/// keys share its hash slot: `{name}:fence` (the fencing counter, no expiry),
/// `{name}:waiters` (a marker blocked waiters keep alive while they wait) and
/// `{name}:wake` (the list a release pushes one wake-up to when that marker
/// exists; it expires after 2 s). When the name already has a hash tag, the
/// side keys are `name:fence`, `name:waiters` and `name:wake`.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/detail/scheduler.hpp"
#include "redkit/detail/slot_map.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/error.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"
#include "redkit/slot.hpp"

namespace redkit {

/// Options of a RedisLock (and RedisRedlock). Defaults suit a lock held for
/// seconds to minutes.
struct LockOptions {
  /// Lifetime of the key on the server. Without renewal the lock is gone
  /// this long after it was acquired; with renewal, this long after the last
  /// successful renewal.
  std::chrono::milliseconds ttl{30000};

  /// Renew the key every ttl/3 from the client's one scheduler thread while
  /// the lock is held (never a thread per lock).
  bool auto_renew = true;

  /// Called once, on the client's scheduler thread, when the lock stops
  /// being ours without unlock(): a renewal found the key gone or held by
  /// another token, renewals failed (I/O) until our deadline passed, or
  /// max_hold ran out. owns_lock() is already false when it runs. Keep it
  /// short and non-blocking; it must not destroy the lock or its client.
  std::function<void(const std::string& name)> on_lost;

  /// Upper bound on how long one acquisition may be kept alive, by renewal
  /// and by extend() alike: the key expires at the latest this long after it
  /// was acquired. Unset: renew for as long as the lock is held.
  std::optional<std::chrono::milliseconds> max_hold;

  /// Fallback wait of a blocked waiter (lock(), try_lock_for()) when no
  /// release wakes it: it starts at retry_min and doubles up to retry_max,
  /// each wait drawn uniformly from [d/2, d], and never outlasts the holder's
  /// remaining TTL. It only matters when a wake-up is lost (a woken waiter
  /// crashed) or the holder does not send one (redis-py, redsync): a
  /// release by a redkit lock wakes a waiter at once.
  std::chrono::milliseconds retry_min{250};
  /// Longest fallback wait (see retry_min).
  std::chrono::milliseconds retry_max{2000};

  /// After acquiring, send `WAIT wait_replicas wait_timeout` on the same
  /// connection. If fewer replicas acknowledge in time the lock is released
  /// and the acquire throws NotReplicatedError (it does not return false:
  /// the lock was free, so "busy" would be a lie). 0: no WAIT.
  /// Not available on RedisRedlock.
  int wait_replicas = 0;
  /// How long the WAIT of wait_replicas waits for the replicas.
  std::chrono::milliseconds wait_timeout{100};
};

namespace detail {

using LockClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// The keys of a lock name.
struct LockKeys {
  std::string key;      ///< the lock itself: exactly the name
  std::string fence;    ///< fencing counter
  std::string wake;     ///< list a release pushes to, BLPOPed by waiters
  std::string waiters;  ///< present while a waiter may be blocked
};

/// Side keys in the slot of name: `{name}:suffix`, or `name:suffix` when name
/// already has a hash tag. @throws ConfigError for an empty name, or one with
/// a '}' outside a hash tag (`{name}` would then hash a prefix of it).
inline LockKeys lock_keys(const std::string& name) {
  if (name.empty()) throw ConfigError("redkit: empty lock name");
  if (has_hash_tag(name)) return {name, name + ":fence", name + ":wake", name + ":waiters"};
  if (name.find('}') != std::string::npos) {
    throw ConfigError("redkit: lock name '" + name +
                      "' has a '}' outside a hash tag, so no side key can share its slot; "
                      "give it a hash tag such as {" + "tag}");
  }
  const std::string tag = "{" + name + "}";
  return {name, tag + ":fence", tag + ":wake", tag + ":waiters"};
}

/// How long a wake-up waits in the list for a waiter (one that was between
/// its failed attempt and its BLPOP when the release came). Written into the
/// release script.
inline constexpr milliseconds kWakeTtl{2000};

/// How much longer than its longest wait a waiter keeps the waiters marker
/// alive: room for leasing a connection and the round trips around a wait.
inline constexpr milliseconds kWaitersMargin{1000};

// Acquire. KEYS: lock, fence, waiters. ARGV: token, ttl ms, waiters ttl ms
// ('0' for an attempt that will not wait).
// Returns the fence (>= 1) when the lock is ours, else -2 - the holder's
// PTTL (so -1: a holder without expiry). The common case costs two calls:
// SET NX PX and INCR. Our own token already there means an earlier attempt
// whose reply was lost succeeded: extend it and hand back its fence. A busy
// attempt that will wait leaves the waiters marker (never shortening it), so
// that releases push a wake-up for as long as a waiter may be blocked.
// The counter is seeded from the server clock in microseconds whenever it is
// missing (first use, restart without persistence, FLUSHALL), so fences keep
// increasing after it is lost: acquisitions are far rarer than one per
// microsecond.
inline const Script& lock_acquire_script() {
  static const Script s(R"lua(
local f
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  f = redis.call('INCR', KEYS[2])
elseif redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  f = tonumber(redis.call('GET', KEYS[2]) or '0')
  if f >= 1 then return f end
  f = redis.call('INCR', KEYS[2])
end
if f then
  if f < 2 then
    local t = redis.call('TIME')
    local seed = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('SET', KEYS[2], seed)
    f = tonumber(seed)
  end
  return f
end
local wait = tonumber(ARGV[3])
if wait > 0 and redis.call('PTTL', KEYS[3]) < wait then
  redis.call('SET', KEYS[3], '1', 'PX', wait)
end
return -2 - redis.call('PTTL', KEYS[1])
)lua");
  return s;
}

// Release. KEYS: lock, wake, waiters. ARGV: token. Returns 1 if it was ours.
// Pushes a wake-up (living kWakeTtl) only when a waiter may be blocked and
// none is pending already, so one release wakes one waiter and an
// uncontended release costs three calls.
inline const Script& lock_release_script() {
  static const Script s(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], 2000)
end
return 1
)lua");
  return s;
}

// Extend. KEYS: lock. ARGV: token, ttl ms. Returns 1 if it was ours.
inline const Script& lock_extend_script() {
  static const Script s(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
)lua");
  return s;
}

// Raises the fencing counter to at least ARGV[1] (RedisRedlock's second
// round). KEYS: fence.
inline const Script& lock_fence_floor_script() {
  static const Script s(R"lua(
local f = tonumber(redis.call('GET', KEYS[1]) or '0')
if f < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
)lua");
  return s;
}

/// The outcome of one acquire attempt.
struct LockAttempt {
  bool acquired = false;
  std::int64_t fence = 0;
  milliseconds holder_ttl{-1};            ///< when busy: the holder's PTTL; negative: unknown
  LockClock::time_point valid_until{};  ///< when acquired: the end of our validity
};

/// Reads the acquire script's reply.
inline LockAttempt parse_attempt(const ReplyView& r, LockClock::time_point sent, milliseconds ttl) {
  LockAttempt a;
  const long long v = r.integer();
  a.acquired = v >= 1;
  if (a.acquired) {
    a.fence = v;
    a.valid_until = sent + ttl;
  } else {
    a.holder_ttl = milliseconds(-2 - v);
  }
  return a;
}

/// A steady-clock deadline d from now, saturating instead of overflowing for
/// durations such as hours::max().
template <class Rep, class Period>
LockClock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
  const auto now = LockClock::now();
  if (d <= d.zero()) return now;
  const std::chrono::duration<double> room = LockClock::time_point::max() - now;
  if (std::chrono::duration<double>(d) >= room) return LockClock::time_point::max();
  return now + std::chrono::ceil<LockClock::duration>(d);
}

/// @throws ConfigError for options that cannot work.
inline void check_lock_options(const LockOptions& o) {
  if (o.ttl.count() < 3) throw ConfigError("redkit: lock ttl must be at least 3 ms");
  if (o.retry_min.count() < 1) throw ConfigError("redkit: lock retry_min must be at least 1 ms");
  if (o.retry_max < o.retry_min) throw ConfigError("redkit: lock retry_max is below retry_min");
  if (o.max_hold && o.max_hold->count() <= 0) throw ConfigError("redkit: lock max_hold must be positive");
  if (o.wait_replicas < 0) throw ConfigError("redkit: lock wait_replicas is negative");
  if (o.wait_replicas > 0 && o.wait_timeout.count() <= 0) {
    throw ConfigError("redkit: lock wait_timeout must be positive (WAIT 0 would block forever)");
  }
}

/// The single-server protocol over one client: RedisLock's backend.
/// Thread-safe (the client is; the rest is immutable).
template <class Client>
class SingleLockBackend {
 public:
  SingleLockBackend(Client client, LockKeys keys, int wait_replicas, milliseconds wait_timeout)
      : client_(std::move(client)),
        keys_(std::move(keys)),
        wait_replicas_(wait_replicas),
        wait_timeout_(wait_timeout) {}

  /// One acquire attempt with the given token; wait > 0 when the caller
  /// will block for up to that long if the lock is busy. A timeout is
  /// ambiguous (the script may have run), so it is retried once with the
  /// same token, which then finds its own key; if that fails too, the key is
  /// released.
  LockAttempt try_acquire(const std::string& token, milliseconds ttl, milliseconds wait) {
    try {
      return acquire_once(token, ttl, wait);
    } catch (const TimeoutError&) {
      try {
        return acquire_once(token, ttl, wait);
      } catch (...) {
        release(token);
        throw;
      }
    }
  }

  /// PEXPIREs the key if it still holds token. Returns the new end of our
  /// validity, or nullopt when the key is gone or another's.
  /// @throws IoError, ReplyError.
  std::optional<LockClock::time_point> renew(const std::string& token, milliseconds ttl) {
    const std::string ttl_text = std::to_string(ttl.count());
    const auto sent = LockClock::now();
    Reply r = client_.eval(lock_extend_script(), {std::string_view(keys_.key)},
                           {std::string_view(token), std::string_view(ttl_text)});
    if (r.integer() != 1) return std::nullopt;
    return sent + ttl;
  }

  /// Deletes the key if it holds token and wakes one waiter. Never throws:
  /// on failure the key expires by its TTL.
  void release(const std::string& token) noexcept {
    try {
      client_.eval(lock_release_script(),
                   {std::string_view(keys_.key), std::string_view(keys_.wake), std::string_view(keys_.waiters)},
                   {std::string_view(token)});
    } catch (...) {
    }
  }

  Scheduler& scheduler() noexcept { return client_.scheduler(); }

  /// Blocks one waiter on the wake list. Holds a dedicated connection for
  /// as long as the waiter lives (one lock() call).
  class Waiter {
   public:
    explicit Waiter(SingleLockBackend& b) : b_(b) {}

    /// BLPOP on the wake list for up to timeout. True if a release woke us.
    /// Redis ends a BLPOP only on its next event-loop tick (up to 1/hz =
    /// 100 ms late), so a wait that must end at the caller's deadline is
    /// ended by our read timeout instead; the connection is then dropped
    /// (the server unblocks it as it closes). An I/O error drops the
    /// connection and returns false, so the caller goes back to an attempt
    /// (which reports a server that is really down); a second one in a row
    /// is thrown. @throws IoError, ReplyError.
    bool wait(milliseconds timeout, bool at_deadline) {
      if (timeout.count() <= 0) return false;
      if (!lease_) lease_.emplace(b_.client_.lease(b_.keys_.wake));
      // Room for the server's late reply (see above) and a slow network.
      const milliseconds command_timeout = b_.client_.options().command_timeout;
      const milliseconds margin = std::max(command_timeout, milliseconds(250));
      milliseconds server_timeout = timeout;
      milliseconds read_timeout = command_timeout.count() > 0 ? timeout + margin : milliseconds(0);
      if (at_deadline) {
        server_timeout = timeout + milliseconds(200);
        read_timeout = timeout;
      }
      try {
        Reply r = lease_->command(Command{"BLPOP"}.key(b_.keys_.wake).arg(seconds_text(server_timeout)),
                                  read_timeout);
        if (r.is_error() && is_redirect(r.error())) {
          // A Cluster lease is not redirected: the slot moved (reshard,
          // failover). The next attempt goes through eval(), which follows
          // the redirect and refreshes the map; the next lease is then right.
          lease_.reset();
          return false;
        }
        r.check();
        failures_ = 0;
        return !r.is_nil();
      } catch (const TimeoutError&) {
        lease_.reset();
        if (at_deadline) return false;  // our own deadline, not a failure
        if (++failures_ > 1) throw;
        return false;
      } catch (const IoError&) {
        lease_.reset();
        if (++failures_ > 1) throw;
        return false;
      }
    }

   private:
    using LeaseType = decltype(std::declval<Client&>().lease(std::string_view()));
    SingleLockBackend& b_;
    std::optional<LeaseType> lease_;
    int failures_ = 0;
  };
  Waiter waiter() { return Waiter(*this); }

 private:
  LockAttempt acquire_once(const std::string& token, milliseconds ttl, milliseconds wait) {
    const std::string ttl_text = std::to_string(ttl.count());
    const std::string waiters_ttl = std::to_string(wait.count() > 0 ? (wait + kWaitersMargin).count() : 0);
    const std::initializer_list<std::string_view> keys = {keys_.key, keys_.fence, keys_.waiters};
    const std::initializer_list<std::string_view> args = {token, ttl_text, waiters_ttl};
    const auto sent = LockClock::now();
    if (wait_replicas_ > 0) return acquire_replicated(keys, args, token, sent, ttl);
    return parse_attempt(client_.eval(lock_acquire_script(), keys, args), sent, ttl);
  }

  // WAIT counts the writes of the connection it is sent on, so the script
  // and the WAIT go over one leased connection, each with its own timeout.
  LockAttempt acquire_replicated(std::initializer_list<std::string_view> keys,
                                 std::initializer_list<std::string_view> args, const std::string& token,
                                 LockClock::time_point sent, milliseconds ttl) {
    auto lease = client_.lease(keys_.key);
    const milliseconds timeout = client_.options().command_timeout;
    Reply r = run_script(lock_acquire_script(), keys, args,
                         [&](const Command& cmd) { return lease.command(cmd, timeout); });
    r.check();
    LockAttempt a = parse_attempt(r, sent, ttl);
    if (!a.acquired) return a;
    Reply w = lease.command(
        Command{"WAIT"}.route(keys_.key).arg(wait_replicas_).arg(static_cast<long long>(wait_timeout_.count())),
        timeout.count() > 0 ? wait_timeout_ + timeout : milliseconds(0));
    w.check();
    if (w.integer() < wait_replicas_) {
      release(token);
      throw NotReplicatedError(keys_.key, w.integer(), wait_replicas_);
    }
    return a;
  }

  Client client_;
  const LockKeys keys_;
  const int wait_replicas_;
  const milliseconds wait_timeout_;
};

/// The Lockable/TimedLockable logic shared by RedisLock and RedisRedlock:
/// token, deadline, waiting and renewal, over a Backend that speaks to the
/// server(s). Used by one thread at a time (the owner).
///
/// Renewal is one periodic task per engine on the backend's scheduler
/// thread, scheduled by the first acquire. It stops itself when it finds
/// nothing held, so a lock()/unlock() loop does not wake the scheduler each
/// time; unlock() clears the hold under the state's mutex, so no renewal can
/// be sent once unlock()'s round trip begins.
template <class Backend>
class LockEngine {
 public:
  LockEngine(std::shared_ptr<Backend> backend, std::string name, LockOptions options)
      : state_(std::make_shared<State>(std::move(backend), std::move(name), std::move(options))),
        generation_(fork_generation()) {}

  LockEngine(LockEngine&& other) noexcept
      : state_(std::move(other.state_)),
        task_(std::exchange(other.task_, 0)),
        token_(std::move(other.token_)),
        fence_(other.fence_),
        generation_(other.generation_) {}
  LockEngine& operator=(LockEngine&& other) noexcept {
    if (this != &other) {
      stop();
      state_ = std::move(other.state_);
      task_ = std::exchange(other.task_, 0);
      token_ = std::move(other.token_);
      fence_ = other.fence_;
      generation_ = other.generation_;
    }
    return *this;
  }
  LockEngine(const LockEngine&) = delete;
  LockEngine& operator=(const LockEngine&) = delete;
  ~LockEngine() { stop(); }

  /// Attempts until acquired or deadline (LockClock::time_point::max():
  /// forever). At least one attempt is made, even with a past deadline.
  bool acquire_until(LockClock::time_point deadline) {
    State& s = live_state();
    if (s.held) {
      if (owns_lock()) throw Error("redkit: lock '" + s.name + "' is already held by this object");
      unlock();  // a lost hold: release it if the key is somehow still ours
    }
    token_ = random_token();
    const bool may_wait = LockClock::now() < deadline;
    LockAttempt a = s.backend->try_acquire(token_, s.options.ttl, may_wait ? s.options.retry_max : milliseconds(0));
    if (!a.acquired) {
      if (!may_wait || LockClock::now() >= deadline) return false;
      a = wait_for_release(deadline, a);
      if (!a.acquired) return false;
    }
    start_hold(a);
    return true;
  }

  void unlock() noexcept {
    if (!state_) return;
    if (generation_ != fork_generation()) {
      // A hold taken before fork() is the parent's: leave its key alone.
      forget_parent_state();
      return;
    }
    if (!state_->held) return;
    std::string token;
    {
      std::lock_guard<std::mutex> lk(state_->mutex);  // waits out a renewal in flight
      state_->held = false;
      token.swap(state_->token);
    }
    state_->backend->release(token);
  }

  bool extend(milliseconds ttl) {
    if (ttl.count() < 1) throw ConfigError("redkit: lock extend ttl must be at least 1 ms");
    State& s = live_state();
    bool reschedule = false;
    {
      std::lock_guard<std::mutex> lk(s.mutex);  // not at the same time as a renewal
      if (!s.held || s.lost) return false;
      milliseconds effective = ttl;
      if (s.hold_until) {
        const auto left = std::chrono::duration_cast<milliseconds>(*s.hold_until - LockClock::now());
        if (left.count() <= 0) return false;
        effective = std::min(ttl, left);
      }
      const auto valid_until = s.backend->renew(s.token, effective);
      if (!valid_until) {
        s.lost = true;
        return false;
      }
      s.valid_until = valid_until->time_since_epoch().count();
      s.ttl = ttl;  // later renewals keep the new lifetime
      // A shorter lifetime needs renewing sooner than the task is due.
      reschedule = s.options.auto_renew && renew_period(ttl) < s.period;
    }
    if (reschedule) schedule_renewal(renew_period(ttl));
    return true;
  }

  bool owns_lock() const noexcept {
    if (!state_ || generation_ != fork_generation() || !state_->held || state_->lost) return false;
    return LockClock::now().time_since_epoch().count() < state_->valid_until.load();
  }

  std::int64_t fencing_token() const noexcept { return fence_; }
  const std::string& token() const noexcept { return token_; }
  const std::string& name() const noexcept { return state_->name; }
  const Backend& backend() const noexcept { return *state_->backend; }

 private:
  // What the owner shares with the renewal task.
  struct State {
    State(std::shared_ptr<Backend> b, std::string n, LockOptions o)
        : backend(std::move(b)), name(std::move(n)), options(std::move(o)) {}
    const std::shared_ptr<Backend> backend;
    const std::string name;
    const LockOptions options;

    std::mutex mutex;  // guards what follows; held across a renewal's round trip
    std::atomic<bool> held{false};
    std::atomic<bool> lost{false};                // a renewal found it gone, or it ran out
    std::atomic<LockClock::rep> valid_until{0};  // steady ticks
    std::string token;
    milliseconds ttl{0};
    std::optional<LockClock::time_point> hold_until;  // acquired + max_hold
    bool task_scheduled = false;
    milliseconds period{0};  // delay the task was last scheduled with
  };

  Scheduler& scheduler() noexcept { return state_->backend->scheduler(); }

  // Owner thread: renewal stopped for good (destruction, move-assignment).
  void stop() noexcept {
    if (!state_) return;
    unlock();  // in a fork child this drops the parent's state (and its task id)
    if (task_) scheduler().cancel(task_);
    task_ = 0;
  }

  // The state of this process. In a fork child the inherited state is the
  // parent's: its hold is not ours, its renewal task lives in the parent's
  // scheduler, and its mutex may have been held by a parent thread at the
  // fork. So the child starts from a fresh state and leaks the old one.
  State& live_state() {
    if (generation_ != fork_generation()) forget_parent_state();
    return *state_;
  }

  void forget_parent_state() noexcept {
    try {
      auto fresh = std::make_shared<State>(state_->backend, state_->name, state_->options);
      (void)new std::shared_ptr<State>(std::move(state_));  // never destroyed: see live_state()
      state_ = std::move(fresh);
    } catch (...) {
      (void)new std::shared_ptr<State>(std::move(state_));
    }
    task_ = 0;
    token_.clear();
    fence_ = 0;
    generation_ = fork_generation();
  }

  // Blocks on wake-ups with a fallback timeout (see LockOptions::retry_min)
  // and retries after each, until acquired or past the deadline.
  LockAttempt wait_for_release(LockClock::time_point deadline, LockAttempt a) {
    State& s = *state_;
    auto waiter = s.backend->waiter();
    milliseconds backoff = s.options.retry_min;
    for (;;) {
      const auto now = LockClock::now();
      if (now >= deadline) return a;
      milliseconds wait = random_between(backoff / 2, backoff);
      if (a.holder_ttl.count() >= 0) {
        // Wake just after the holder's key expires (a crashed holder), with
        // a little jitter so that waiters do not all retry at once.
        wait = std::min(wait, a.holder_ttl + random_between(milliseconds(1), milliseconds(10)));
      }
      const auto left = std::chrono::ceil<milliseconds>(deadline - now);
      const bool woken = waiter.wait(std::min(wait, left), left <= wait);
      backoff = woken ? s.options.retry_min : std::min(backoff * 2, s.options.retry_max);
      a = s.backend->try_acquire(token_, s.options.ttl, s.options.retry_max);
      if (a.acquired) return a;
    }
  }

  void start_hold(const LockAttempt& a) {
    State& s = *state_;
    fence_ = a.fence;
    bool need_task = false;
    {
      std::lock_guard<std::mutex> lk(s.mutex);
      s.token = token_;
      s.ttl = s.options.ttl;
      s.hold_until.reset();
      if (s.options.max_hold) s.hold_until = LockClock::now() + *s.options.max_hold;
      s.valid_until = a.valid_until.time_since_epoch().count();
      s.lost = false;
      s.held = true;
      need_task = s.options.auto_renew && !s.task_scheduled;
    }
    if (need_task) schedule_renewal(renew_period(s.options.ttl));
  }

  // Owner thread: (re)starts the renewal task, first run after delay.
  void schedule_renewal(milliseconds delay) {
    if (task_) scheduler().cancel(task_);
    {
      std::lock_guard<std::mutex> lk(state_->mutex);
      state_->task_scheduled = true;
      state_->period = delay;
    }
    // A weak reference: the engine owns the state (and through it the
    // client), and cancels the task before it lets go of it.
    std::weak_ptr<State> weak = state_;
    task_ = scheduler().schedule(delay, [weak] { return renew_step(weak); });
  }

  static milliseconds renew_period(milliseconds ttl) { return std::max(ttl / 3, milliseconds(1)); }

  // One run of the renewal task on the scheduler thread. Returns the delay
  // until the next run, or a negative one to stop.
  static milliseconds renew_step(const std::weak_ptr<State>& weak) {
    const milliseconds stop{-1};
    std::shared_ptr<State> state = weak.lock();
    if (!state) return stop;
    State& s = *state;
    milliseconds next = stop;
    bool lost = false;
    {
      std::lock_guard<std::mutex> lk(s.mutex);
      if (!s.held || s.lost) {
        s.task_scheduled = false;  // the next acquire starts it again
        return stop;
      }
      const auto now = LockClock::now();
      milliseconds ttl = s.ttl;
      if (s.hold_until) ttl = std::min(ttl, std::chrono::duration_cast<milliseconds>(*s.hold_until - now));
      if (ttl.count() <= 0 || now.time_since_epoch().count() >= s.valid_until.load()) {
        lost = true;  // max_hold ran out, or renewals failed until our deadline
      } else {
        try {
          const auto valid_until = s.backend->renew(s.token, ttl);
          if (valid_until) {
            s.valid_until = valid_until->time_since_epoch().count();
            // Never less often than the configured ttl needs (the next hold
            // relies on it too); near max_hold the last renewal is short:
            // run again when it ends, to report it.
            next = std::min({renew_period(s.ttl), renew_period(s.options.ttl), ttl});
          } else {
            lost = true;
          }
        } catch (...) {
          // I/O trouble: try again soon, until our own deadline passes.
          const auto left = std::chrono::duration_cast<milliseconds>(
              LockClock::time_point(LockClock::duration(s.valid_until.load())) - now);
          next = std::clamp(std::min(s.ttl, s.options.ttl) / 10, milliseconds(1), std::max(left, milliseconds(1)));
        }
      }
      if (lost) {
        s.lost = true;
        s.task_scheduled = false;
      } else {
        s.period = next;
      }
    }
    if (lost && s.options.on_lost) {
      try {
        s.options.on_lost(s.name);
      } catch (...) {
        // The callback's own failure must not stop the scheduler.
      }
    }
    return next;
  }

  std::shared_ptr<State> state_;
  std::uint64_t task_ = 0;  // renewal task id (it may have stopped itself since)
  std::string token_;
  std::int64_t fence_ = 0;
  std::uint32_t generation_ = 0;  // fork generation of state_
};

}  // namespace detail

namespace detail {

/// The public Lockable / TimedLockable interface of RedisLock and
/// RedisRedlock, over their backend (one server, or N masters). What each
/// call sends is said per backend: "one server" is RedisLock, "Redlock" is
/// RedisRedlock. Movable, not copyable; the destructor releases a held lock.
template <class Backend>
class BasicLock {
 public:
  BasicLock(BasicLock&& other) noexcept = default;
  /// Releases a lock this object holds, then takes over other's (a moved-from
  /// lock may only be destroyed or assigned to).
  BasicLock& operator=(BasicLock&& other) noexcept = default;
  BasicLock(const BasicLock&) = delete;
  BasicLock& operator=(const BasicLock&) = delete;

  /// Blocks until the lock is ours. One server: sends the acquire script
  /// (EVALSHA), and while another holds it waits in BLPOP on the wake list on
  /// a dedicated connection (woken by a release, or by the fallback timeout)
  /// and tries again. Redlock: the acquire script to every master in
  /// parallel, then a script raising the granting masters' fencing counters;
  /// a failed attempt releases on every master and sleeps with jittered
  /// backoff. @throws IoError, ReplyError (one server), NotReplicatedError,
  /// Error if this object already owns the lock.
  void lock() { engine_.acquire_until(LockClock::time_point::max()); }

  /// One attempt; true if the lock is now ours. @throws as lock(), except
  /// that it never waits.
  bool try_lock() { return engine_.acquire_until(LockClock::time_point::min()); }

  /// Tries until the lock is ours or timeout has passed, waiting as lock()
  /// does; returns shortly after the deadline (one more attempt is made when
  /// it comes). A zero or negative timeout makes one attempt. @throws as lock().
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return engine_.acquire_until(deadline_after(timeout));
  }

  /// Tries until the lock is ours or deadline (of any clock) has passed.
  /// The wait runs on the steady clock; a clock that is not steady is
  /// checked again when it ends, and waiting goes on if it went back.
  /// @throws as lock().
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    for (;;) {
      if (engine_.acquire_until(deadline_after(deadline - Clock::now()))) return true;
      if (Clock::is_steady || Clock::now() >= deadline) return false;
    }
  }

  /// Stops renewal, then releases the lock where the key still holds our
  /// token (one server: one EVALSHA that compares, deletes and wakes one
  /// waiter; Redlock: the same on every master in parallel); a key that is
  /// gone or another holder's is left alone. Never throws: a key it could
  /// not reach expires by its TTL. owns_lock() is false afterwards. No-op
  /// when not held.
  void unlock() noexcept { engine_.unlock(); }

  /// Sets the key's TTL to ttl (capped by max_hold) where it still holds our
  /// token (EVALSHA: compare, then PEXPIRE; Redlock: on every master, and a
  /// quorum must succeed); later renewals keep this TTL. False, without a
  /// round trip, when not held or known lost; false when the key is gone or
  /// another's (the hold is then lost). @throws ConfigError for ttl < 1 ms,
  /// IoError (Redlock: too few masters answered to tell), ReplyError.
  bool extend(std::chrono::milliseconds ttl) { return engine_.extend(ttl); }

  /// True while held: acquired, not unlocked, not reported lost, and within
  /// our deadline on the steady clock (the time the last acquire or renewal
  /// was sent, plus the TTL; Redlock: less the clock drift allowance). No
  /// round trip.
  bool owns_lock() const noexcept { return engine_.owns_lock(); }

  /// The fencing token of the latest acquisition (0 before the first):
  /// strictly greater than any earlier holder's on this name, in any
  /// process. Pass it to the resource you protect and have it reject writes
  /// with a smaller token than it has seen. (Redlock: the largest fence the
  /// granting masters handed out; see RedisRedlock.)
  std::int64_t fencing_token() const noexcept { return engine_.fencing_token(); }

  /// The random token of the latest acquisition, stored as the key's value
  /// ("" before the first). A fresh one is drawn for each acquisition.
  const std::string& token() const noexcept { return engine_.token(); }

  /// The lock's name, which is also its key.
  const std::string& name() const noexcept { return engine_.name(); }

 protected:
  BasicLock(std::shared_ptr<Backend> backend, const std::string& name, const LockOptions& options)
      : engine_(std::move(backend), name, options) {}
  ~BasicLock() = default;  // the engine releases a held lock
  const Backend& backend() const noexcept { return engine_.backend(); }

 private:
  LockEngine<Backend> engine_;
};

}  // namespace detail

/// A distributed lock on one Redis key (see the file comment for the
/// protocol, key layout, thread safety and exceptions). Its members are
/// those of detail::BasicLock: lock, try_lock, try_lock_for, try_lock_until,
/// unlock, extend, owns_lock, fencing_token, token, name.
///
///     redkit::RedisLock<> lock(redis, "orders:42");
///     std::lock_guard<redkit::RedisLock<>> guard(lock);
///     write_with_fence(lock.fencing_token());
///
/// Client is redkit::Redis or any client with the same interface (eval,
/// lease, scheduler, options), such as redkit::Cluster.
template <class Client = Redis>
class RedisLock : public detail::BasicLock<detail::SingleLockBackend<Client>> {
  using Backend = detail::SingleLockBackend<Client>;

 public:
  /// A lock named name on client's server; does not contact the server.
  /// @throws ConfigError for bad options, an empty name, or a name with a
  /// '}' outside a hash tag.
  RedisLock(Client client, std::string name, LockOptions options = {})
      : detail::BasicLock<Backend>(make_backend(std::move(client), name, options), name, options) {}

 private:
  static std::shared_ptr<Backend> make_backend(Client client, const std::string& name,
                                               const LockOptions& options) {
    detail::check_lock_options(options);
    return std::make_shared<Backend>(std::move(client), detail::lock_keys(name), options.wait_replicas,
                                     options.wait_timeout);
  }
};

}  // namespace redkit
