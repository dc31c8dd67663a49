/// @file lease.hpp
/// redkit::Lease: a dedicated connection borrowed from a client (Redis or
/// Cluster) for blocking commands, transactions and subscriptions.
///
/// Thread safety: a Lease belongs to one thread at a time.
/// Exceptions: as Connection (IoError, TimeoutError, ClosedError,
/// ProtocolError); an error reply is returned in place, not thrown; a
/// moved-from Lease throws Error when used.
///
/// A Lease keeps its pool alive, so it may outlive the client it came from.
/// When it goes, its connection goes back to the client's dedicated pool
/// only if it is as the options made it: a Lease left in MULTI or WATCH,
/// subscribed (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE), in MONITOR, after
/// SELECT, CLIENT REPLY, AUTH and the like, or with replies still owed (a
/// timeout, an exception between send() and read()) is closed instead.
#pragma once

#include <chrono>
#include <optional>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/connection.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/pool.hpp"
#include "redkit/error.hpp"
#include "redkit/reply.hpp"

namespace redkit {

/// A dedicated connection (see the file comment). Move-only.
class Lease {
 public:
  /// Wraps a checkout from a client's dedicated pool (clients make these;
  /// see Redis::lease, Cluster::lease).
  explicit Lease(detail::Checkout c) noexcept : c_(std::move(c)) {}
  /// Takes over other's connection; other is then moved-from.
  Lease(Lease&&) noexcept = default;
  /// Gives back this Lease's connection, then takes over other's.
  Lease& operator=(Lease&&) noexcept = default;

  /// Sends a command and reads its reply, both within timeout (0 = none;
  /// for BLPOP give more than the command's own timeout). An error reply is
  /// returned in place. @throws IoError (TimeoutError: the connection is
  /// then discarded, the command may have run).
  Reply command(const Command& cmd, std::chrono::milliseconds timeout) {
    Connection& c = connection();
    const detail::Deadline d = detail::Deadline::after(timeout);
    c.note_state(cmd);
    c.send(&cmd, 1, d);
    return c.read(d);
  }
  /// Same, within the client's Options::command_timeout.
  Reply command(const Command& cmd) { return command(cmd, connection().command_timeout()); }

  /// Sends a command without reading its reply (SUBSCRIBE, or pipelining by
  /// hand); read() or try_read() take the replies. Within command_timeout.
  /// @throws IoError.
  void send(const Command& cmd) {
    Connection& c = connection();
    c.note_state(cmd);
    c.send(&cmd, 1, c.command_deadline());
  }

  /// The next reply (or pushed message) within timeout (0 = none).
  /// @throws IoError (TimeoutError: the connection is discarded).
  Reply read(std::chrono::milliseconds timeout) { return connection().read(detail::Deadline::after(timeout)); }

  /// The next reply or pushed message if one comes within timeout, else
  /// nullopt; the connection stays usable either way (for a subscriber
  /// that waits for messages). @throws IoError, ProtocolError.
  std::optional<Reply> try_read(std::chrono::milliseconds timeout) {
    return connection().try_read(detail::Deadline::after(timeout));
  }

  /// The connection itself. @throws Error on a moved-from Lease.
  Connection& connection() {
    detail::check_not_moved_from(static_cast<bool>(c_), "redkit::Lease (or one whose connection was given back)");
    return *c_;
  }

  /// False for a moved-from Lease.
  explicit operator bool() const noexcept { return static_cast<bool>(c_); }

  /// Gives the connection back now (or closes it: see the file comment).
  void release() noexcept { c_.reset(); }

 private:
  detail::Checkout c_;
};

}  // namespace redkit
