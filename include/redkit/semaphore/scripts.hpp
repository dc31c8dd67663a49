/// @file semaphore/scripts.hpp
/// The semaphore's Lua scripts and the lifetime of its keys. Every script
/// reads the server's clock (TIME; effects replication, the default since
/// Redis 5), so clients with skewed clocks agree on expiries.
/// Thread safety: immutable.
#pragma once

#include <chrono>
#include <string>

#include "redkit/lock/scripts.hpp"
#include "redkit/script.hpp"

namespace redkit::detail {

/// The count and holder keys live this long beyond the longest permit's
/// lifetime, refreshed (when less than half of it is left) by acquires and
/// renewals. So an abandoned semaphore leaves nothing behind, and a count
/// stays binding (a different count is a ConfigError) until the semaphore
/// has gone unused this long.
inline constexpr std::chrono::milliseconds kSemaphoreIdleTtl = std::chrono::hours(1);

// Lua shared by the scripts: the server clock in ms, and the refresh of the
// count and holder keys' lifetime (ttl ms of a permit + idle ms; at once
// when force, else when less than half the idle time is left beyond ttl).
inline constexpr const char kSemaphoreLua[] = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep(holders, count, permits, ttl, idle, force)
  local want = tonumber(ttl) + tonumber(idle)
  if force or redis.call('PTTL', holders) < want - tonumber(idle) / 2 then
    redis.call('PEXPIRE', holders, want)
    redis.call('SET', count, permits, 'PX', want)
  end
end
)lua";

/// Acquire. KEYS: holders, count, waiting. ARGV: permit id, ttl ms, permits,
/// mode, waiting ttl ms, idle ttl ms. Drops expired permits, then adds ours
/// if fewer than `permits` are held (or refreshes it if it is already
/// there: the retry of an attempt whose reply was lost). Returns {1, free
/// permits left} when acquired; {0, ms until the earliest permit expires}
/// when all are held, after registering this process per mode ('none': do
/// not, 'add': one more registration, 'ensure': add one only if the list is
/// gone, 'keep': only refresh the list's TTL) in the same step, so a release
/// cannot fall between the check and the registration; {-1, stored count}
/// when the semaphore exists with another count (-1: not a number).
/// Uncontended: TIME, GET, ZREMRANGEBYSCORE, ZCARD, ZADD, PTTL.
inline const Script& semaphore_acquire_script() {
  static const Script s(std::string(kSemaphoreLua) + R"lua(
local stored = redis.call('GET', KEYS[2])
if stored and stored ~= ARGV[3] then return {-1, tonumber(stored) or -1} end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
local mine = n < limit
if not mine then mine = redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= false end
if mine then
  n = n + redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  keep(KEYS[1], KEYS[2], ARGV[3], ARGV[2], ARGV[6], not stored)
  return {1, limit - n}
end
local mode = ARGV[4]
if mode == 'add' or (mode == 'ensure' and redis.call('EXISTS', KEYS[3]) == 0) then
  redis.call('RPUSH', KEYS[3], '1')
end
if mode ~= 'none' then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local left = 0
if first[2] then left = math.max(0, tonumber(first[2]) - now) end
return {0, left}
)lua");
  return s;
}

/// Renewal. KEYS: holders, count. ARGV: permit id, ttl ms, permits, idle ttl
/// ms. 1 if the permit is still ours (its expiry becomes now + ttl), 0 if it
/// is gone or expired (an expired one is removed, never brought back).
inline const Script& semaphore_renew_script() {
  static const Script s(std::string(kSemaphoreLua) + R"lua(
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
if tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
keep(KEYS[1], KEYS[2], ARGV[3], ARGV[2], ARGV[4], not redis.call('GET', KEYS[2]))
return 1
)lua");
  return s;
}

/// Release. KEYS: holders, waiting, wake. ARGV: permit id, wake ttl ms.
/// Returns 0 if the permit was not there (left alone), 1 if released, 2 if
/// released and one registered waiter's entry was moved to `wake` (one
/// release wakes one waiting process). Uncontended: ZREM, RPOPLPUSH.
inline const Script& semaphore_release_script() {
  static const Script s(R"lua(
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('RPOPLPUSH', KEYS[2], KEYS[3]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return 2
end
return 1
)lua");
  return s;
}

/// Free permits now. KEYS: holders. ARGV: permits. Read-only: TIME, ZCOUNT.
inline const Script& semaphore_available_script() {
  static const Script s(std::string(kSemaphoreLua) + R"lua(
local held = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now_ms()), '+inf')
return math.max(0, tonumber(ARGV[1]) - held)
)lua");
  return s;
}

/// The count check of a new semaphore object. KEYS: count. ARGV: permits,
/// idle ttl ms. Stores the count if there is none (with the idle TTL) and
/// returns 0; returns the stored count when it differs (-1: not a number).
inline const Script& semaphore_init_script() {
  static const Script s(R"lua(
local stored = redis.call('GET', KEYS[1])
if not stored then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
if stored == ARGV[1] then return 0 end
return tonumber(stored) or -1
)lua");
  return s;
}

}  // namespace redkit::detail
