/// @file slot.hpp
/// Hash slots as Redis Cluster computes them, for multi-key work that must
/// stay in one slot. Thread safety: pure functions. Exceptions: none.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "redkit/detail/crc16.hpp"

namespace redkit {

namespace detail {
inline constexpr int kClusterSlots = 16384;
}  // namespace detail

/// True if Redis Cluster hashes only part of key: a '{' followed later by a
/// '}' with at least one byte between them (the hash tag).
inline bool has_hash_tag(std::string_view key) noexcept {
  const auto open = key.find('{');
  if (open == std::string_view::npos) return false;
  const auto close = key.find('}', open + 1);
  return close != std::string_view::npos && close > open + 1;
}

/// The hash slot (0..16383) of a key, as Redis Cluster computes it: CRC16 of
/// the hash tag (the text between the first '{' and the first '}' after it,
/// when that text is not empty), else of the whole key, modulo 16384.
/// Keys with the same hash tag ("{user1000}.following",
/// "{user1000}.followers") share a slot, so multi-key commands and scripts
/// may use them together.
inline int hash_slot(std::string_view key) noexcept {
  if (has_hash_tag(key)) {
    const auto open = key.find('{');
    key = key.substr(open + 1, key.find('}', open + 1) - open - 1);
  }
  return detail::crc16(key) & (detail::kClusterSlots - 1);
}

/// The positions of keys grouped by hash slot, groups in order of first
/// appearance, positions ascending in each. For a multi-key read split by
/// slot: one `MGET` per group, all in one pipeline() (one round per node on
/// a Cluster, one round trip on a Redis).
template <class Keys>
std::vector<std::vector<std::size_t>> group_by_slot(const Keys& keys) {
  std::vector<std::vector<std::size_t>> groups;
  std::vector<int> group_of_slot(detail::kClusterSlots, -1);
  std::size_t i = 0;
  for (const auto& key : keys) {
    const int slot = hash_slot(std::string_view(key));
    if (group_of_slot[slot] < 0) {
      group_of_slot[slot] = static_cast<int>(groups.size());
      groups.emplace_back();
    }
    groups[static_cast<std::size_t>(group_of_slot[slot])].push_back(i++);
  }
  return groups;
}

}  // namespace redkit
