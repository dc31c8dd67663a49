/// @file cache/entry_keys.hpp
/// The key set of one cache entry: the value's key and its side keys, named
/// once per operation (side_base costs a CRC16 for every key) and passed
/// down to every step that needs them. The value and meta keys (what a hit
/// reads) are made at once; the other side keys when a step asks for them.
/// Part of <redkit/cache.hpp>; the naming rules are in
/// detail/cache_keys.hpp.
///
/// Thread safety: a plain value. Exceptions: std::bad_alloc only.
#pragma once

#include <string>
#include <string_view>

#include "redkit/detail/cache_keys.hpp"

namespace redkit::detail::cache {

/// Every Redis key of the entry at `prefix + key`.
struct EntryKeys {
  std::string value;  ///< prefix + key: the value itself
  std::string meta;   ///< load time, or the negative-cache marker

  /// The fill lock.
  std::string fill() const { return side(kFillSuffix); }
  /// How many processes wait for the fill.
  std::string waiters() const { return side(kWaitersSuffix); }
  /// The list those waiters BLPOP.
  std::string wake() const { return side(kWakeSuffix); }
  /// The copy served while refilling.
  std::string stale() const { return side(kStaleSuffix); }

  /// The key set of the value at full (= prefix + key).
  static EntryKeys of(std::string full) {
    EntryKeys k;
    k.meta = side_key(side_base(full), kMetaSuffix);
    k.value = std::move(full);
    return k;
  }

 private:
  // The side key with suffix: meta's base (side_base of value) + suffix.
  std::string side(std::string_view suffix) const {
    return side_key(std::string_view(meta).substr(0, meta.size() - kMetaSuffix.size()), suffix);
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
