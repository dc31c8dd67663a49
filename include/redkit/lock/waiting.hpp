/// @file lock/waiting.hpp
/// Waiting in Redis, shared by RedisLock and RedisSemaphore on one server:
/// one fallback wait on the wake list, and how a process that waited stops
/// waiting (its registration in the `waiting` count). Internals of both.
/// Thread safety: called by the one thread of a process that waits in Redis
/// for a name.
#pragma once

#include <algorithm>
#include <chrono>
#include <string_view>

#include "redkit/detail/token.hpp"
#include "redkit/detail/wait_list.hpp"
#include "redkit/lock/scripts.hpp"

namespace redkit::detail {

/// One fallback wait on ws.list: a jittered backoff (half of it to all of
/// it), capped just past free_in when that is known (>= 0: when a crashed
/// holder's key or permit expires, plus 1-10 ms so that waiters do not all
/// try at once), by kWaitingTtl / 3 and by the deadline. Woken: backoff goes
/// back to retry_min (the release used this process's registration);
/// timed out: it doubles, up to retry_max; look again: the registration is
/// checked on the next round. Throws what WaitList::wait throws.
template <class Client, class WaitState>
WaitResult wait_fallback(Client& client, WaitState& ws, std::chrono::milliseconds& backoff,
                         std::chrono::milliseconds free_in, std::chrono::steady_clock::time_point deadline,
                         std::chrono::milliseconds retry_min, std::chrono::milliseconds retry_max) {
  using std::chrono::milliseconds;
  milliseconds wait = random_between(backoff / 2, backoff);
  if (free_in.count() >= 0) wait = std::min(wait, free_in + random_between(milliseconds(1), milliseconds(10)));
  wait = std::min(wait, kWaitingTtl / 3);
  const auto left = std::chrono::ceil<milliseconds>(deadline - std::chrono::steady_clock::now());
  const WaitResult r = ws.list.wait(client, std::min(wait, left), left <= wait);
  switch (r) {
    case WaitResult::Woken:
      ws.registered = false;
      backoff = retry_min;
      break;
    case WaitResult::TimedOut:
      backoff = std::min(backoff * 2, retry_max);
      break;
    case WaitResult::LookAgain:
      ws.ensure = true;
      break;
  }
  return r;
}

/// The waiting thread stops: unless keep (another thread of this process
/// takes over), its registration is removed by the leave script (when it
/// gives up, not if a wake-up is pending: that one is left for the next
/// waiter) and its wait connection given back.
/// WaitState has `list` (a WaitList), `registered` and `ensure`. Never throws.
template <class Client, class WaitState>
void end_wait_registration(Client& client, WaitState& ws, std::string_view waiting, std::string_view wake,
                           bool keep, bool acquired) noexcept {
  if (keep) return;
  if (ws.registered) {
    try {
      client.eval(lock_leave_script(), {waiting, wake}, {std::string_view(acquired ? "acquired" : "gave_up")});
    } catch (...) {
      // The registration expires with the count (kWaitingTtl).
    }
    ws.registered = false;
  }
  ws.ensure = false;
  ws.list.release();
}

}  // namespace redkit::detail
