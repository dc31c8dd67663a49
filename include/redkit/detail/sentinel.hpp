// Sentinel mode: finding the current master by name, and checking that a
// freshly connected server really is a master. Thread safety: pure functions
// over their own short-lived connections.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "redkit/command.hpp"
#include "redkit/connection.hpp"
#include "redkit/detail/events.hpp"
#include "redkit/detail/pool.hpp"
#include "redkit/detail/slot_map.hpp"
#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/reply.hpp"

namespace redkit::detail {

/// Options for talking to one sentinel: its endpoint, sentinel_password,
/// the client's timeouts and TLS settings (sentinels of a TLS deployment
/// speak TLS too).
inline Options sentinel_options(const Options& o, const Endpoint& sentinel) {
  Options s;
  s.host = sentinel.host;
  s.port = sentinel.port;
  s.password = o.sentinel_password;
  s.connect_timeout = o.connect_timeout;
  s.command_timeout = o.command_timeout;
  s.keepalive = false;  // one command, then closed
  s.tls = o.tls;
  return s;
}

/// What sentinel mode remembers between connects: the sentinel that
/// answered last and the master it named. Thread-safe.
struct SentinelState {
  std::atomic<std::size_t> hint{0};
  std::mutex m;
  std::string master;  // "host:port" last named; guarded by m
}; 

/// Asks the sentinels for the address of master o.master_name
/// (SENTINEL get-master-addr-by-name), starting with sentinel number `first`
/// and going round the list; the first that knows it wins, and `first` is
/// set to it, so that the next call starts there (a dead sentinel early in
/// the list then costs one connect timeout, not one per connection).
/// @throws ConfigError if every sentinel answered and none knows the name;
/// IoError if none could answer.
inline Endpoint resolve_master(const Options& o, std::size_t& first) {
  std::string failures;
  bool any_unreachable = false;
  const std::size_t n = o.sentinels.size();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (first + k) % n;
    const Endpoint& sentinel = o.sentinels[i];
    const std::string where = sentinel.host + ":" + std::to_string(sentinel.port);
    try {
      Checkout c(std::make_unique<Connection>(sentinel_options(o, sentinel)));
      Reply r = c->command(Command{"SENTINEL", "get-master-addr-by-name"}.arg(o.master_name));
      if (r.is_nil()) {
        failures += " " + where + ": unknown master;";
        continue;
      }
      r.check();
      Endpoint master;
      master.host = std::string(r[0].string());
      master.port = parse_int(r[1].string(), -1);
      if (master.port <= 0 || master.port > 65535) {
        throw ProtocolError("redkit: sentinel gave a bad master port");
      }
      first = i;
      return master;
    } catch (const Error& e) {
      any_unreachable = true;
      failures += std::string(" ") + e.what() + ";";
    }
  }
  if (!any_unreachable) {
    throw ConfigError("redkit: no sentinel knows a master named '" + o.master_name + "':" + failures);
  }
  throw IoError("redkit: no sentinel could name the master '" + o.master_name + "':" + failures);
}

/// Checks with ROLE that c is connected to a master (sentinels name the old
/// master for a moment after a failover, and a demoted master comes back as
/// a replica). A server that refuses ROLE (ACL) is taken at the sentinels'
/// word. @throws IoError if it is not a master.
inline void expect_master(Connection& c, const std::string& master_name) {
  Reply r = c.command(Command{"ROLE"});
  if (!r.is_array() || r.size() == 0) return;
  const std::string_view role = r[0].string();
  if (role != "master") {
    c.mark_broken();
    throw IoError("redkit: " + c.endpoint() + ", named by the sentinels as master '" + master_name +
                  "', reports role '" + std::string(role) + "' (failover in progress?)");
  }
}

/// Connects to the master the sentinels name, checked with ROLE. A master
/// other than the one named last is reported as FailoverFollowed.
/// @throws as resolve_master and expect_master, and as Connection.
inline std::unique_ptr<Connection> connect_to_master(const Options& o, SentinelState& state,
                                                     const std::shared_ptr<EventSink>& events) {
  std::size_t first = state.hint.load();
  const Endpoint master = resolve_master(o, first);
  state.hint.store(first);
  Options m = o;
  m.host = master.host;
  m.port = master.port;
  m.sentinels.clear();
  auto c = std::make_unique<Connection>(m, events);
  expect_master(*c, o.master_name);
  const std::string named = endpoint_name(m);
  std::string before;
  {
    std::lock_guard<std::mutex> lk(state.m);
    before.swap(state.master);
    state.master = named;
  }
  if (!before.empty() && before != named && events) {
    events->emit(EventType::FailoverFollowed, named, before + " -> " + named);
  }
  return c;
}

/// True for a READONLY error reply: a write reached a replica, so it was
/// not executed, and the master has moved.
inline bool is_readonly(const ReplyView& r) noexcept {
  return r.is_error() && starts_with(r.error(), "READONLY");
}

}  // namespace redkit::detail
