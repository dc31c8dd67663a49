/// @file lock/single.hpp
/// The single-server lock protocol over one client (Redis, sentinel-mode
/// Redis or Cluster): RedisLock's backend. Thread-safe (the client is; the
/// rest is immutable), except WaitState, which belongs to the one thread of
/// a process that acquires the name in Redis.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/detail/renewer.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/detail/wait_list.hpp"
#include "redkit/error.hpp"
#include "redkit/lease.hpp"
#include "redkit/lock/engine.hpp"
#include "redkit/lock/hold.hpp"
#include "redkit/lock/keys.hpp"
#include "redkit/lock/scripts.hpp"
#include "redkit/lock/waiting.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"

namespace redkit::detail {

template <class Client>
class SingleLockBackend {
 public:
  /// The Redis side of one process waiting for the name: its registration
  /// in `waiting` and the dedicated connection it blocks on.
  struct WaitState {
    explicit WaitState(const LockKeys& keys) : list(keys.wake) {}
    WaitList<Client> list;
    bool registered = false;  // this process counts in `waiting`, as far as it knows
    bool ensure = false;      // after a look-again: check that the registration survived
    LockClock::time_point refreshed{};
  };

  /// Where a hold's renewals go: this process's Renewer of the client, and
  /// the lane of the node that serves the key.
  using RenewalRoute = NodeRenewalRoute<Client>;

  SingleLockBackend(Client client, LockKeys keys, int wait_replicas, milliseconds wait_timeout)
      : client_(std::make_shared<Client>(std::move(client))),
        keys_(std::move(keys)),
        wait_replicas_(wait_replicas),
        wait_timeout_(wait_timeout) {}

  const std::string& name() const noexcept { return keys_.key; }
  const LockKeys& keys() const noexcept { return keys_; }
  Client& home() noexcept { return *client_; }

  /// One attempt: a plain `SET key token NX PX ttl` (fenced: the acquire
  /// script with the fence). If the connection fails after it was sent (a
  /// timeout, a reset, a closed connection), whether it ran is unknown: it
  /// is retried at once with the same token by a script that recognises our
  /// own token; if that fails too, the key is released (token-checked)
  /// before the error is thrown. With wait_replicas, see attempt_replicated.
  LockAttempt attempt(const std::string& token, milliseconds ttl, bool fenced) {
    if (wait_replicas_ > 0) return attempt_replicated(token, ttl, fenced);
    const auto sent = LockClock::now();
    try {
      if (fenced) return fenced_attempt(token, ttl, sent);
      Reply r = client_->command(set_nx(token, ttl));
      return plain(!r.is_nil(), sent, ttl);
    } catch (const IoError&) {
      return recognise(token, ttl, fenced);
    }
  }

  /// Deletes the key if it holds token and wakes one waiting process. Never
  /// throws: on failure the key expires by its TTL.
  void release(const std::string& token) noexcept {
    try {
      client_->eval(lock_release_script(), {std::string_view(keys_.key), std::string_view(keys_.waiting),
                                            std::string_view(keys_.wake)},
                    {std::string_view(token), wake_ttl_text()});
    } catch (...) {
    }
  }

  /// The next fence, issued only while the key holds token; nullopt if it
  /// does not. @throws IoError, ReplyError.
  std::optional<std::int64_t> fence(const std::string& token) {
    Reply r = client_->eval(lock_fence_script(), {std::string_view(keys_.key), std::string_view(keys_.fence)},
                            {std::string_view(token), fence_ttl_text()});
    const long long f = r.integer();
    if (f < 1) return std::nullopt;
    return f;
  }

  /// PEXPIREs the key if it still holds token (extend()). The new end of our
  /// validity, or nullopt when the key is gone or another's.
  /// @throws IoError, ReplyError.
  std::optional<LockClock::time_point> renew(const std::string& token, milliseconds ttl) {
    const std::string ttl_text = std::to_string(ttl.count());
    const auto sent = LockClock::now();
    Reply r = client_->eval(lock_extend_script(), {std::string_view(keys_.key)},
                            {std::string_view(token), std::string_view(ttl_text)});
    if (r.integer() != 1) return std::nullopt;
    return sent + ttl;
  }

  // ---- renewal (see detail/renewer.hpp) ----

  int renewal_jobs() const noexcept { return 1; }

  /// Registers h with this process's Renewer, first due at ttl/3.
  void start_renewal(const std::shared_ptr<Hold<SingleLockBackend>>& h) {
    start_node_renewal(h, *client_, keys_.key);
  }

  void rearm_renewal(HoldState& h) {
    if (auto* r = static_cast<Hold<SingleLockBackend>&>(h).route.renewer) r->rearm(h, client_->scheduler());
  }

  void stop_renewal(HoldState& h) noexcept { stop_node_renewal<SingleLockBackend>(h); }

  /// Scheduler thread: queues h's renewal on its node's lane.
  void post_renewal(const std::shared_ptr<Hold<SingleLockBackend>>& h, milliseconds ttl) noexcept {
    post_script_renewal(h, client_, lock_extend_script(), keys_.key, ttl);
  }

  // ---- waiting ----

  /// One round of waiting in Redis after a failed attempt: registers this
  /// process in `waiting` (once; refreshed every kWaitingTtl / 3; checked
  /// again after a look-again), then blocks on the wake list for the
  /// fallback wait, capped by the holder's PTTL when just learned (by the
  /// failed attempt `last`, or by the registration) and by the deadline.
  /// Returns when the caller should attempt again.
  void wait_round(WaitState& ws, WaitRound& round, const LockAttempt& last, LockClock::time_point deadline,
                  const LockOptions& o) {
    const auto now = LockClock::now();
    milliseconds holder_ttl = last.holder_ttl;
    if (!ws.registered || ws.ensure || now - ws.refreshed >= kWaitingTtl / 3) {
      const char* mode = !ws.registered ? "add" : (ws.ensure ? "ensure" : "keep");
      const long long t = client_
                              ->eval(lock_register_script(),
                                     {std::string_view(keys_.key), std::string_view(keys_.waiting)},
                                     {waiting_ttl_text(), std::string_view(mode)})
                              .integer();
      if (t == -2) return;  // free now: attempt again at once
      ws.registered = true;
      ws.ensure = false;
      ws.refreshed = now;
      holder_ttl = milliseconds(t);
    }
    (void)wait_fallback(*client_, ws, round.backoff, holder_ttl, deadline, o.retry_min, o.retry_max);
  }

  /// The acquiring thread stops: unless keep (another thread of this
  /// process takes over), its registration is removed by the leave script
  /// (see end_wait_registration) and its wait connection given back.
  void end_wait(WaitState& ws, bool keep, bool acquired) noexcept {
    end_wait_registration(*client_, ws, keys_.waiting, keys_.wake, keep, acquired);
  }

 private:
  Command set_nx(const std::string& token, milliseconds ttl) const {
    Command c;
    c.reserve(6, keys_.key.size() + token.size() + 32);
    return std::move(c.arg("SET").key(keys_.key).arg(token).arg("NX").arg("PX").arg(static_cast<long long>(ttl.count())));
  }

  static LockAttempt plain(bool acquired, LockClock::time_point sent, milliseconds ttl) {
    LockAttempt a;
    a.acquired = acquired;
    if (acquired) a.valid_until = sent + ttl;
    return a;
  }

  // The reply of a script that answers >= 1 when ours (the fence, or 1) and
  // -2 - the holder's PTTL when busy.
  static LockAttempt scripted(long long v, LockClock::time_point sent, milliseconds ttl, bool fenced) {
    LockAttempt a;
    a.acquired = v >= 1;
    if (a.acquired) {
      a.valid_until = sent + ttl;
      if (fenced) a.fence = v;
    } else {
      a.holder_ttl = milliseconds(-2 - v);
    }
    return a;
  }

  LockAttempt fenced_attempt(const std::string& token, milliseconds ttl, LockClock::time_point sent) {
    const std::string ttl_text = std::to_string(ttl.count());
    Reply r = client_->eval(lock_acquire_fenced_script(),
                            {std::string_view(keys_.key), std::string_view(keys_.fence)},
                            {std::string_view(token), std::string_view(ttl_text), fence_ttl_text()});
    return scripted(r.integer(), sent, ttl, true);
  }

  // The retry after an attempt whose outcome is unknown.
  LockAttempt recognise(const std::string& token, milliseconds ttl, bool fenced) {
    try {
      const auto sent = LockClock::now();
      if (fenced) return fenced_attempt(token, ttl, sent);
      const std::string ttl_text = std::to_string(ttl.count());
      Reply r = client_->eval(lock_recognise_script(), {std::string_view(keys_.key)},
                              {std::string_view(token), std::string_view(ttl_text)});
      return scripted(r.integer(), sent, ttl, false);
    } catch (...) {
      release(token);  // the first attempt may have left our token there
      throw;
    }
  }

  // WAIT counts the writes of the connection it is sent on, so the acquire
  // and the WAIT go over one leased connection. After an ambiguous failure
  // the hold is recognised through the pool and written again (token-checked
  // PEXPIRE) on a fresh lease before the WAIT. A WAIT that fails or falls
  // short releases the lock before the throw.
  LockAttempt attempt_replicated(const std::string& token, milliseconds ttl, bool fenced) {
    const milliseconds timeout = client_->options().command_timeout;
    auto send_on = [&](Lease& lease) {
      return [&lease, timeout](const Command& cmd) { return lease.command(cmd, timeout); };
    };
    Lease lease = client_->lease(keys_.key);  // nothing is sent if this throws
    const std::string ttl_text = std::to_string(ttl.count());
    const auto sent = LockClock::now();
    LockAttempt a;
    try {
      if (fenced) {
        const std::initializer_list<std::string_view> keys = {keys_.key, keys_.fence};
        const std::initializer_list<std::string_view> args = {token, ttl_text, fence_ttl_text()};
        Reply r = run_script(lock_acquire_fenced_script(), keys, args, send_on(lease));
        r.check();
        a = scripted(r.integer(), sent, ttl, true);
      } else {
        Reply r = lease.command(set_nx(token, ttl), timeout);
        r.check();
        a = plain(!r.is_nil(), sent, ttl);
      }
    } catch (const IoError&) {
      a = recognise(token, ttl, fenced);
      if (!a.acquired) return a;
      try {
        lease = client_->lease(keys_.key);
        const std::initializer_list<std::string_view> keys = {keys_.key};
        const std::initializer_list<std::string_view> args = {token, ttl_text};
        Reply r = run_script(lock_extend_script(), keys, args, send_on(lease));
        r.check();
        if (r.integer() != 1) throw IoError("redkit: lock '" + keys_.key + "' was lost while acquiring it");
      } catch (...) {
        release(token);
        throw;
      }
    }
    if (!a.acquired) return a;
    long long acknowledged = 0;
    try {
      Reply w = lease.command(Command{"WAIT"}.route(keys_.key).arg(wait_replicas_).arg(static_cast<long long>(wait_timeout_.count())),
                              timeout.count() > 0 ? wait_timeout_ + timeout : milliseconds(0));
      w.check();
      acknowledged = w.integer();
    } catch (...) {
      release(token);
      throw;
    }
    if (acknowledged < wait_replicas_) {
      release(token);
      throw NotReplicatedError(keys_.key, acknowledged, wait_replicas_);
    }
    return a;
  }

  const std::shared_ptr<Client> client_;  // renewals hold it weakly
  const LockKeys keys_;
  const int wait_replicas_;
  const milliseconds wait_timeout_;
};

}  // namespace redkit::detail
