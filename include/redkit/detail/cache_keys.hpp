// Key names for RedisCache: the side keys that go with a cached value, the
// SCAN pattern for a prefix, and the check that a key is one of our side
// keys. Thread safety: pure functions (the slot tag table is built once,
// thread-safely, on first use).
//
// A value lives at exactly `prefix + key` (call it K). Its side keys must
// share K's hash slot, so that one script may touch them together on Redis
// Cluster. They are
//     "{" + T + "}" + K + suffix
// with suffix one of ":rk-meta", ":rk-fill", ":rk-waiters", ":rk-wake",
// ":rk-stale", and T six decimal digits chosen from a table so that
// CRC16(T) lands in K's slot (for a K with a hash tag, the tag's slot).
// The naming is injective: T has a fixed width and holds no brace, so a
// side key gives back T, then K (everything up to the suffix), then the
// suffix (no suffix ends another). Two caches (different prefixes, keys)
// therefore share a side key only when they share the value key itself.
// (Earlier versions used K itself as the base for a K with a hash tag,
// "{K}" for a K without '}', and "{T}K" otherwise: "p:x" and "{p:x}"
// collided, and so did "" and "3560".) A side key never starts with the prefix; a user fenced by
// ACL key patterns needs both `~prefix*` and `~{??????}prefix*` (prefix
// glob-escaped). Keys of the shape "{" 6 digits "}" ... suffix are redkit's.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
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

/// Width of the slot tag in every side key.
inline constexpr std::size_t kSlotTagWidth = 6;

/// Six decimal digits whose CRC16 falls in slot: the smallest such number,
/// zero-padded. The table is built once (about 160,000 CRCs of 6 bytes; a
/// million candidates cover every slot many times over).
inline const std::string& slot_tag(int slot) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(kClusterSlots);
    int filled = 0;
    char text[kSlotTagWidth + 1];
    for (unsigned long n = 0; filled < kClusterSlots && n < 1000000; ++n) {
      unsigned long v = n;
      for (std::size_t i = kSlotTagWidth; i-- > 0; v /= 10) text[i] = static_cast<char>('0' + v % 10);
      const std::string_view tag(text, kSlotTagWidth);
      std::string& entry = t[static_cast<std::size_t>(untagged_slot(tag))];
      if (entry.empty()) {
        entry.assign(tag);
        ++filled;
      }
    }
    return t;
  }();
  return table[static_cast<std::size_t>(slot)];
}

/// The part every side key of the value at full_key starts with:
/// "{T}" + full_key (see the file comment).
inline std::string side_base(std::string_view full_key) {
  const std::string& tag = slot_tag(hash_slot(full_key));
  std::string base;
  base.reserve(tag.size() + full_key.size() + 2);
  base.append("{").append(tag).append("}").append(full_key);
  return base;
}

inline std::string side_key(std::string_view base, std::string_view suffix) {
  std::string key;
  key.reserve(base.size() + suffix.size());
  key.append(base).append(suffix);
  return key;
}

/// The value key whose side key this is, if key is a side key (as
/// side_base + a suffix builds it); nullopt otherwise.
inline std::optional<std::string_view> value_key_of_side_key(std::string_view key) {
  constexpr std::size_t head = kSlotTagWidth + 2;
  if (key.size() < head || key[0] != '{' || key[head - 1] != '}') return std::nullopt;
  for (std::size_t i = 1; i + 1 < head; ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
  }
  for (std::string_view suffix : kSideSuffixes) {
    if (key.size() < head + suffix.size() || key.substr(key.size() - suffix.size()) != suffix) continue;
    const std::string_view full = key.substr(head, key.size() - head - suffix.size());
    if (key.substr(1, kSlotTagWidth) != slot_tag(hash_slot(full))) return std::nullopt;
    return full;
  }
  return std::nullopt;
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

/// True if key is a side key of some value key that starts with prefix.
inline bool is_side_key(std::string_view key, std::string_view prefix) {
  const auto full = value_key_of_side_key(key);
  return full && full->substr(0, prefix.size()) == prefix;
}

/// The SCAN MATCH (and ACL key) pattern that covers the side keys of the
/// values under prefix: "{??????}" + prefix (glob-escaped) + "*".
inline std::string side_key_pattern(std::string_view prefix) {
  return "{" + std::string(kSlotTagWidth, '?') + "}" + glob_escape(prefix) + "*";
}

}  // namespace redkit::detail::cache
