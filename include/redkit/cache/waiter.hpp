/// @file cache/waiter.hpp
/// How a get_or_set waits for a load in another process: blocked on the
/// entry's wake list until the loader's finish script pushes to it. The one
/// place the cache waits, so that it can move to the shared wake-list
/// mechanism as a whole. Part of <redkit/cache.hpp>.
///
/// Thread safety: thread-safe (each wait uses its own dedicated connection).
/// Exceptions: IoError if no dedicated connection can be had, ReplyError for
/// an error reply that is not a redirect; a server that does not answer in
/// time is not an error (the caller looks again).
#pragma once

#include <algorithm>
#include <chrono>
#include <string>

#include "redkit/command.hpp"
#include "redkit/detail/slot_map.hpp"
#include "redkit/error.hpp"
#include "redkit/reply.hpp"

namespace redkit::detail::cache {

/// Blocks in BLPOP on wake, on a dedicated connection (client.lease), until
/// a loader's finish pushes to it or timeout passes. Either way the caller
/// looks again.
template <class Client>
void wait_for_fill(Client& client, const std::string& wake, std::chrono::milliseconds timeout) {
  timeout = std::max(timeout, std::chrono::milliseconds(1));
  auto lease = client.lease(wake);
  try {
    Reply r = lease.command(Command{"BLPOP"}.key(wake).arg(detail::seconds_text(timeout)),
                            timeout + std::chrono::seconds(1));
    // A Cluster lease is not redirected: when the slot moved, look again
    // (through the client, which follows the redirect).
    if (!r.is_error() || !detail::is_redirect(r.error())) r.check();
  } catch (const TimeoutError&) {
    // The server did not answer in time; the connection is dropped and
    // the caller looks again.
  }
}

}  // namespace redkit::detail::cache
