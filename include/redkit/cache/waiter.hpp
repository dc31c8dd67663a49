/// @file cache/waiter.hpp
/// How a get_or_set waits for a load in another process: blocked on the
/// entry's wake list until the loader's finish script pushes to it. The one
/// place the cache waits, on detail::WaitList, the waiter the lock uses too.
/// Part of <redkit/cache.hpp>.
///
/// Thread safety: thread-safe (each wait uses its own dedicated connection).
/// Exceptions: as detail::WaitList::wait (the third failure in a row is
/// thrown); a server that does not answer in time is not an error.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>

#include "redkit/detail/wait_list.hpp"

namespace redkit::detail::cache {

/// Blocks on the wake list (detail::WaitList: BLPOP on a dedicated
/// connection, the policy the lock's waiters share) until a loader's finish
/// pushes to it or timeout passes. Woken, timed out or told to look again
/// (failover, moved slot, a closed wait connection): the caller looks again.
template <class Client>
void wait_for_fill(Client& client, const std::string& wake, std::chrono::milliseconds timeout) {
  detail::WaitList<Client> list(wake);
  (void)list.wait(client, std::max(timeout, std::chrono::milliseconds(1)), false);
}

}  // namespace redkit::detail::cache
