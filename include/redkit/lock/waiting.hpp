// A waiting process's registration in a wait list's `waiting` list, shared
// by RedisLock and RedisSemaphore: how a process that waited stops waiting.
// Thread safety: called by the one thread of a process that waits in Redis
// for a name. Never throws.
#pragma once

#include <string_view>

#include "redkit/command.hpp"
#include "redkit/lock/scripts.hpp"

namespace redkit::detail {

/// The waiting thread stops: unless keep (another thread of this process
/// takes over), its registration is removed (LPOP when it acquired without
/// being woken; when it gives up, the leave script, which keeps it when a
/// wake-up is pending, for the next waiter) and its wait connection given back.
/// WaitState has `list` (a WaitList), `registered` and `ensure`.
template <class Client, class WaitState>
void end_wait_registration(Client& client, WaitState& ws, std::string_view waiting, std::string_view wake,
                           bool keep, bool acquired) noexcept {
  if (keep) return;
  if (ws.registered) {
    try {
      if (acquired) {
        client.command(Command{"LPOP"}.key(waiting));
      } else {
        client.eval(lock_leave_script(), {waiting, wake}, {});
      }
    } catch (...) {
      // The registration expires with the list (kWaitingTtl).
    }
    ws.registered = false;
  }
  ws.ensure = false;
  ws.list.release();
}

}  // namespace redkit::detail
