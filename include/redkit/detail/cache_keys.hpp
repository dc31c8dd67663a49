// Key names for RedisCache: the side keys that go with a cached value, the
// SCAN pattern for a prefix, and the check that a key is one of our side
// keys. Thread safety: pure functions (the slot tag table is built once,
// thread-safely, on first use).
//
// A value lives at exactly `prefix + key` (call it K). Its side keys must
// share K's hash slot, so that one script may touch them together on Redis
// Cluster. They are `base + suffix`, suffix one of ":rk-meta", ":rk-fill",
// ":rk-waiters", ":rk-wake", ":rk-stale", with base:
//   - K itself when K has a hash tag (K's tag then routes both);
//   - "{K}" when K has no '}' (the tag is all of K, so the slot is K's);
//   - otherwise (K has a '}' outside any tag, or is empty) "{T}K", where T
//     is a short decimal tag chosen from a table so that CRC16(T) lands in
//     K's slot.
// Only in the first case does a side key start with the prefix; so a cached
// key with a hash tag must not itself end in one of the suffixes.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "redkit/detail/crc16.hpp"
#include "redkit/slot.hpp"

namespace redkit::detail::cache {

// The side keys of one cached value.
inline constexpr std::string_view kMetaSuffix = ":rk-meta";        // load time, or the negative marker
inline constexpr std::string_view kFillSuffix = ":rk-fill";        // the fill lock
inline constexpr std::string_view kWaitersSuffix = ":rk-waiters";  // how many are waiting for the fill
inline constexpr std::string_view kWakeSuffix = ":rk-wake";        // the list those waiters BLPOP
inline constexpr std::string_view kStaleSuffix = ":rk-stale";      // the copy served while refilling
inline constexpr std::array<std::string_view, 5> kSideSuffixes{kMetaSuffix, kFillSuffix, kWaitersSuffix,
                                                               kWakeSuffix, kStaleSuffix};

/// The slot of a key that has no hash tag: CRC16 of all of it.
inline int untagged_slot(std::string_view key) noexcept { return crc16(key) & (kClusterSlots - 1); }

/// A short decimal string whose CRC16 falls in slot: the smallest such
/// number. The table is built once (about 110,000 CRCs of up to 6 bytes).
inline const std::string& slot_tag(int slot) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(kClusterSlots);
    int filled = 0;
    for (unsigned long n = 0; filled < kClusterSlots; ++n) {
      std::string text = std::to_string(n);
      std::string& entry = t[static_cast<std::size_t>(untagged_slot(text))];
      if (entry.empty()) {
        entry = std::move(text);
        ++filled;
      }
    }
    return t;
  }();
  return table[static_cast<std::size_t>(slot)];
}

/// The part every side key of the value at full_key starts with (see the
/// file comment).
inline std::string side_base(std::string_view full_key) {
  std::string base;
  if (has_hash_tag(full_key)) {
    base.assign(full_key);
  } else if (!full_key.empty() && full_key.find('}') == std::string_view::npos) {
    base.reserve(full_key.size() + 2);
    base.append("{").append(full_key).append("}");
  } else {
    const std::string& tag = slot_tag(untagged_slot(full_key));
    base.reserve(tag.size() + full_key.size() + 2);
    base.append("{").append(tag).append("}").append(full_key);
  }
  return base;
}

inline std::string side_key(std::string_view base, std::string_view suffix) {
  std::string key;
  key.reserve(base.size() + suffix.size());
  key.append(base).append(suffix);
  return key;
}

/// s with the glob characters of Redis's MATCH (* ? [ ] \) escaped, so the
/// pattern matches s literally.
inline std::string glob_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

/// True if key is a side key (as side_base + a suffix builds it) of some
/// value key that starts with prefix. Side keys of keys with a hash tag
/// start with the prefix themselves and are not recognised here.
inline bool is_untagged_side_key(std::string_view key, std::string_view prefix) {
  for (std::string_view suffix : kSideSuffixes) {
    if (key.size() < suffix.size() + 2 || key.substr(key.size() - suffix.size()) != suffix) continue;
    const std::string_view base = key.substr(0, key.size() - suffix.size());
    if (base.front() != '{') continue;
    // "{K}"
    if (base.back() == '}') {
      const std::string_view full = base.substr(1, base.size() - 2);
      if (full.substr(0, prefix.size()) == prefix && side_base(full) == base) return true;
    }
    // "{T}K"
    const auto close = base.find('}');
    if (close != std::string_view::npos) {
      const std::string_view full = base.substr(close + 1);
      if (full.substr(0, prefix.size()) == prefix && side_base(full) == base) return true;
    }
  }
  return false;
}

}  // namespace redkit::detail::cache
