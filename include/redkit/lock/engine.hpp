/// @file lock/engine.hpp
/// The Lockable / TimedLockable logic RedisLock and RedisRedlock share, over
/// a Backend that speaks to the server(s): holds that belong to threads,
/// local waiting, one thread per process acquiring in Redis, renewal.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "redkit/detail/duration.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/error.hpp"
#include "redkit/lock/hold.hpp"
#include "redkit/lock/options.hpp"

namespace redkit::detail {

/// The outcome of one acquire attempt.
struct LockAttempt {
  bool acquired = false;
  std::int64_t fence = 0;                ///< when acquired with the fence (fence_on_acquire, Redlock)
  milliseconds holder_ttl{-1};           ///< when busy: the holder's PTTL if known; negative: unknown
  LockClock::time_point valid_until{};  ///< when acquired: the end of our validity
};

/// The fallback wait of one acquisition (see LockOptions::retry_min).
struct WaitRound {
  milliseconds backoff;
};

/// A steady-clock deadline d from now (now for d <= 0), saturating instead
/// of overflowing for durations such as hours::max() (detail/duration.hpp).
template <class Rep, class Period>
LockClock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
  const auto now = LockClock::now();
  if (d <= d.zero()) return now;
  return saturating_deadline(now, d);
}

/// One lock object's engine. A hold belongs to the thread that took it; the
/// threads of this process that want the name wait in its LocalName, and
/// the one that acquires in Redis for them (`acquiring`) is the only one
/// that may wait there.
///
/// Backend provides: name(), keys(), home() (the client whose per-process
/// state keeps the LocalName), attempt(token, ttl, fenced), release(token),
/// fence(token), renew(token, ttl), start_renewal/post_renewal/stop_renewal,
/// renewal_jobs(), wait_round(), end_wait(), and the types WaitState and
/// RenewalRoute.
template <class Backend>
class LockEngine {
 public:
  using Local = LocalName<Backend>;
  using Registry = LockRegistry<Backend>;

  LockEngine(std::shared_ptr<Backend> backend, const std::string& name, const LockOptions& options)
      : backend_(std::move(backend)),
        config_(std::make_shared<const LockConfig>(LockConfig{name, options})),
        generation_(fork_generation()) {
    attach();
  }

  LockEngine(LockEngine&& o) noexcept
      : backend_(std::move(o.backend_)),
        config_(std::move(o.config_)),
        local_(std::move(o.local_)),
        retired_(std::move(o.retired_)),
        id_(std::exchange(o.id_, 0)),
        generation_(o.generation_) {}
  LockEngine& operator=(LockEngine&& o) noexcept {
    if (this != &o) {
      release_all();
      backend_ = std::move(o.backend_);
      config_ = std::move(o.config_);
      local_ = std::move(o.local_);
      retired_ = std::move(o.retired_);
      id_ = std::exchange(o.id_, 0);
      generation_ = o.generation_;
    }
    return *this;
  }
  LockEngine(const LockEngine&) = delete;
  LockEngine& operator=(const LockEngine&) = delete;
  ~LockEngine() { release_all(); }

  /// Attempts until acquired or deadline (LockClock::time_point::max():
  /// forever). At least one attempt is made, even with a past deadline,
  /// unless another thread of this process holds the name.
  bool acquire_until(LockClock::time_point deadline) {
    Local& L = live();
    const bool may_wait = LockClock::now() < deadline;
    std::unique_lock<std::mutex> lk(L.m);
    if (auto h = L.mine(id_); h && !h->valid()) {
      lk.unlock();
      release_hold(L, h);  // a lost hold: release it if the key is somehow still ours
      lk.lock();
    }
    refuse_second_hold(L, deadline == LockClock::time_point::max());
    if (!may_wait) {
      if (busy(L)) return false;  // another thread of this process holds it
      lk.unlock();
      std::string token = random_token();
      const LockAttempt a = backend_->attempt(token, options().ttl, options().fence_on_acquire);
      if (!a.acquired) return false;
      install(L, std::move(token), a);
      return true;
    }
    for (;;) {
      if (!wait_here(L, lk, deadline)) return false;
      L.acquiring = true;
      lk.unlock();
      const Outcome outcome = acquire_in_redis(L, deadline);  // gives the role back on every path
      if (outcome == Outcome::Held) return true;
      if (outcome == Outcome::Expired) return false;
      lk.lock();  // LocalHolder: another thread of this process got it; wait for it here
    }
  }

  void unlock() noexcept {
    if (!backend_ || !local_) return;
    if (generation_ != fork_generation()) {
      forget_parent();  // a hold taken before fork() is the parent's: leave its key alone
      return;
    }
    std::shared_ptr<HoldState> h;
    {
      std::lock_guard<std::mutex> lk(local_->m);
      h = local_->mine(id_);
    }
    if (h) release_hold(*local_, h);
  }

  bool extend(milliseconds ttl) {
    check_extend_ttl(ttl);
    Local& L = live();
    std::shared_ptr<HoldState> h;
    {
      std::lock_guard<std::mutex> lk(L.m);
      h = L.mine(id_);
    }
    if (!h || !h->valid()) return false;
    milliseconds effective = ttl;
    {
      std::unique_lock<std::mutex> lk(h->m);
      h->cv.wait(lk, [&] { return h->in_flight == 0; });  // not at the same time as a renewal
      if (h->ended) return false;
      if (h->hold_until) {
        const auto left = std::chrono::floor<milliseconds>(*h->hold_until - LockClock::now());
        if (left.count() <= 0) return false;
        effective = std::min(ttl, left);
      }
      h->extending = true;
    }
    std::optional<LockClock::time_point> valid_until;
    try {
      valid_until = backend_->renew(h->token, effective);
    } catch (...) {
      std::lock_guard<std::mutex> lk(h->m);
      h->extending = false;
      throw;
    }
    bool rearm = false;
    {
      std::lock_guard<std::mutex> lk(h->m);
      h->extending = false;
      if (!valid_until) {
        h->lost = true;  // reported by this false, not by on_lost
        h->ended = true;
        h->set_due_raw(RenewalEntry::kIdle);
        return false;
      }
      h->valid_until = valid_until->time_since_epoch().count();
      h->ttl = ttl;  // later renewals keep the new lifetime
      if (options().auto_renew && !h->ended) {
        h->set_due(LockClock::now() + HoldState::renew_period(effective));
        rearm = true;  // a shorter lifetime is renewed sooner than the task was due
      }
    }
    if (rearm) backend_->rearm_renewal(*h);
    return true;
  }

  bool owns_lock() const noexcept {
    if (!backend_ || !local_ || generation_ != fork_generation()) return false;
    std::lock_guard<std::mutex> lk(local_->m);
    const auto h = local_->mine(id_);
    return h && h->valid();
  }

  std::int64_t fencing_token() {
    Local& L = live();
    std::shared_ptr<HoldState> h;
    {
      std::lock_guard<std::mutex> lk(L.m);
      h = L.mine(id_);
    }
    if (!h) {
      throw LockLostError("redkit: lock '" + name() + "' is not held by the calling thread through this object");
    }
    if (!h->valid()) {
      throw LockLostError("redkit: lock '" + name() + "' was lost (expired, taken over or not renewed): no fencing token");
    }
    if (h->fence > 0) return h->fence;
    const std::optional<std::int64_t> fence = backend_->fence(h->token);
    if (!fence) {
      {
        std::lock_guard<std::mutex> lk(h->m);
        h->lost = true;  // reported by this exception, not by on_lost
        h->ended = true;
        h->set_due_raw(RenewalEntry::kIdle);
      }
      throw LockLostError("redkit: lock '" + name() + "' no longer holds our token: no fencing token");
    }
    h->fence = *fence;
    return *fence;
  }

  const std::string& token() const {
    check_not_moved();
    static const std::string none;
    if (!local_ || generation_ != fork_generation()) return none;
    std::lock_guard<std::mutex> lk(local_->m);
    const auto h = local_->mine(id_);
    return h ? h->token : none;  // kept alive by the hold, then by retired_
  }

  const std::string& name() const {
    check_not_moved();
    return config_->name;
  }

  const Backend& backend() const {
    check_not_moved();
    return *backend_;
  }

 private:
  enum class Outcome { Held, Expired, LocalHolder };

  const LockOptions& options() const noexcept { return config_->options; }

  void check_not_moved() const {
    check_not_moved_from(backend_ != nullptr, "lock object (RedisLock or RedisRedlock)");
  }

  // The LocalName of this process (attached anew in a fork child).
  Local& live() {
    check_not_moved();
    if (generation_ != fork_generation()) forget_parent();
    if (!local_) attach();
    return *local_;
  }

  void attach() {
    local_ = backend_->home().template process_local<Registry>()->get(config_->name, backend_->keys());
    std::lock_guard<std::mutex> lk(local_->m);
    id_ = local_->next_engine++;
  }

  // In a fork child the LocalName is the parent's: its holds are not ours,
  // its mutexes may have been held by parent threads at the fork. It is
  // leaked, never used nor destroyed here; live() attaches to the child's.
  void forget_parent() noexcept {
    if (local_) (void)new std::shared_ptr<Local>(std::move(local_));
    if (retired_) (void)new std::shared_ptr<HoldState>(std::move(retired_));
    local_.reset();
    retired_.reset();
    generation_ = fork_generation();
  }

  // Caller holds L.m. True while a thread of this process holds the name:
  // a hold that expired or was found lost no longer counts, though its
  // thread has not unlocked yet (other processes may have the key by then).
  static bool busy(const Local& L, LockClock::time_point now = LockClock::now()) {
    for (const auto& h : L.holds) {
      if (h->valid(now)) return true;
    }
    return false;
  }

  // Caller holds L.m. Acquiring again through the object the calling
  // thread holds the name through is an error; so is lock() (which would
  // wait for ever) while it holds it through another object. Timed and
  // non-blocking attempts then simply find the name busy.
  void refuse_second_hold(Local& L, bool forever) {
    const auto me = std::this_thread::get_id();
    const auto now = LockClock::now();
    for (const auto& h : L.holds) {
      if (h->thread != me || !h->valid(now)) continue;
      if (h->engine == id_) throw Error("redkit: lock '" + config_->name + "' is already held by this thread");
      if (forever) {
        throw Error("redkit: lock '" + config_->name +
                    "' is already held by this thread through another lock object: lock() would wait for ever");
      }
    }
  }

  // Caller holds lk on L.m. Waits while this process holds the name or
  // another thread acquires it in Redis. False at the deadline. A hold's
  // validity ending counts as its end (its thread may not unlock soon).
  bool wait_here(Local& L, std::unique_lock<std::mutex>& lk, LockClock::time_point deadline) {
    for (;;) {
      const auto now = LockClock::now();
      if (!L.acquiring && !busy(L, now)) return true;
      if (now >= deadline) return false;
      LockClock::time_point until = deadline;
      if (!L.acquiring) {
        for (const auto& h : L.holds) {
          if (h->valid(now)) until = std::min(until, LockClock::time_point(LockClock::duration(h->valid_until.load())));
        }
      }
      ++L.waiting;
      if (until == LockClock::time_point::max()) {
        L.cv.wait(lk);
      } else {
        L.cv.wait_until(lk, until);
      }
      --L.waiting;
    }
  }

  // Runs with L.acquiring set by this thread, and clears it on every path.
  Outcome acquire_in_redis(Local& L, LockClock::time_point deadline) {
    const LockOptions& o = options();
    bool keep = false;  // leave the registration and wait connection to the next acquirer
    try {
      std::string token = random_token();
      WaitRound round{o.retry_min};
      for (;;) {
        const LockAttempt a = backend_->attempt(token, o.ttl, o.fence_on_acquire);
        if (a.acquired) {
          backend_->end_wait(L.wait, /*keep=*/false, /*acquired=*/true);
          install(L, std::move(token), a, /*clear_acquiring=*/true);
          return Outcome::Held;
        }
        if (LockClock::now() >= deadline) {
          {
            std::lock_guard<std::mutex> lk(L.m);
            keep = L.waiting > 0;
          }
          leave_redis(L, keep);
          return Outcome::Expired;
        }
        bool local_holder = false;
        {
          std::lock_guard<std::mutex> lk(L.m);
          local_holder = busy(L);
        }
        if (local_holder) break;  // a try_lock of this process got it meanwhile: wait for it locally
        backend_->wait_round(L.wait, round, a, deadline, o);
      }
    } catch (...) {
      {
        std::lock_guard<std::mutex> lk(L.m);
        keep = L.waiting > 0;
      }
      leave_redis(L, keep);
      throw;
    }
    leave_redis(L, false);
    return Outcome::LocalHolder;
  }

  // The acquiring thread gives up its role (not holding): the Redis side of
  // waiting is kept for the next acquirer of this process, or ended.
  void leave_redis(Local& L, bool keep) noexcept {
    backend_->end_wait(L.wait, keep, /*acquired=*/false);
    std::lock_guard<std::mutex> lk(L.m);
    L.acquiring = false;
    if (L.waiting > 0) L.cv.notify_one();
  }

  // Records a fresh acquisition as the calling thread's and starts renewing it.
  void install(Local& L, std::string token, const LockAttempt& a, bool clear_acquiring = false) {
    auto h = std::make_shared<Hold<Backend>>(std::move(token), std::this_thread::get_id(), id_, config_,
                                             a.valid_until, a.fence);
    h->backend = backend_;
    try {
      if (options().auto_renew) backend_->start_renewal(h);
      std::lock_guard<std::mutex> lk(L.m);
      L.holds.push_back(h);
      retired_.reset();
      if (clear_acquiring) L.acquiring = false;
    } catch (...) {
      h->end();
      backend_->stop_renewal(*h);
      backend_->release(h->token);
      if (clear_acquiring) {
        std::lock_guard<std::mutex> lk(L.m);
        L.acquiring = false;
        if (L.waiting > 0) L.cv.notify_one();
      }
      throw;
    }
  }

  // Stops renewal, releases in Redis, then lets the next local thread in.
  void release_hold(Local& L, const std::shared_ptr<HoldState>& h) noexcept {
    h->end();
    backend_->stop_renewal(*h);
    backend_->release(h->token);
    std::lock_guard<std::mutex> lk(L.m);
    for (auto it = L.holds.begin(); it != L.holds.end(); ++it) {
      if (*it == h) {
        L.holds.erase(it);
        break;
      }
    }
    retired_ = h;  // token() references stay valid until this object's next acquisition
    if (L.waiting > 0 && !busy(L)) L.cv.notify_one();
  }

  // Destruction, move-assignment: every hold taken through this object, by
  // any thread, is released.
  void release_all() noexcept {
    if (!backend_ || !local_) return;
    if (generation_ != fork_generation()) {
      forget_parent();
      return;
    }
    for (;;) {
      std::shared_ptr<HoldState> h;
      {
        std::lock_guard<std::mutex> lk(local_->m);
        for (const auto& held : local_->holds) {
          if (held->engine == id_) h = held;
        }
      }
      if (!h) return;
      release_hold(*local_, h);
    }
  }

  std::shared_ptr<Backend> backend_;  // null: moved from
  std::shared_ptr<const LockConfig> config_;
  std::shared_ptr<Local> local_;       // null until attached (or after a fork)
  std::shared_ptr<HoldState> retired_;  // the last hold released through this object
  std::uint64_t id_ = 0;               // this object within local_
  std::uint32_t generation_ = 0;       // fork generation of local_
};

}  // namespace redkit::detail
