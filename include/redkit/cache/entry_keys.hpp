/// @file cache/entry_keys.hpp
/// The key set of one cache entry: the value's key and its side keys, named
/// once per operation (side_base costs a CRC16 for some keys) and passed
/// down to every step that needs them. Part of <redkit/cache.hpp>; the
/// naming rules are in detail/cache_keys.hpp.
///
/// Thread safety: a plain value. Exceptions: std::bad_alloc only.
#pragma once

#include <string>
#include <string_view>

#include "redkit/detail/cache_keys.hpp"

namespace redkit::detail::cache {

/// Every Redis key of the entry at `prefix + key`.
struct EntryKeys {
  std::string value;    ///< prefix + key: the value itself
  std::string meta;     ///< load time, or the negative-cache marker
  std::string fill;     ///< the fill lock
  std::string waiters;  ///< how many processes wait for the fill
  std::string wake;     ///< the list those waiters BLPOP
  std::string stale;    ///< the copy served while refilling

  /// The key set of the value at full (= prefix + key).
  static EntryKeys of(std::string full) {
    EntryKeys k;
    const std::string base = side_base(full);
    k.meta = side_key(base, kMetaSuffix);
    k.fill = side_key(base, kFillSuffix);
    k.waiters = side_key(base, kWaitersSuffix);
    k.wake = side_key(base, kWakeSuffix);
    k.stale = side_key(base, kStaleSuffix);
    k.value = std::move(full);
    return k;
  }
};

/// prefix + key, in one allocation.
inline std::string full_key(std::string_view prefix, std::string_view key) {
  std::string full;
  full.reserve(prefix.size() + key.size());
  full.append(prefix).append(key);
  return full;
}

}  // namespace redkit::detail::cache
