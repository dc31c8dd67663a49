// Which commands change the state of the connection they run on (for the
// next command, not just for themselves): the pool refuses them, so that a
// pooled connection is always in the state the options made, and a Lease
// that ran one is discarded rather than reused. Thread safety: pure
// functions.
#pragma once

#include <cctype>
#include <string_view>

#include "redkit/command.hpp"
#include "redkit/error.hpp"

namespace redkit::detail {

/// What a command does to its connection's state.
enum class StateEffect {
  None,         ///< nothing that outlives the command
  BeginMulti,   ///< MULTI: commands are queued until EXEC or DISCARD
  EndMulti,     ///< EXEC, DISCARD (also end WATCH)
  Watch,        ///< WATCH: until EXEC, DISCARD or UNWATCH
  Unwatch,      ///< UNWATCH
  Subscribe,    ///< SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: the connection now only receives
  Dirty,        ///< anything else that changes the session: SELECT, MONITOR, CLIENT REPLY, AUTH, ...
};

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) != static_cast<unsigned char>(b[i])) return false;
  }
  return true;
}

/// Classifies cmd. Cheap: one length check for most commands.
inline StateEffect state_effect(const Command& cmd) noexcept {
  const std::string_view name = cmd.name();
  if (name.size() < 4 || name.size() > 12) return StateEffect::None;
  switch (std::toupper(static_cast<unsigned char>(name[0]))) {
    case 'A':
      return iequals(name, "AUTH") || iequals(name, "ASKING") ? StateEffect::Dirty : StateEffect::None;
    case 'C':
      if (iequals(name, "CLIENT") && cmd.size() > 1) {
        const std::string_view sub = cmd[1];
        for (std::string_view s : {"REPLY", "TRACKING", "SETNAME", "SETINFO", "CACHING", "NO-EVICT", "NO-TOUCH"}) {
          if (iequals(sub, s)) return StateEffect::Dirty;
        }
      }
      return StateEffect::None;
    case 'D': return iequals(name, "DISCARD") ? StateEffect::EndMulti : StateEffect::None;
    case 'E': return iequals(name, "EXEC") ? StateEffect::EndMulti : StateEffect::None;
    case 'H': return iequals(name, "HELLO") ? StateEffect::Dirty : StateEffect::None;
    case 'M':
      if (iequals(name, "MULTI")) return StateEffect::BeginMulti;
      return iequals(name, "MONITOR") ? StateEffect::Dirty : StateEffect::None;
    case 'P':
      if (iequals(name, "PSUBSCRIBE")) return StateEffect::Subscribe;
      return iequals(name, "PUNSUBSCRIBE") || iequals(name, "PSYNC") ? StateEffect::Dirty : StateEffect::None;
    case 'Q': return iequals(name, "QUIT") ? StateEffect::Dirty : StateEffect::None;
    case 'R':
      for (std::string_view s : {"READONLY", "READWRITE", "RESET", "REPLCONF"}) {
        if (iequals(name, s)) return StateEffect::Dirty;
      }
      return StateEffect::None;
    case 'S':
      if (iequals(name, "SUBSCRIBE") || iequals(name, "SSUBSCRIBE")) return StateEffect::Subscribe;
      return iequals(name, "SELECT") || iequals(name, "SYNC") || iequals(name, "SUNSUBSCRIBE") ? StateEffect::Dirty
                                                                                                  : StateEffect::None;
    case 'U':
      if (iequals(name, "UNWATCH")) return StateEffect::Unwatch;
      return iequals(name, "UNSUBSCRIBE") ? StateEffect::Dirty : StateEffect::None;
    case 'W': return iequals(name, "WATCH") ? StateEffect::Watch : StateEffect::None;
    default: return StateEffect::None;
  }
}

/// The ConfigError for a state-changing command sent through a pool.
inline ConfigError refused_by_pool(const Command& cmd) {
  std::string name(cmd.name().substr(0, 20));
  if (cmd.size() > 1 && iequals(cmd.name(), "CLIENT")) name += " " + std::string(cmd[1].substr(0, 20));
  return ConfigError("redkit: '" + name +
                     "' changes the state of the connection it runs on, so it cannot go through the shared "
                     "pool (the next user of that connection would inherit it); borrow a dedicated connection "
                     "with lease() and run it there (MULTI ... EXEC also works inside one Redis::pipeline)");
}

/// Throws refused_by_pool unless cmd leaves its connection as it was.
inline void check_poolable(const Command& cmd) {
  if (state_effect(cmd) != StateEffect::None) throw refused_by_pool(cmd);
}

/// Throws refused_by_pool unless the commands, run in order on one
/// connection, leave it as it was: MULTI ... EXEC / DISCARD and WATCH ...
/// EXEC are allowed when they close within the batch.
inline void check_poolable_batch(const Command* cmds, std::size_t n, bool allow_transactions) {
  bool multi = false;
  bool watching = false;
  for (std::size_t i = 0; i < n; ++i) {
    const StateEffect e = state_effect(cmds[i]);
    if (e == StateEffect::None) continue;
    if (!allow_transactions) throw refused_by_pool(cmds[i]);
    switch (e) {
      case StateEffect::BeginMulti:
        if (multi) throw refused_by_pool(cmds[i]);
        multi = true;
        break;
      case StateEffect::EndMulti:
        if (!multi) throw refused_by_pool(cmds[i]);
        multi = watching = false;
        break;
      case StateEffect::Watch:
        if (multi) throw refused_by_pool(cmds[i]);
        watching = true;
        break;
      case StateEffect::Unwatch:
        watching = false;
        break;
      default: throw refused_by_pool(cmds[i]);
    }
  }
  if (multi || watching) {
    throw ConfigError(
        "redkit: a pipeline that opens MULTI or WATCH must close it (EXEC, DISCARD or UNWATCH) in the same "
        "pipeline; for a longer transaction use lease()");
  }
}

}  // namespace redkit::detail
