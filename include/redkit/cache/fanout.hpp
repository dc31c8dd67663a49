/// @file cache/fanout.hpp
/// The cache's work that spans many keys: a multi-key read (one MGET on a
/// single server; on a Cluster one MGET per hash slot, in one pipeline) and
/// clear() (SCAN + UNLINK on every master). Part of <redkit/cache.hpp>.
///
/// Thread safety: thread-safe as the client is.
/// Exceptions: IoError, ReplyError; ProtocolError for a reply of the wrong
/// shape.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redkit/cache/entry_keys.hpp"
#include "redkit/command.hpp"
#include "redkit/detail/cache_keys.hpp"
#include "redkit/error.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"
#include "redkit/slot.hpp"

namespace redkit::detail::cache {

/// Reads `prefix + k` for every k in keys and calls on_value(i, bytes or
/// nullopt) for each, in order. On one server (Redis, also in sentinel
/// mode): one MGET of all keys, one round trip. On a Cluster: one MGET per
/// hash slot, all in one pipeline (one round per node).
template <class Client, class F>
void fetch_many(Client& client, const std::string& prefix, const std::vector<std::string_view>& keys,
                F&& on_value) {
  if (keys.empty()) return;
  if constexpr (Client::shards_keys) {
    std::vector<std::string> full;
    full.reserve(keys.size());
    for (std::string_view k : keys) full.push_back(full_key(prefix, k));
    const auto groups = group_by_slot(full);
    std::vector<Command> mgets;
    for (const auto& group : groups) {
      Command mget{"MGET"};
      for (std::size_t i : group) mget.key(full[i]);
      mgets.push_back(std::move(mget));
    }
    const std::vector<Reply> replies = client.pipeline(mgets);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      replies[g].check();
      for (std::size_t j = 0; j < groups[g].size(); ++j) on_value(groups[g][j], replies[g][j].optional_string());
    }
  } else {
    Command mget{"MGET"};
    std::size_t bytes = 0;
    for (std::string_view k : keys) bytes += prefix.size() + k.size();
    mget.reserve(keys.size(), bytes);
    for (std::string_view k : keys) mget.key(prefix, k);  // each key copied once, into the command
    Reply r = client.command(mget);
    if (r.size() != keys.size()) throw ProtocolError("redkit: MGET returned the wrong number of values");
    for (std::size_t i = 0; i < keys.size(); ++i) on_value(i, r[i].optional_string());
  }
}

/// As fetch_many, with each key's PTTL read in the same round trip (for
/// the near cache): on_value(i, bytes or nullopt, pttl_ms). On one server:
/// one MGET and the PTTLs in one pipeline; on a Cluster: that per hash slot,
/// all in one pipeline.
template <class Client, class F>
void fetch_many_with_ttl(Client& client, const std::string& prefix, const std::vector<std::string_view>& keys,
                         F&& on_value) {
  if (keys.empty()) return;
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (std::string_view k : keys) full.push_back(full_key(prefix, k));
  std::vector<std::vector<std::size_t>> groups;
  if constexpr (Client::shards_keys) {
    groups = group_by_slot(full);
  } else {
    groups.emplace_back(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) groups[0][i] = i;
  }
  std::vector<Command> cmds;
  cmds.reserve(keys.size() + groups.size());
  for (const auto& group : groups) {
    Command mget{"MGET"};
    for (std::size_t i : group) mget.key(full[i]);
    cmds.push_back(std::move(mget));
    for (std::size_t i : group) cmds.push_back(Command{"PTTL"}.key(full[i]));
  }
  const std::vector<Reply> replies = client.pipeline(cmds);
  std::size_t at = 0;
  for (const auto& group : groups) {
    const Reply& values = replies[at];
    values.check();
    if (values.size() != group.size()) throw ProtocolError("redkit: MGET returned the wrong number of values");
    for (std::size_t j = 0; j < group.size(); ++j) {
      const Reply& pttl = replies[at + 1 + j];
      pttl.check();
      on_value(group[j], values[j].optional_string(), pttl.integer());
    }
    at += 1 + group.size();
  }
}

/// SCANs every master for pattern and UNLINKs the keys keep() accepts, one
/// pipeline of single-key UNLINKs per batch. Returns how many were removed.
template <class Client, class Keep>
std::size_t scan_and_unlink(Client& client, const std::string& pattern, Keep&& keep) {
  std::size_t removed = 0;
  for (Redis& node : client.masters()) {
    std::string cursor = "0";
    do {
      Reply r = node.command(Command{"SCAN"}.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000));
      cursor = std::string(r[0].string());
      std::vector<Command> unlinks;
      const ReplyView batch = r[1];
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const std::string_view key = batch[i].string();
        if (keep(key)) unlinks.push_back(Command{"UNLINK"}.key(key));
      }
      for (const Reply& u : node.pipeline(unlinks)) removed += static_cast<std::size_t>(u.integer());
    } while (cursor != "0");
  }
  return removed;
}

/// Removes every key that starts with prefix, and the side keys of those
/// values (see detail/cache_keys.hpp), on every master.
template <class Client>
std::size_t clear_prefix(Client& client, const std::string& prefix) {
  std::size_t removed = scan_and_unlink(client, glob_escape(prefix) + "*", [](std::string_view) { return true; });
  removed += scan_and_unlink(client, side_key_pattern(prefix), [&prefix](std::string_view k) {
    return is_side_key(k, prefix);
  });
  return removed;
}

}  // namespace redkit::detail::cache
