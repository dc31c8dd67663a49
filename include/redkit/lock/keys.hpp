/// @file lock/keys.hpp
/// The Redis keys of a lock name. Thread safety: plain values.
#pragma once

#include <string>
#include <string_view>

#include "redkit/error.hpp"
#include "redkit/slot.hpp"

namespace redkit::detail {

/// The keys of a lock name: the lock itself at exactly the name, and side
/// keys in its hash slot.
struct LockKeys {
  std::string key;      ///< the lock: holds the holder's token, with PX
  std::string fence;    ///< the fencing counter (expires kFenceTtl after its last use)
  std::string waiting;  ///< integer: how many processes wait in Redis (expires; see kRegisterWaiterLua)
  std::string wake;     ///< list: one wake-up per release that found `waiting` >= 1 (expires)
};

/// True if name has a hash tag (its side keys are then `name:suffix`),
/// false if they must be `{name}:suffix`. kind ("lock", "semaphore") names
/// the object in errors. @throws ConfigError for an empty name, or one with
/// a '}' outside a hash tag (`{name}` would then hash a prefix of it).
inline bool side_keys_tagged(const std::string& name, const char* kind) {
  if (name.empty()) throw ConfigError(std::string("redkit: empty ") + kind + " name");
  const bool tagged = has_hash_tag(name);
  if (!tagged && name.find('}') != std::string::npos) {
    throw ConfigError(std::string("redkit: ") + kind + " name '" + name +
                      "' has a '}' outside a hash tag, so no side key can share its slot; "
                      "give it a hash tag such as {" + "tag}");
  }
  return tagged;
}

/// The side key `{name}suffix` (or `namesuffix` when tagged), in name's slot.
inline std::string side_key(const std::string& name, bool tagged, std::string_view suffix) {
  std::string k;
  k.reserve(name.size() + suffix.size() + 2);
  if (!tagged) k += '{';
  k += name;
  if (!tagged) k += '}';
  k += suffix;
  return k;
}

/// Side keys in the slot of name: `{name}:suffix`, or `name:suffix` when name
/// already has a hash tag. @throws ConfigError for an empty name, or one with
/// a '}' outside a hash tag (`{name}` would then hash a prefix of it).
inline LockKeys lock_keys(const std::string& name) {
  const bool tagged = side_keys_tagged(name, "lock");
  return {name, side_key(name, tagged, ":fence"), side_key(name, tagged, ":waiters"),
          side_key(name, tagged, ":wake")};
}

}  // namespace redkit::detail
