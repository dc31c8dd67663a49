/// @file redis.hpp
/// redkit::Redis, the shared client: a cheap, copyable handle to one pool of
/// connections to one Redis server.
///
/// Thread safety: every member is thread-safe; copies share the pool.
/// Exceptions: IoError (TimeoutError, ClosedError) when the server cannot be
/// reached or does not answer in time, ReplyError when it answers with an
/// error, ConfigError for bad options. After an I/O error the next call
/// connects afresh: a restarted server is picked up with no user action.
#pragma once

#include <chrono>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redkit/command.hpp"
#include "redkit/connection.hpp"
#include "redkit/detail/pool.hpp"
#include "redkit/detail/scheduler.hpp"
#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"

namespace redkit {

/// A dedicated connection borrowed from a client for blocking commands
/// (BLPOP, SUBSCRIBE). Returned to the client when destroyed. Move-only; not
/// thread-safe.
class Lease {
 public:
  Lease(detail::Pool& pool, std::unique_ptr<Connection> c) noexcept : pool_(&pool), c_(std::move(c)) {}
  Lease(Lease&&) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (!c_) return;
    if (timeout_changed_ && !c_->broken()) {
      try {
        c_->reset_timeout();
      } catch (...) {
        c_->mark_broken();
      }
    }
    pool_->release(std::move(c_));
  }

  /// Sends a command and reads its reply with the given read timeout (0 =
  /// none). An error reply is returned in place. @throws IoError.
  Reply command(const Command& cmd, std::chrono::milliseconds timeout) {
    c_->set_timeout(timeout);
    timeout_changed_ = true;
    return c_->command(cmd);
  }

  Connection& connection() noexcept { return *c_; }

 private:
  detail::Pool* pool_;
  std::unique_ptr<Connection> c_;
  bool timeout_changed_ = false;
};

class Redis {
 public:
  /// A client for the server described by options. Connects lazily, on
  /// first use. @throws ConfigError for options that cannot work.
  explicit Redis(Options options = {}) : s_(std::make_shared<Shared>(std::move(options))) {}
  /// Same, from a URI (see Options::from_uri). @throws ConfigError.
  explicit Redis(std::string_view uri) : Redis(Options::from_uri(uri)) {}

  /// Runs one command. The routing key, if any, is ignored on a single
  /// server. @throws ReplyError for an error reply, IoError on I/O failure.
  Reply command(const Command& cmd) {
    Reply r = detail::with_connection(s_->pool, [&](Connection& c) { return c.command(cmd); });
    r.check();
    return r;
  }
  Reply command(std::initializer_list<std::string_view> argv) { return command(Command(argv)); }

  /// Runs n commands in one round trip (one write, n replies in order).
  /// Error replies stay in place; check each with Reply::is_error().
  /// @throws IoError on I/O failure (no partial result).
  std::vector<Reply> pipeline(const std::vector<Command>& cmds) {
    if (cmds.empty()) return {};
    return detail::with_connection(s_->pool,
                                   [&](Connection& c) { return c.pipeline(cmds.data(), cmds.size()); });
  }

  /// Runs a script with EVALSHA, and with EVAL if the server answers
  /// NOSCRIPT. @throws ReplyError for a script error, IoError on I/O failure.
  template <class Keys = std::initializer_list<std::string_view>,
            class Args = std::initializer_list<std::string_view>>
  Reply eval(const Script& script, const Keys& keys, const Args& args) {
    Reply r = detail::with_connection(s_->pool, [&](Connection& c) {
      Reply first = c.command(script.command(keys, args, true));
      if (!first.is_error() || !is_noscript(first.error())) return first;
      return c.command(script.command(keys, args, false));
    });
    r.check();
    return r;
  }

  /// Borrows a dedicated connection (for blocking commands), separate from
  /// the command pool so that blocked waiters never starve other callers.
  /// @throws IoError if it cannot connect.
  Lease lease(std::string_view key = {}) {
    (void)key;
    return Lease(s_->dedicated, s_->dedicated.acquire());
  }

  const Options& options() const noexcept { return s_->options; }

  /// The client's one background thread for periodic work (lock renewal).
  detail::Scheduler& scheduler() noexcept { return s_->scheduler; }

 private:
  struct Shared {
    explicit Shared(Options o)
        : options(validated(std::move(o))),
          pool(options.pool_size, options.pool_wait_timeout, detail::endpoint_name(options),
               [this] { return std::make_unique<Connection>(options); }),
          dedicated(kMaxDedicated, options.pool_wait_timeout, detail::endpoint_name(options),
                    [this] { return std::make_unique<Connection>(options); }) {}
    Options options;
    detail::Pool pool;
    detail::Pool dedicated;
    detail::Scheduler scheduler;  // last: destroyed first, while the pools still exist
  };
  static constexpr std::size_t kMaxDedicated = 256;

  static Options validated(Options o) {
    if (!o.sentinels.empty()) {
      throw ConfigError("redkit: sentinel mode is not available in this version of redkit");
    }
    if (o.unix_socket.empty() && o.host.empty()) throw ConfigError("redkit: empty host");
    if (o.unix_socket.empty() && (o.port < 1 || o.port > 65535)) {
      throw ConfigError("redkit: port out of range: " + std::to_string(o.port));
    }
    if (o.pool_size == 0) throw ConfigError("redkit: pool_size must be at least 1");
    if (o.db < 0) throw ConfigError("redkit: negative db index");
    if (o.connect_timeout.count() < 0 || o.command_timeout.count() < 0 ||
        o.pool_wait_timeout.count() < 0) {
      throw ConfigError("redkit: negative timeout");
    }
    return o;
  }

  std::shared_ptr<Shared> s_;
};

}  // namespace redkit
