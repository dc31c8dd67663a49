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
  std::string waiting;  ///< list: one element per process waiting in Redis (expires)
  std::string wake;     ///< list: wake-ups a release moves there from `waiting` (expires)
};

/// Side keys in the slot of name: `{name}:suffix`, or `name:suffix` when name
/// already has a hash tag. @throws ConfigError for an empty name, or one with
/// a '}' outside a hash tag (`{name}` would then hash a prefix of it).
inline LockKeys lock_keys(const std::string& name) {
  if (name.empty()) throw ConfigError("redkit: empty lock name");
  const bool tagged = has_hash_tag(name);
  if (!tagged && name.find('}') != std::string::npos) {
    throw ConfigError("redkit: lock name '" + name +
                      "' has a '}' outside a hash tag, so no side key can share its slot; "
                      "give it a hash tag such as {" + "tag}");
  }
  auto side = [&](std::string_view suffix) {
    std::string k;
    k.reserve(name.size() + suffix.size() + 2);
    if (!tagged) k += '{';
    k += name;
    if (!tagged) k += '}';
    k += suffix;
    return k;
  };
  return {name, side(":fence"), side(":waiting"), side(":wake")};
}

}  // namespace redkit::detail
