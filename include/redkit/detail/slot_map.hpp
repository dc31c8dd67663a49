// Parsing for Redis Cluster topology: CLUSTER SLOTS replies and the error
// replies that tell a client to go elsewhere or try again (MOVED, ASK,
// TRYAGAIN, CLUSTERDOWN, READONLY, LOADING). Thread safety: pure functions.
#pragma once

#include <charconv>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/reply.hpp"
#include "redkit/slot.hpp"

namespace redkit::detail {

/// What an error reply asks the client to do. Every kind but None proves the
/// command was not executed, so resending it is safe.
struct Redirect {
  enum class Kind {
    None,         ///< an ordinary error: give it to the caller
    Moved,        ///< the slot lives on `to` now: update the map, resend there
    Ask,          ///< this key is being migrated to `to`: resend there after ASKING
    TryAgain,     ///< multi-key command during a migration: wait, resend
    ClusterDown,  ///< slot not served right now (failover in progress): wait, resend
    ReadOnly,     ///< we wrote to a replica: the master moved; find it, resend
    Loading,      ///< node is loading its dataset: wait, resend
  };
  Kind kind = Kind::None;
  int slot = -1;
  Endpoint to;
};

inline bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.substr(0, prefix.size()) == prefix;
}

inline int parse_int(std::string_view s, int fallback) noexcept {
  int v = 0;
  auto res = std::from_chars(s.data(), s.data() + s.size(), v);
  return res.ec == std::errc() && res.ptr == s.data() + s.size() ? v : fallback;
}

/// "host:port" (host may be an IPv6 address, or empty meaning "the node that
/// answered", as Redis 7 writes it when it does not know its own address).
inline Endpoint parse_node_address(std::string_view address, std::string_view answered_by) {
  Endpoint ep;
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos)
    throw ProtocolError("redkit: bad node address '" + std::string(address) + "'");
  std::string_view host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  ep.host = host.empty() || host == "?" ? std::string(answered_by) : std::string(host);
  ep.port = parse_int(address.substr(colon + 1), -1);
  if (ep.port <= 0 || ep.port > 65535)
    throw ProtocolError("redkit: bad node address '" + std::string(address) + "'");
  return ep;
}

/// Classifies an error reply: "MOVED 3999 127.0.0.1:6381", "ASK 3999 ...",
/// "TRYAGAIN ...", "CLUSTERDOWN ...", "READONLY ...", "LOADING ...".
inline Redirect parse_redirect(std::string_view error, std::string_view answered_by) {
  Redirect r;
  const bool moved = starts_with(error, "MOVED ");
  if (moved || starts_with(error, "ASK ")) {
    r.kind = moved ? Redirect::Kind::Moved : Redirect::Kind::Ask;
    std::string_view rest = error.substr(error.find(' ') + 1);
    const auto space = rest.find(' ');
    if (space == std::string_view::npos)
      throw ProtocolError("redkit: bad redirect '" + std::string(error) + "'");
    r.slot = parse_int(rest.substr(0, space), -1);
    if (r.slot < 0 || r.slot >= kClusterSlots)
      throw ProtocolError("redkit: bad redirect '" + std::string(error) + "'");
    r.to = parse_node_address(rest.substr(space + 1), answered_by);
  } else if (starts_with(error, "TRYAGAIN")) {
    r.kind = Redirect::Kind::TryAgain;
  } else if (starts_with(error, "CLUSTERDOWN")) {
    r.kind = Redirect::Kind::ClusterDown;
  } else if (starts_with(error, "READONLY")) {
    r.kind = Redirect::Kind::ReadOnly;
  } else if (starts_with(error, "LOADING")) {
    r.kind = Redirect::Kind::Loading;
  }
  return r;
}

/// True for an error reply that sends the client elsewhere or asks it to
/// try again (the kinds parse_redirect() names): the command did not run.
/// A blocking command on a lease, which is not redirected, ends with one of
/// these when its slot moves; the caller then simply tries again.
inline bool is_redirect(std::string_view error) noexcept {
  for (std::string_view p : {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING"}) {
    if (starts_with(error, p)) return true;
  }
  return false;
}

/// One entry of CLUSTER SLOTS: slots [first, last] served by master.
struct SlotRange {
  int first = 0;
  int last = 0;
  Endpoint master;
  std::vector<Endpoint> replicas;
};

/// Parses a CLUSTER SLOTS reply:
///   [[first, last, [host, port, id, ...], [replica host, port, id, ...]...]...]
/// An empty or "?" host means the host we asked (answered_by).
/// @throws ProtocolError for a reply of another shape.
inline std::vector<SlotRange> parse_cluster_slots(const ReplyView& reply, std::string_view answered_by) {
  auto endpoint = [&](const ReplyView& node) {
    Endpoint ep;
    const std::string_view host = node[0].string();
    ep.host = host.empty() || host == "?" ? std::string(answered_by) : std::string(host);
    ep.port = static_cast<int>(node[1].integer());
    return ep;
  };
  std::vector<SlotRange> ranges;
  for (std::size_t i = 0; i < reply.size(); ++i) {
    const ReplyView entry = reply[i];
    if (entry.size() < 3) throw ProtocolError("redkit: CLUSTER SLOTS entry without a master");
    SlotRange range;
    range.first = static_cast<int>(entry[0].integer());
    range.last = static_cast<int>(entry[1].integer());
    if (range.first < 0 || range.last >= kClusterSlots || range.first > range.last) {
      throw ProtocolError("redkit: CLUSTER SLOTS range out of bounds");
    }
    range.master = endpoint(entry[2]);
    for (std::size_t r = 3; r < entry.size(); ++r) range.replicas.push_back(endpoint(entry[r]));
    ranges.push_back(std::move(range));
  }
  return ranges;
}

}  // namespace redkit::detail
