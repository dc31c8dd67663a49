/// @file semaphore/keys.hpp
/// The Redis keys of a semaphore name, all in one hash slot. Thread safety:
/// plain values.
#pragma once

#include <string>

#include "redkit/lock/keys.hpp"

namespace redkit::detail {

/// The keys of semaphore `name`: `{name}:sem:...`, or `name:sem:...` when
/// name already has a hash tag. The `sem:` infix keeps them apart from the
/// side keys of a RedisLock of the same name.
struct SemaphoreKeys {
  /// Sorted set: one member per permit held (its id, scored with its expiry
  /// in server-clock ms) and the member kCountMember scored with the count.
  std::string permits;
  std::string waiting;  ///< integer: how many processes wait in Redis (see kRegisterWaiterLua)
  std::string wake;     ///< list: one wake-up per release that found `waiting` >= 1
};

/// The member of SemaphoreKeys::permits that stores the count (no permit id
/// has a '#').
inline constexpr const char kCountMember[] = "#count";

/// @throws ConfigError for an empty name, or one with a '}' outside a hash tag.
inline SemaphoreKeys semaphore_keys(const std::string& name) {
  const bool tagged = side_keys_tagged(name, "semaphore");
  return {side_key(name, tagged, ":sem:permits"), side_key(name, tagged, ":sem:waiters"),
          side_key(name, tagged, ":sem:wake")};
}

}  // namespace redkit::detail
