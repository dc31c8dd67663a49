/// @file semaphore/backend.hpp
/// The semaphore protocol over one client (Redis, sentinel-mode Redis or
/// Cluster): attempts, release, renewal through the client's Renewer (the
/// lock's), waiting through the one WaitList, and the state the threads of
/// one process share for one name. Internals of RedisSemaphore.
/// Thread safety: SemaphoreBackend is thread-safe (the client is; the rest
/// is immutable), except WaitState, which belongs to the one thread of a
/// process that waits for the name in Redis.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/detail/renewer.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/detail/wait_list.hpp"
#include "redkit/error.hpp"
#include "redkit/lock/hold.hpp"
#include "redkit/lock/scripts.hpp"
#include "redkit/lock/waiting.hpp"
#include "redkit/reply.hpp"
#include "redkit/semaphore/keys.hpp"
#include "redkit/semaphore/options.hpp"
#include "redkit/semaphore/permit.hpp"
#include "redkit/semaphore/scripts.hpp"

namespace redkit::detail {

/// The outcome of one acquire attempt.
struct PermitAttempt {
  bool acquired = false;
  milliseconds free_in{-1};              ///< when busy: until the earliest permit expires
  LockClock::time_point valid_until{};  ///< when acquired: the end of our validity
};

template <class Client>
class SemaphoreBackend final : public PermitOwner {
 public:
  /// The Redis side of one process waiting for the semaphore: its
  /// registration in `waiting` and the dedicated connection it blocks on.
  struct WaitState {
    explicit WaitState(const SemaphoreKeys& keys) : list(keys.wake) {}
    WaitList<Client> list;
    bool registered = false;  // this process counts in `waiting`, as far as it knows
    bool ensure = false;      // after a look-again or an unknown outcome: check the registration survived
  };

  /// Where a permit's renewals go (read by Hold).
  using RenewalRoute = NodeRenewalRoute<Client>;

  SemaphoreBackend(Client client, SemaphoreKeys keys, std::string name, std::int64_t permits)
      : client_(std::make_shared<Client>(std::move(client))),
        keys_(std::move(keys)),
        name_(std::move(name)),
        permits_(permits),
        permits_text_(std::to_string(permits)) {}

  const SemaphoreKeys& keys() const noexcept { return keys_; }
  const std::string& name() const noexcept { return name_; }
  std::int64_t permits() const noexcept { return permits_; }
  Client& home() noexcept { return *client_; }

  /// Stores the count if the semaphore has none, else compares (EVALSHA).
  /// @throws ConfigError when it exists with another count, IoError,
  /// ReplyError.
  void check_count() {
    const long long stored = client_->eval(semaphore_init_script(), {std::string_view(keys_.permits)},
                                           {std::string_view(permits_text_), idle_ttl_text()})
                                 .integer();
    if (stored != 0) mismatch(stored);
  }

  /// One attempt (the acquire script). ws: the waiting process's state, to
  /// register it when busy (null: do not register). If the connection fails
  /// after the script was sent, whether it ran is unknown: it is sent again
  /// at once with the same id (the script recognises a permit already ours);
  /// if that fails too, the permit is released before the error is thrown.
  /// @throws ConfigError (another count), IoError, ReplyError, ProtocolError.
  PermitAttempt attempt(const std::string& id, milliseconds ttl, WaitState* ws) {
    try {
      return attempt_once(id, ttl, ws);
    } catch (const IoError&) {
      if (ws && !ws->registered) {  // it may have registered: add one only if none is there
        ws->registered = true;
        ws->ensure = true;
      }
      try {
        return attempt_once(id, ttl, ws);
      } catch (...) {
        release(id);
        throw;
      }
    }
  }

  /// Removes permit id and wakes one waiting process. Never throws: on
  /// failure the permit expires by its TTL.
  void release(const std::string& id) noexcept {
    try {
      client_->eval(semaphore_release_script(),
                    {std::string_view(keys_.permits), std::string_view(keys_.waiting), std::string_view(keys_.wake)},
                    {std::string_view(id), wake_ttl_text()});
    } catch (...) {
    }
  }

  void release_permit(const std::shared_ptr<HoldState>& h) noexcept override {
    h->end();
    stop_renewal(*h);
    release(h->token);
  }

  /// Free permits now (EVALSHA: TIME, ZCOUNT). @throws IoError, ReplyError.
  std::int64_t available() {
    return client_->eval(semaphore_available_script(), {std::string_view(keys_.permits)},
                         {std::string_view(permits_text_)})
        .integer();
  }

  // ---- renewal (see detail/renewer.hpp) ----

  int renewal_jobs() const noexcept { return 1; }

  /// Registers h with this process's Renewer, first due at ttl/3.
  void start_renewal(const std::shared_ptr<Hold<SemaphoreBackend>>& h) {
    start_node_renewal(h, *client_, keys_.permits);
  }

  void stop_renewal(HoldState& h) noexcept { stop_node_renewal<SemaphoreBackend>(h); }

  /// Scheduler thread: queues h's renewal on its node's lane.
  void post_renewal(const std::shared_ptr<Hold<SemaphoreBackend>>& h, milliseconds ttl) noexcept {
    post_script_renewal(h, client_, semaphore_renew_script(), keys_.permits, ttl, {idle_ttl_text()});
  }

  // ---- waiting ----

  /// One fallback wait after a busy attempt (which registered this
  /// process): blocks on the wake list for a jittered backoff (doubling
  /// from retry_min to retry_max), capped by the time until the earliest
  /// permit expires, by kWaitingTtl / 3 (the registration is refreshed by
  /// every attempt) and by the deadline. o: the semaphore's options as its
  /// holds keep them (permit_hold_options).
  WaitResult wait_round(WaitState& ws, milliseconds& backoff, const PermitAttempt& last,
                        LockClock::time_point deadline, const LockOptions& o) {
    return wait_fallback(*client_, ws, backoff, last.free_in, deadline, o.retry_min, o.retry_max);
  }

  /// The waiting thread stops: unless keep (another thread of this process
  /// takes over), its registration is removed by the lock's leave script
  /// (see end_wait_registration) and its wait connection given back.
  void end_wait(WaitState& ws, bool keep, bool acquired) noexcept {
    end_wait_registration(*client_, ws, keys_.waiting, keys_.wake, keep, acquired);
  }

 private:
  static std::string_view idle_ttl_text() {
    static const std::string s = std::to_string(kSemaphoreIdleTtl.count());
    return s;
  }

  [[noreturn]] void mismatch(long long stored) const {
    throw ConfigError("redkit: semaphore '" + name_ + "' exists with " + std::to_string(stored) +
                      " permits, not " + permits_text_ + " (the count of an existing semaphore is not changed)");
  }

  PermitAttempt attempt_once(const std::string& id, milliseconds ttl, WaitState* ws) {
    std::string_view mode = "none";
    if (ws) mode = !ws->registered ? "add" : (ws->ensure ? "ensure" : "keep");
    const std::string ttl_text = std::to_string(ttl.count());
    const auto sent = LockClock::now();
    Reply r = client_->eval(
        semaphore_acquire_script(),
        {std::string_view(keys_.permits), std::string_view(keys_.waiting)},
        {std::string_view(id), std::string_view(ttl_text), std::string_view(permits_text_), mode,
         waiting_ttl_text(), idle_ttl_text()});
    if (!r.is_array() || r.size() != 2 || !r[0].is_integer() || !r[1].is_integer()) {
      throw ProtocolError("redkit: unexpected reply to the acquire script of semaphore '" + name_ + "'");
    }
    const long long code = r[0].integer();
    const long long value = r[1].integer();
    if (code == -1) mismatch(value);
    PermitAttempt a;
    if (code == 1) {
      a.acquired = true;
      a.valid_until = sent + ttl;
      return a;
    }
    if (ws && mode != "none") {
      ws->registered = true;
      ws->ensure = false;
    }
    a.free_in = milliseconds(std::clamp<long long>(value, 0, kMaxLockTtl.count()));
    return a;
  }

  const std::shared_ptr<Client> client_;  // renewals hold it weakly
  const SemaphoreKeys keys_;
  const std::string name_;
  const std::int64_t permits_;
  const std::string permits_text_;
};

/// This process's state of one semaphore name, for one client (kept in a
/// NameRegistry in the client's per-process state): its threads that wait
/// for a permit take turns, and one of them at a time waits in Redis.
template <class Client>
class SemaphoreLocal {
 public:
  explicit SemaphoreLocal(const SemaphoreKeys& keys) : wait(keys) {}
  SemaphoreLocal(const SemaphoreLocal&) = delete;
  SemaphoreLocal& operator=(const SemaphoreLocal&) = delete;

  std::mutex m;                // guards the two fields below (not wait)
  std::condition_variable cv;  // the waiting thread left
  bool acquiring = false;      // a thread waits for a permit in Redis
  int waiting = 0;             // threads waiting on cv for their turn

  /// Used only by the thread that has `acquiring` set, handed over with it.
  typename SemaphoreBackend<Client>::WaitState wait;
};

}  // namespace redkit::detail
