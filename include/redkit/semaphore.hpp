/// @file semaphore.hpp
/// redkit::RedisSemaphore, a counting semaphore over Redis whose permits are
/// leases: at most `permits` are held at once across every process and
/// thread, each permit expires unless renewed, so a crashed holder's permit
/// comes back after its TTL. Its parts live in semaphore/: options.hpp
/// (SemaphoreOptions), keys.hpp, scripts.hpp, permit.hpp (SemaphorePermit),
/// backend.hpp (the protocol). Renewal and waiting are the lock's: one
/// Renewer per client and process (detail/renewer.hpp) and the one BLPOP
/// waiter (detail/wait_list.hpp).
///
/// Thread safety: one RedisSemaphore object may be used by any number of
/// threads at once. Threads of one process waiting for a permit of one name
/// (through one object or several made with the same client) take turns in
/// the process: one of them at a time waits in Redis, on one dedicated
/// connection. Moving or destroying an object while other threads use it is
/// undefined, as for any object; permits outlive the object that made them.
///
/// Exceptions: acquiring throws IoError (TimeoutError, ClosedError) when the
/// server cannot be reached (never reported as "no permit"), ReplyError if
/// it answers with an error (WRONGTYPE at one of its keys, say),
/// ProtocolError for a reply the scripts never send, ConfigError when the
/// semaphore exists with another count, Error when the object was moved
/// from. The constructor throws ConfigError for options out of range, a
/// count outside 1 to 10^9, a bad name, or a semaphore that exists with
/// another count (and IoError when it cannot ask). SemaphorePermit::release()
/// and its destructor never throw.
///
/// Key layout (all in the hash slot of the name, each with a TTL):
/// `{name}:sem:permits`, a sorted set holding one member per permit held
/// (its id, scored with its expiry on the server's clock in ms) and the
/// member `#count` scored with the count, so the count lives and expires
/// with the permits: as long as the longest permit plus 1 hour, refreshed
/// by acquires and renewals. `{name}:sem:waiting` (one element per process
/// waiting in Redis; 60 s after the last registration) and `{name}:sem:wake`
/// (wake-ups a release moves there; 2 s). When the name already has a hash
/// tag the keys are `name:sem:permits` and so on. The `sem:` infix keeps
/// them apart from a RedisLock of the same name.
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

#include "redkit/detail/fork.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/name_registry.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/error.hpp"
#include "redkit/lock/engine.hpp"
#include "redkit/lock/hold.hpp"
#include "redkit/redis.hpp"
#include "redkit/semaphore/backend.hpp"
#include "redkit/semaphore/keys.hpp"
#include "redkit/semaphore/options.hpp"
#include "redkit/semaphore/permit.hpp"
#include "redkit/semaphore/scripts.hpp"

namespace redkit {

/// A counting semaphore over Redis (see the file comment for the protocol,
/// key layout, thread safety and exceptions).
///
///     redkit::RedisSemaphore<> uploads(redis, "uploads", 3);   // share it between threads
///     redkit::SemaphorePermit permit = uploads.acquire();      // one of 3, across all processes
///     upload(file);                                            // released by the destructor
///
/// Client is redkit::Redis or any client with the same interface (command,
/// eval, pipeline, lease, scheduler, process_local, node_name, options),
/// such as redkit::Cluster.
template <class Client = Redis>
class RedisSemaphore {
  using Backend = detail::SemaphoreBackend<Client>;
  using Local = detail::SemaphoreLocal<Client>;
  using Registry = detail::NameRegistry<Local>;
  using LockClock = detail::LockClock;

 public:
  /// A semaphore of `permits` permits named name on client's server(s).
  /// Stores the count with the semaphore if it has none, else checks it
  /// (one EVALSHA: ZSCORE, and ZADD with a TTL when missing).
  /// @throws ConfigError for options out of range, permits outside 1 to
  /// 10^9, an empty name or one with a '}' outside a hash tag, or a
  /// semaphore of this name that exists with another count; IoError,
  /// ReplyError when the server cannot be asked.
  RedisSemaphore(Client client, std::string name, std::int64_t permits, SemaphoreOptions options = {})
      : backend_(make_backend(std::move(client), name, permits, options)),
        config_(std::make_shared<const detail::LockConfig>(
            detail::LockConfig{std::move(name), detail::permit_hold_options(options)})),
        generation_(detail::fork_generation()) {
    backend_->check_count();
    (void)live_local();
  }

  /// Takes over other's name and options; other is left moved-from.
  RedisSemaphore(RedisSemaphore&&) noexcept = default;
  /// Takes over other's name and options; permits taken through this
  /// object are not affected (they are released by their own handles).
  RedisSemaphore& operator=(RedisSemaphore&&) noexcept = default;
  RedisSemaphore(const RedisSemaphore&) = delete;
  RedisSemaphore& operator=(const RedisSemaphore&) = delete;
  ~RedisSemaphore() = default;

  /// Blocks until a permit is ours. First one attempt (EVALSHA of the
  /// acquire script: drops expired permits, adds ours if fewer than
  /// `permits` are held); while all are held, this process registers once
  /// in `{name}:sem:waiting` (in the same script) and one of its threads
  /// blocks in BLPOP on `{name}:sem:wake` on one dedicated connection, woken
  /// by a release (or after the fallback wait, capped by the earliest
  /// permit's expiry), then tries again; the process's other waiting threads
  /// wait in the process for their turn. @throws as the file comment says.
  SemaphorePermit acquire() { return std::move(*acquire_until(LockClock::time_point::max())); }

  /// One attempt (one EVALSHA), no waiting: a permit, or nullopt when all
  /// are held. @throws as acquire().
  std::optional<SemaphorePermit> try_acquire() { return acquire_until(LockClock::time_point::min()); }

  /// Tries until a permit is ours or timeout has passed, waiting as
  /// acquire() does; never waits past the deadline (a wake-up that comes
  /// just at it is still taken, one round trip later). A zero or negative
  /// timeout makes one attempt. @throws as acquire().
  template <class Rep, class Period>
  std::optional<SemaphorePermit> try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(detail::deadline_after(timeout));
  }

  /// Tries until a permit is ours or deadline (of any clock) has passed.
  /// The wait runs on the steady clock; a clock that is not steady is
  /// checked again when it ends, and waiting goes on if it went back.
  /// @throws as acquire().
  template <class Clock, class Duration>
  std::optional<SemaphorePermit> try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    for (;;) {
      auto permit = acquire_until(detail::deadline_after(deadline - Clock::now()));
      if (permit) return permit;
      if (Clock::is_steady || Clock::now() >= deadline) return permit;
    }
  }

  /// Permits free now: `permits` less the unexpired permits held (EVALSHA:
  /// TIME, ZCOUNT). A snapshot: another process may take one at once.
  /// @throws IoError, ReplyError, Error if moved from.
  std::int64_t available() { return live_backend().available(); }

  /// The semaphore's name. @throws Error if moved from.
  const std::string& name() const {
    check_not_moved();
    return config_->name;
  }

  /// The number of permits. @throws Error if moved from.
  std::int64_t permits() const {
    check_not_moved();
    return backend_->permits();
  }

 private:
  static std::shared_ptr<Backend> make_backend(Client client, const std::string& name, std::int64_t permits,
                                               const SemaphoreOptions& options) {
    detail::check_semaphore_options(permits, options);
    return std::make_shared<Backend>(std::move(client), detail::semaphore_keys(name), name, permits);
  }

  void check_not_moved() const {
    detail::check_not_moved_from(backend_ != nullptr, "redkit::RedisSemaphore");
  }

  Backend& live_backend() {
    check_not_moved();
    return *backend_;
  }

  // The process's state of the name, attached at construction, and anew on
  // the first use in a fork child: the parent's may have been locked by
  // parent threads at the fork, so it is left alone, never used nor
  // destroyed here.
  Local& live_local() {
    if (generation_ != detail::fork_generation()) {
      if (local_) (void)new std::shared_ptr<Local>(std::move(local_));
      local_.reset();
      generation_ = detail::fork_generation();
    }
    if (!local_) local_ = backend_->home().template process_local<Registry>()->get(config_->name, backend_->keys());
    return *local_;
  }

  std::optional<SemaphorePermit> acquire_until(LockClock::time_point deadline) {
    Backend& b = live_backend();
    const LockOptions& o = config_->options;
    std::string id = detail::random_token();
    detail::PermitAttempt a;
    if (LockClock::now() >= deadline) {  // one attempt, no waiting: no turn, no registration
      a = b.attempt(id, o.ttl, nullptr);
      if (a.acquired) return install(std::move(id), a);
      return std::nullopt;
    }

    // When no other thread of this process waits for the name, the turn is
    // taken at once, so that a busy answer to the first attempt already
    // registers this process (no second round trip just to register);
    // otherwise the first attempt is made without a turn, and without
    // registering, before waiting for one.
    Local& L = live_local();
    bool turn = false;
    {
      std::lock_guard<std::mutex> lk(L.m);
      if (!L.acquiring) L.acquiring = turn = true;
    }
    if (!turn) {
      a = b.attempt(id, o.ttl, nullptr);
      if (a.acquired) return install(std::move(id), a);
      if (LockClock::now() >= deadline) return std::nullopt;
      std::unique_lock<std::mutex> lk(L.m);
      while (L.acquiring) {
        if (LockClock::now() >= deadline) return std::nullopt;
        ++L.waiting;
        if (deadline == LockClock::time_point::max()) {
          L.cv.wait(lk);
        } else {
          L.cv.wait_until(lk, deadline);
        }
        --L.waiting;
      }
      L.acquiring = true;
    }
    try {
      std::chrono::milliseconds backoff = o.retry_min;
      for (;;) {
        a = b.attempt(id, o.ttl, &L.wait);
        if (a.acquired) {
          leave(L, /*acquired=*/true);
          return install(std::move(id), a);
        }
        if (LockClock::now() >= deadline) break;
        const auto r = b.wait_round(L.wait, backoff, a, deadline, o);
        // A wake-up is taken even at the deadline: it was meant for this
        // process, and no other waiter would get it.
        if (r != detail::WaitResult::Woken && LockClock::now() >= deadline) break;
      }
    } catch (...) {
      leave(L, false);
      throw;
    }
    leave(L, false);
    return std::nullopt;
  }

  // The waiting thread gives up its turn: the Redis side of waiting is kept
  // for the next waiting thread of this process, or ended.
  void leave(Local& L, bool acquired) noexcept {
    bool keep = false;
    {
      std::lock_guard<std::mutex> lk(L.m);
      keep = L.waiting > 0;
    }
    backend_->end_wait(L.wait, keep, acquired);
    std::lock_guard<std::mutex> lk(L.m);
    L.acquiring = false;
    if (L.waiting > 0) L.cv.notify_one();
  }

  // A fresh permit: its renewal is started and the handle made.
  SemaphorePermit install(std::string id, const detail::PermitAttempt& a) {
    auto h = std::make_shared<detail::Hold<Backend>>(std::move(id), std::this_thread::get_id(), 0, config_,
                                                     a.valid_until, 0);
    h->backend = backend_;
    try {
      if (config_->options.auto_renew) backend_->start_renewal(h);
    } catch (...) {
      h->end();
      backend_->stop_renewal(*h);
      backend_->release(h->token);
      throw;
    }
    return SemaphorePermit(backend_, std::move(h));
  }

  std::shared_ptr<Backend> backend_;  // null: moved from
  std::shared_ptr<const detail::LockConfig> config_;  // the name, and the options as the permits' holds read them
  std::shared_ptr<Local> local_;  // null only between a fork and the child's first use
  std::uint32_t generation_ = 0;  // fork generation of local_
};

}  // namespace redkit
