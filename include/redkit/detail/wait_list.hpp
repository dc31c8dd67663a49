// The one way redkit blocks until another client wakes it: BLPOP on a list,
// on a dedicated connection (a Lease), with one policy for read margins,
// error replies and broken connections. The lock's waiters and the cache's
// fill waiters both wait here; what a wake-up means (and who pushes it) is
// theirs.
//
// Policy:
// - A wait ends Woken only when BLPOP hands back an element: a real wake-up.
//   Nothing else is ever taken as one.
// - TimedOut: BLPOP answered nil, the wait ended at the caller's deadline,
//   or no dedicated connection could be had (see below).
// - LookAgain: the wait ended early without a wake-up and the caller should
//   look at the server again at once: UNBLOCKED (a master demoted under the
//   waiter), a redirect or retry reply (MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
//   READONLY, LOADING: the slot moved or the node is changing role), or the
//   wait connection failed (closed, reset, a read past its margin). The
//   connection is dropped in every one of these cases, so the next wait
//   leases a fresh one from the client, which by then follows the new map
//   or master. A second failure in a row sleeps a short backoff before
//   looking again; the third in a row is thrown (IoError): a server that is
//   really gone is reported, not waited on for ever.
// - Other error replies (WRONGTYPE, NOPERM, ...) are thrown as ReplyError.
// - No dedicated connection free within Options::pool_wait_timeout, or
//   none can be opened: the wait becomes a sleep for the rest of its
//   timeout (polling) and reports TimedOut; the caller's next attempt goes
//   through the command pool and reports a server that is really down.
// - Margins: Redis ends a BLPOP on its own timeout, so the read allows a
//   margin beyond it (the larger of command_timeout and 250 ms). A wait that
//   must end at the caller's own deadline (at_deadline) asks the server for
//   a little longer and ends by the read deadline instead; the connection,
//   which still owes that reply, is then discarded.
//
// Thread safety: a WaitList belongs to one thread at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/error.hpp"
#include "redkit/lease.hpp"
#include "redkit/reply.hpp"
#include "redkit/detail/slot_map.hpp"

namespace redkit::detail {

/// True for an error reply that ends a blocked command without a wake-up
/// and asks the waiter to look again (see the file comment).
inline bool is_look_again(std::string_view error) noexcept {
  return error.substr(0, 9) == "UNBLOCKED" || is_redirect(error);
}

/// What one WaitList::wait() saw.
enum class WaitResult {
  Woken,     ///< BLPOP handed back an element
  TimedOut,  ///< no wake-up within the timeout (or no connection to wait on)
  LookAgain  ///< ended early without a wake-up: look at the server again now
};

template <class Client>
class WaitList {
 public:
  /// Consecutive failures of the wait connection that are thrown.
  static constexpr int kMaxFailures = 3;

  explicit WaitList(std::string key) : key_(std::move(key)) {}
  WaitList(WaitList&&) noexcept = default;
  WaitList& operator=(WaitList&&) noexcept = default;

  const std::string& key() const noexcept { return key_; }
  /// True while a dedicated connection is held.
  bool leased() const noexcept { return lease_.has_value(); }

  /// Blocks in BLPOP on key() for up to timeout, on a connection leased from
  /// client (kept for the next wait). See the file comment for what each
  /// result means. @throws IoError after kMaxFailures failed waits in a
  /// row, ReplyError for an error reply that is not a look-again,
  /// ProtocolError for a reply that is not a BLPOP answer.
  WaitResult wait(Client& client, std::chrono::milliseconds timeout, bool at_deadline) {
    using std::chrono::milliseconds;
    if (timeout.count() <= 0) return WaitResult::TimedOut;
    const auto start = std::chrono::steady_clock::now();
    if (!lease_) {
      try {
        lease_.emplace(client.lease(key_));
      } catch (const IoError&) {
        const auto left = timeout - std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
        if (left.count() > 0) std::this_thread::sleep_for(left);
        return WaitResult::TimedOut;
      }
    }
    const milliseconds command_timeout = client.options().command_timeout;
    milliseconds server_timeout = timeout;
    milliseconds read_timeout =
        command_timeout.count() > 0 ? timeout + std::max(command_timeout, milliseconds(250)) : milliseconds(0);
    if (at_deadline) {
      server_timeout = timeout + milliseconds(200);
      read_timeout = timeout;
    }
    try {
      Reply r = lease_->command(Command{"BLPOP"}.key(key_).arg(seconds_text(server_timeout)), read_timeout);
      if (r.is_error()) {
        if (is_look_again(r.error())) {
          drop();
          return WaitResult::LookAgain;
        }
        r.check();
      }
      failures_ = 0;
      if (r.is_nil()) return WaitResult::TimedOut;
      if (r.is_array() && r.size() == 2) return WaitResult::Woken;
      drop();
      throw ProtocolError("redkit: unexpected reply to BLPOP " + key_);
    } catch (const TimeoutError&) {
      lease_.reset();  // a reply is owed: the checkout discards the connection
      if (at_deadline) return WaitResult::TimedOut;
      return failed(timeout);
    } catch (const IoError&) {
      lease_.reset();
      return failed(timeout);
    }
  }

  /// Gives the dedicated connection back (to the client's pool when it is
  /// clean).
  void release() noexcept { lease_.reset(); }

 private:
  // The connection may lead to a node that is no longer the right one (a
  // demoted master, a moved slot): never hand it to the next waiter.
  void drop() noexcept {
    if (lease_ && *lease_) lease_->connection().mark_broken();
    lease_.reset();
  }

  // Called from a catch block: rethrows the third failure in a row.
  WaitResult failed(std::chrono::milliseconds timeout) {
    if (++failures_ >= kMaxFailures) {
      failures_ = 0;
      throw;
    }
    if (failures_ >= 2) std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(50)));
    return WaitResult::LookAgain;
  }

  std::string key_;
  std::optional<Lease> lease_;
  int failures_ = 0;
};

}  // namespace redkit::detail
