/// @file lock/scripts.hpp
/// The lock's Lua scripts, and the lifetimes of its side keys. Each script
/// is token-checked: it acts only while the key holds the caller's token.
/// Thread safety: immutable.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "redkit/script.hpp"

namespace redkit::detail {

/// Lifetime of the fencing counter after its last use. When it has expired
/// (or was lost: restart, FLUSHALL) it is reseeded from the server clock in
/// microseconds, which is larger than any fence handed out before it as long
/// as fewer than one fence per microsecond is issued on the name.
inline constexpr std::chrono::milliseconds kFenceTtl = std::chrono::hours(1);
/// Lifetime of the `waiting` count after the last registration or refresh;
/// a waiter refreshes it every kWaitingTtl / 3 and never blocks longer.
inline constexpr std::chrono::milliseconds kWaitingTtl{60000};
/// How long a wake-up waits in the `wake` list for a waiter to take it.
inline constexpr std::chrono::milliseconds kWakeTtl{2000};

/// kFenceTtl in ms, as the scripts take it (an ARGV).
inline std::string_view fence_ttl_text() {
  static const std::string s = std::to_string(kFenceTtl.count());
  return s;
}
/// kWaitingTtl in ms, as the scripts take it (an ARGV).
inline std::string_view waiting_ttl_text() {
  static const std::string s = std::to_string(kWaitingTtl.count());
  return s;
}
/// kWakeTtl in ms, as the scripts take it (an ARGV).
inline std::string_view wake_ttl_text() {
  static const std::string s = std::to_string(kWakeTtl.count());
  return s;
}

// The Lua function the fence-issuing scripts share: the next fence from
// the counter at key, whose TTL becomes ttl ms; a missing counter (INCR
// gives 1) is reseeded from TIME in microseconds.
inline constexpr const char kFenceLua[] = R"lua(
local function fence(key, ttl)
  local f = redis.call('INCR', key)
  if f < 2 then
    local t = redis.call('TIME')
    local seed = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('SET', key, seed, 'PX', ttl)
    return tonumber(seed)
  end
  redis.call('PEXPIRE', key, ttl)
  return f
end
)lua";

// The Lua functions the scripts of waiting share (the lock's and the
// semaphore's), one fragment each, so a script defines only what it calls
// (a function definition runs on every call of the script). The `waiting`
// key is an integer string with a TTL: how many processes wait in Redis for
// the name (never below 0; 0 or missing: none). A string, not a list, so
// that a release reads it in the same MGET as the lock's token: an
// uncontended release runs no extra call to learn that nobody waits.

/// register_waiter(key, mode, ttl): per mode, 'add' one registration,
/// 'ensure' one only if none is counted (after a failover or a lost wait
/// connection), or 'keep' (only the TTL); the TTL becomes ttl ms.
inline constexpr const char kRegisterWaiterLua[] = R"lua(
local function register_waiter(key, mode, ttl)
  if mode == 'add' or (mode == 'ensure' and (tonumber(redis.call('GET', key)) or 0) < 1) then
    if redis.call('INCR', key) < 1 then redis.call('SET', key, '1') end
  end
  redis.call('PEXPIRE', key, ttl)
end
)lua";

/// wake_one(waiting, wake, ttl): one registration (the caller read a count
/// >= 1) becomes a wake-up in the wake list, which expires ttl ms later if
/// nobody takes it.
inline constexpr const char kWakeOneLua[] = R"lua(
local function wake_one(waiting, wake, ttl)
  redis.call('DECR', waiting)
  redis.call('RPUSH', wake, '1')
  redis.call('PEXPIRE', wake, ttl)
end
)lua";

/// Release. KEYS: lock, waiting, wake. ARGV: token, wake ttl ms.
/// Returns 0 if the key was not ours (left alone), 1 if released, 2 if
/// released and one registered waiter became a wake-up (one release wakes
/// one waiting process). Uncontended: MGET, DEL (raw compare-and-delete's
/// GET, DEL); with a waiter: and DECR, RPUSH, PEXPIRE.
inline const Script& lock_release_script() {
  static const Script s(std::string(kWakeOneLua) + R"lua(
local v = redis.call('MGET', KEYS[1], KEYS[2])
if v[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if (tonumber(v[2]) or 0) < 1 then return 1 end
wake_one(KEYS[2], KEYS[3], ARGV[2])
return 2
)lua");
  return s;
}

/// Extend (and renewal). KEYS: lock. ARGV: token, ttl ms. 1 if ours, else 0.
inline const Script& lock_extend_script() {
  static const Script s(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
)lua");
  return s;
}

/// The fence on demand. KEYS: lock, fence. ARGV: token, fence ttl ms.
/// Returns the next fence (>= 1) if the key holds token, else 0: a fence is
/// only ever issued while our token holds the key.
inline const Script& lock_fence_script() {
  static const Script s(std::string(kFenceLua) + R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return fence(KEYS[2], ARGV[2])
)lua");
  return s;
}

/// Acquire with the fence (LockOptions::fence_on_acquire, RedisRedlock).
/// KEYS: lock, fence. ARGV: token, ttl ms, fence ttl ms. Returns the fence
/// (>= 1) when the key is ours, else -2 - the holder's PTTL (-1: a holder
/// without expiry). Our own token already there means an earlier attempt
/// whose reply was lost got it: its TTL is renewed and its fence returned.
inline const Script& lock_acquire_fenced_script() {
  static const Script s(std::string(kFenceLua) + R"lua(
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return fence(KEYS[2], ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local f = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if f >= 1 then return f end
  return fence(KEYS[2], ARGV[3])
end
return -2 - redis.call('PTTL', KEYS[1])
)lua");
  return s;
}

/// The retry of a plain acquire whose outcome is unknown (the connection
/// failed after the SET was sent). KEYS: lock. ARGV: token, ttl ms.
/// Returns 1 when the key is ours now (set now, or it already held token:
/// TTL renewed), else -2 - the holder's PTTL.
inline const Script& lock_recognise_script() {
  static const Script s(R"lua(
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return -2 - redis.call('PTTL', KEYS[1])
)lua");
  return s;
}

/// A process registers as waiting. KEYS: lock, waiting. ARGV: waiting ttl
/// ms, mode: 'add' (one more registration), 'ensure' (add one only if none
/// is counted: after a failover or a lost wait connection), 'keep' (only
/// refresh the TTL). Returns -2 without registering when the lock is free
/// (try again now), else the holder's PTTL (-1: no expiry). Checking and
/// registering in one script closes the gap in which a release could come
/// between the failed SET and the registration, and find nobody to wake.
inline const Script& lock_register_script() {
  static const Script s(std::string(kRegisterWaiterLua) + R"lua(
local t = redis.call('PTTL', KEYS[1])
if t == -2 then return -2 end
register_waiter(KEYS[2], ARGV[2], ARGV[1])
return t
)lua");
  return s;
}

/// A process stops waiting. KEYS: waiting, wake. ARGV: 'acquired' (it got
/// the lock or permit without a wake-up) or 'gave_up'. Removes one
/// registration; when giving up, not if a wake-up is waiting to be taken
/// (a release already used a registration): that wake-up is left for the
/// next waiter. Shared by the lock and the semaphore.
inline const Script& lock_leave_script() {
  static const Script s(R"lua(
if ARGV[1] == 'acquired' or redis.call('LLEN', KEYS[2]) == 0 then
  if (tonumber(redis.call('GET', KEYS[1])) or 0) >= 1 then redis.call('DECR', KEYS[1]) end
end
return 1
)lua");
  return s;
}

/// Raises the fencing counter to at least ARGV[1] (RedisRedlock's second
/// round). KEYS: fence. ARGV: floor, fence ttl ms.
inline const Script& lock_fence_floor_script() {
  static const Script s(R"lua(
local f = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if f < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
)lua");
  return s;
}

}  // namespace redkit::detail
