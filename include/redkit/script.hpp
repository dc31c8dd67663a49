/// @file script.hpp
/// A Lua script run with EVALSHA, falling back to EVAL on NOSCRIPT (after a
/// server restart, SCRIPT FLUSH or failover). Its SHA-1 is computed locally,
/// so the normal case is one round trip with no SCRIPT LOAD.
/// Thread safety: immutable after construction; share freely.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/reply.hpp"
#include "redkit/detail/sha1.hpp"

namespace redkit {

/// A Lua script and its SHA-1, for Redis::eval and Cluster::eval (EVALSHA,
/// then EVAL on NOSCRIPT). Building one sends nothing.
class Script {
 public:
  /// Keeps source and computes its SHA-1 locally. Never contacts the server.
  explicit Script(std::string source) : source_(std::move(source)), sha_(detail::sha1_hex(source_)) {}

  /// The Lua source.
  const std::string& source() const noexcept { return source_; }
  /// Lowercase hex SHA-1 of the source, as Redis computes it.
  const std::string& sha() const noexcept { return sha_; }

  /// Builds `EVALSHA sha numkeys keys... args...` (or `EVAL source ...` when
  /// by_sha is false), routed by the first key.
  template <class Keys, class Args>
  Command command(const Keys& keys, const Args& args, bool by_sha = true) const {
    Command cmd;
    std::size_t bytes = 16 + (by_sha ? sha_.size() : source_.size());
    for (const auto& k : keys) bytes += std::string_view(k).size();
    for (const auto& a : args) bytes += std::string_view(a).size();
    cmd.reserve(3 + std::size(keys) + std::size(args), bytes);
    cmd.arg(by_sha ? std::string_view("EVALSHA") : std::string_view("EVAL"));
    cmd.arg(by_sha ? sha_ : source_);
    cmd.arg(static_cast<long long>(std::size(keys)));
    for (const auto& k : keys) cmd.key(std::string_view(k));
    for (const auto& a : args) cmd.arg(a);
    return cmd;
  }

 private:
  std::string source_;
  std::string sha_;
};

/// True if a reply error says the script cache does not have the script.
inline bool is_noscript(std::string_view error) noexcept {
  return error.substr(0, 8) == "NOSCRIPT";
}

/// Runs script through send (a callable taking a Command and returning its
/// Reply): EVALSHA first, EVAL when the answer is NOSCRIPT. Error replies are
/// returned, not thrown. Every client's eval() and a lease's script calls go
/// through here.
template <class Keys, class Args, class Send>
Reply run_script(const Script& script, const Keys& keys, const Args& args, Send&& send) {
  Reply r = send(script.command(keys, args, true));
  if (r.is_error() && is_noscript(r.error())) r = send(script.command(keys, args, false));
  return r;
}

}  // namespace redkit
