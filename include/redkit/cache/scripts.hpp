/// @file cache/scripts.hpp
/// The two Lua scripts behind RedisCache::get_or_set across processes: the
/// claim of a key's fill lock (with the decision of what the caller does)
/// and the finish of a load (outcome recorded, lock released, waiters
/// woken). Part of <redkit/cache.hpp>.
///
/// Thread safety: the Script objects are immutable statics.
/// Exceptions: claim_kind throws ProtocolError for a result it does not know.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "redkit/error.hpp"
#include "redkit/script.hpp"

namespace redkit::detail::cache {

// Decides what a get_or_set that needs a load does, atomically with taking
// the fill lock.
// KEYS: value, meta, fill, waiters, stale
// ARGV: token, fill_lock_ms, check_present ('1'|'0'), honour_negative
//       ('1'|'0'), seen_pttl ('' = no check), on_busy ('wait'|'stale'|'keep')
// Returns {kind, fill lock pttl}: 'present' (the value is there now),
// 'absent' (a cached "absent"), 'fresh' (the value was rewritten since the
// caller read it with seen_pttl left), 'load' (the caller holds the fill
// lock), 'busy' (someone else holds it; on_busy 'keep'), 'stale' (someone
// else holds it and a stale copy exists), 'wait' (someone else holds it; the
// caller is counted as a waiter and will be woken through the wake list).
inline const Script& claim_script() {
  static const Script s(R"lua(
local value, meta, fill, waiters, stale = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local exists = redis.call('EXISTS', value) == 1
if ARGV[3] == '1' and exists then return {'present', 0} end
if ARGV[4] == '1' and not exists and redis.call('GET', meta) == 'absent' then return {'absent', 0} end
if ARGV[5] ~= '' and redis.call('PTTL', value) > tonumber(ARGV[5]) then return {'fresh', 0} end
if redis.call('SET', fill, ARGV[1], 'NX', 'PX', ARGV[2]) then return {'load', 0} end
if ARGV[6] == 'keep' then return {'busy', 0} end
if ARGV[6] == 'stale' and redis.call('EXISTS', stale) == 1 then return {'stale', 0} end
local pttl = redis.call('PTTL', fill)
redis.call('INCR', waiters)
redis.call('PEXPIRE', waiters, math.max(pttl, 0) + 1000)
return {'wait', pttl}
)lua");
  return s;
}

// Ends a load: records its outcome in the side keys, releases the fill lock
// if the token still holds it, and wakes every counted waiter (one list
// element each). The value itself was SET before, by a plain command.
// KEYS: value, meta, fill, waiters, wake, stale
// ARGV: token ('' = no lock held), outcome ('stored'|'absent'|'failed'),
//       meta text, meta/negative ttl ms ('0' = none), stale_ms, wake_ttl_ms
// Returns the number of waiters woken.
inline const Script& finish_script() {
  static const Script s(R"lua(
local value, meta, fill, waiters, wake, stale = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if ARGV[2] == 'stored' then
  redis.call('SET', meta, ARGV[3], 'PX', ARGV[4])
  if ARGV[5] ~= '0' then
    local pttl = redis.call('PTTL', value)
    if pttl > 0 then
      redis.call('COPY', value, stale, 'REPLACE')
      redis.call('PEXPIRE', stale, pttl + tonumber(ARGV[5]))
    end
  end
elseif ARGV[2] == 'absent' then
  redis.call('DEL', value, stale)
  if ARGV[4] ~= '0' then redis.call('SET', meta, 'absent', 'PX', ARGV[4]) else redis.call('DEL', meta) end
end
if ARGV[1] ~= '' and redis.call('GET', fill) == ARGV[1] then redis.call('DEL', fill) end
local n = tonumber(redis.call('GET', waiters) or '0') or 0
if n > 0 then
  redis.call('DEL', waiters)
  for i = 1, n do redis.call('RPUSH', wake, '1') end
  redis.call('PEXPIRE', wake, ARGV[6])
end
return n
)lua");
  return s;
}

/// What claim_script decided.
struct Claim {
  enum class Kind { Present, Absent, Fresh, Load, Busy, Stale, Wait };
  Kind kind = Kind::Wait;
  std::chrono::milliseconds fill_pttl{0};
};

inline Claim::Kind claim_kind(std::string_view s) {
  if (s == "present") return Claim::Kind::Present;
  if (s == "absent") return Claim::Kind::Absent;
  if (s == "fresh") return Claim::Kind::Fresh;
  if (s == "load") return Claim::Kind::Load;
  if (s == "busy") return Claim::Kind::Busy;
  if (s == "stale") return Claim::Kind::Stale;
  if (s == "wait") return Claim::Kind::Wait;
  throw ProtocolError("redkit: unexpected cache claim result '" + std::string(s) + "'");
}

}  // namespace redkit::detail::cache
