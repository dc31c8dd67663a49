/// @file semaphore/scripts.hpp
/// The semaphore's Lua scripts and the lifetime of its keys. Every script
/// reads the server's clock (TIME; effects replication, the default since
/// Redis 5), so clients with skewed clocks agree on expiries.
///
/// The permits key is one sorted set: each permit held is a member (its id)
/// scored with its expiry in server ms (about 1.7e12 today), and the member
/// `#count` is scored with the count (at most 1e9), so one range,
/// `(1000000000` to now, holds exactly the expired permits, and the count
/// lives and expires with the permits.
/// Thread safety: immutable.
#pragma once

#include <chrono>
#include <string>

#include "redkit/lock/scripts.hpp"
#include "redkit/script.hpp"

namespace redkit::detail {

/// The permits key lives this long beyond the longest permit's lifetime,
/// refreshed (when less than half of it is left) by acquires and renewals.
/// So an abandoned semaphore leaves nothing behind, and a count stays
/// binding (a different count is a ConfigError) until the semaphore has
/// gone unused this long.
inline constexpr std::chrono::milliseconds kSemaphoreIdleTtl = std::chrono::hours(1);

// Lua shared by the scripts: the server clock in ms; the refresh of the
// permits key's lifetime (ttl ms of a permit + idle ms; at once when force,
// else when less than half the idle time is left beyond ttl); the score
// range of permits (above any count).
inline constexpr const char kSemaphoreLua[] = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep(key, ttl, idle, force)
  local want = tonumber(ttl) + tonumber(idle)
  if force or redis.call('PTTL', key) < want - tonumber(idle) / 2 then
    redis.call('PEXPIRE', key, want)
  end
end
local above_counts = '(1000000000'
)lua";

/// Acquire. KEYS: permits, waiting. ARGV: permit id, ttl ms, count, mode,
/// waiting ttl ms, idle ttl ms. Drops expired permits, then adds ours if
/// fewer than count are held (or refreshes it if it is already there: the
/// retry of an attempt whose reply was lost). Returns {1, free permits
/// left} when acquired; {0, ms until the earliest permit expires} when all
/// are held, after registering this process per mode ('none': do not,
/// 'add': one more registration, 'ensure': add one only if none is
/// counted, 'keep': only refresh the count's TTL; see kRegisterWaiterLua) in the same step, so a release
/// cannot fall between the check and the registration; {-1, stored count}
/// when the semaphore exists with another count.
/// Uncontended: ZSCORE, TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, PTTL.
inline const Script& semaphore_acquire_script() {
  static const Script s(std::string(kSemaphoreLua) + kRegisterWaiterLua + R"lua(
local limit = tonumber(ARGV[3])
local stored = redis.call('ZSCORE', KEYS[1], '#count')
if stored and tonumber(stored) ~= limit then return {-1, tonumber(stored)} end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], above_counts, now)
local n = redis.call('ZCARD', KEYS[1])
if stored then n = n - 1 end
local mine = n < limit
if not mine then mine = redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= false end
if mine then
  n = n + redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if not stored then redis.call('ZADD', KEYS[1], limit, '#count') end
  keep(KEYS[1], ARGV[2], ARGV[6], not stored)
  return {1, limit - n}
end
if ARGV[4] ~= 'none' then register_waiter(KEYS[2], ARGV[4], ARGV[5]) end
local first = redis.call('ZRANGEBYSCORE', KEYS[1], above_counts, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local left = 0
if first[2] then left = math.max(0, tonumber(first[2]) - now) end
return {0, left}
)lua");
  return s;
}

/// Renewal. KEYS: permits. ARGV: permit id, ttl ms, idle ttl ms. 1 if the
/// permit is still ours (its expiry becomes now + ttl), 0 if it is gone or
/// expired (an expired one is removed, never brought back).
/// ZSCORE, TIME, ZADD XX, PTTL.
inline const Script& semaphore_renew_script() {
  static const Script s(std::string(kSemaphoreLua) + R"lua(
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local now = now_ms()
if tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
keep(KEYS[1], ARGV[2], ARGV[3], false)
return 1
)lua");
  return s;
}

/// Release. KEYS: permits, waiting, wake. ARGV: permit id, wake ttl ms.
/// Returns 0 if the permit was not there (left alone), 1 if released, 2 if
/// released and one registered waiter became a wake-up (one release wakes
/// one waiting process). Uncontended: ZREM, GET; with a waiter: and DECR,
/// RPUSH, PEXPIRE.
inline const Script& semaphore_release_script() {
  static const Script s(std::string(kWakeOneLua) + R"lua(
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if (tonumber(redis.call('GET', KEYS[2])) or 0) < 1 then return 1 end
wake_one(KEYS[2], KEYS[3], ARGV[2])
return 2
)lua");
  return s;
}

/// Free permits now. KEYS: permits. ARGV: count. Read-only: TIME, ZCOUNT.
inline const Script& semaphore_available_script() {
  static const Script s(std::string(kSemaphoreLua) + R"lua(
local held = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now_ms()), '+inf')
return math.max(0, tonumber(ARGV[1]) - held)
)lua");
  return s;
}

/// The count check of a new semaphore object. KEYS: permits. ARGV: count,
/// idle ttl ms. Stores the count if there is none (the key then lives at
/// least the idle TTL) and returns 0; returns the stored count when it
/// differs.
inline const Script& semaphore_init_script() {
  static const Script s(R"lua(
local stored = redis.call('ZSCORE', KEYS[1], '#count')
if not stored then
  redis.call('ZADD', KEYS[1], ARGV[1], '#count')
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return 0
end
if tonumber(stored) == tonumber(ARGV[1]) then return 0 end
return tonumber(stored)
)lua");
  return s;
}

}  // namespace redkit::detail
