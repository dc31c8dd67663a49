/// @file redis.hpp
/// redkit::Redis, the shared client: a cheap, copyable handle to one pool of
/// connections to one Redis server.
///
/// Thread safety: every member is thread-safe; copies share the pool.
/// Exceptions: IoError (TimeoutError, ClosedError) when the server cannot be
/// reached or does not answer in time, ReplyError when it answers with an
/// error, ConfigError for bad options. After an I/O error the next call
/// connects afresh: a restarted server is picked up with no user action.
///
/// Sentinel mode (Options::sentinels non-empty, e.g. from
/// `redis-sentinel://h1:26379,h2:26379/0#mymaster`): every new connection
/// asks the sentinels (from the one that answered last) for the master's address
/// (SENTINEL get-master-addr-by-name) and checks it with ROLE. A failed
/// connect proves nothing was sent, so it is retried (waits of 5 ms doubling
/// to 100 ms, for at most Options::command_timeout) while a failover may be
/// under way. A READONLY reply (the master was demoted) drops the pooled
/// connections and the command is run once more on the new master. An I/O
/// error after sending reaches the caller (never a silent resend); the next
/// call connects to whatever master the sentinels name then.
#pragma once

#include <atomic>
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
#include "redkit/detail/retry.hpp"
#include "redkit/detail/scheduler.hpp"
#include "redkit/detail/sentinel.hpp"
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
    auto run = [&](Connection& c) { return c.command(cmd); };
    Reply r = with_master(run);
    if (master_moved(r)) r = with_master(run);
    r.check();
    return r;
  }
  Reply command(std::initializer_list<std::string_view> argv) { return command(Command(argv)); }

  /// Runs n commands in one round trip (one write, n replies in order).
  /// Error replies stay in place; check each with Reply::is_error().
  /// @throws IoError on I/O failure (no partial result).
  std::vector<Reply> pipeline(const std::vector<Command>& cmds) {
    if (cmds.empty()) return {};
    auto replies = with_master([&](Connection& c) { return c.pipeline(cmds.data(), cmds.size()); });
    if (sentinel_mode()) rerun_readonly(cmds, replies);
    return replies;
  }

  /// Runs a script with EVALSHA, and with EVAL if the server answers
  /// NOSCRIPT. @throws ReplyError for a script error, IoError on I/O failure.
  template <class Keys = std::initializer_list<std::string_view>,
            class Args = std::initializer_list<std::string_view>>
  Reply eval(const Script& script, const Keys& keys, const Args& args) {
    auto run = [&](Connection& c) {
      return run_script(script, keys, args, [&](const Command& cmd) { return c.command(cmd); });
    };
    Reply r = with_master(run);
    if (master_moved(r)) r = with_master(run);
    r.check();
    return r;
  }

  /// Borrows a dedicated connection (for blocking commands), separate from
  /// the command pool so that blocked waiters never starve other callers.
  /// @throws IoError if it cannot connect.
  Lease lease(std::string_view key = {}) {
    (void)key;
    return Lease(s_->dedicated, acquire(s_->dedicated));
  }

  /// The masters to visit for work that must cover every master (SCAN):
  /// on a single server or in sentinel mode, this client itself. (Cluster
  /// has the same member, returning one handle per master.)
  std::vector<Redis> masters() { return {*this}; }

  const Options& options() const noexcept { return s_->options; }

  /// False: every key is on one server, so a multi-key command may name any
  /// keys. (Cluster: true, split multi-key work by slot; see slot.hpp.)
  static constexpr bool shards_keys = false;

  /// The client's one background thread for periodic work (lock renewal).
  detail::Scheduler& scheduler() noexcept { return s_->scheduler; }

 private:
  struct Shared {
    explicit Shared(Options o)
        : options(validated(std::move(o))),
          pool(options.pool_size, options.pool_wait_timeout, name(options), [this] { return connect(); }),
          dedicated(kMaxDedicated, options.pool_wait_timeout, name(options), [this] { return connect(); }) {}
    Options options;
    std::atomic<std::size_t> sentinel_hint{0};  // sentinel mode: the sentinel that answered last
    detail::Pool pool;
    detail::Pool dedicated;
    detail::Scheduler scheduler;  // last: destroyed first, while the pools still exist

    static std::string name(const Options& o) {
      return o.sentinels.empty() ? detail::endpoint_name(o) : "sentinel master '" + o.master_name + "'";
    }
    std::unique_ptr<Connection> connect() {
      if (options.sentinels.empty()) return std::make_unique<Connection>(options);
      return detail::connect_to_master(options, sentinel_hint);
    }
  };
  static constexpr std::size_t kMaxDedicated = 256;

  static Options validated(Options o) {
    if (!o.sentinels.empty() && o.master_name.empty()) {
      throw ConfigError("redkit: sentinel mode needs the master name (Options::master_name)");
    }
    for (const Endpoint& s : o.sentinels) {
      if (s.host.empty() || s.port < 1 || s.port > 65535) {
        throw ConfigError("redkit: bad sentinel endpoint '" + s.host + ":" + std::to_string(s.port) + "'");
      }
    }
    const bool tcp = o.unix_socket.empty() && o.sentinels.empty();
    if (tcp && o.host.empty()) throw ConfigError("redkit: empty host");
    if (tcp && (o.port < 1 || o.port > 65535)) {
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

  bool sentinel_mode() const noexcept { return !s_->options.sentinels.empty(); }

  // A connection from pool. In sentinel mode a failed connect proves nothing
  // was sent, so it is retried while a failover may be under way.
  std::unique_ptr<Connection> acquire(detail::Pool& pool) {
    if (!sentinel_mode()) return pool.acquire();
    detail::Backoff backoff(s_->options.command_timeout);
    for (;;) {
      try {
        return pool.acquire();
      } catch (const IoError&) {
        if (!backoff.can_retry()) throw;
        backoff.wait();
      }
    }
  }

  template <class F>
  auto with_master(F&& f) -> decltype(f(std::declval<Connection&>())) {
    return detail::run_on(s_->pool, acquire(s_->pool), f);
  }

  // Sentinel mode: a READONLY reply means our connections lead to a demoted
  // master. Drops them all; true if the command should run once more.
  bool master_moved(const ReplyView& r) {
    if (!sentinel_mode() || !detail::is_readonly(r)) return false;
    s_->pool.invalidate();
    s_->dedicated.invalidate();
    return true;
  }

  // Runs the commands of a pipeline that got READONLY once more, on the new
  // master, and puts their replies in place.
  void rerun_readonly(const std::vector<Command>& cmds, std::vector<Reply>& replies) {
    std::vector<std::size_t> redo;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (detail::is_readonly(replies[i])) redo.push_back(i);
    }
    if (redo.empty() || !master_moved(replies[redo.front()])) return;
    std::vector<Command> again;
    for (std::size_t i : redo) again.push_back(cmds[i]);
    auto fresh = with_master([&](Connection& c) { return c.pipeline(again.data(), again.size()); });
    for (std::size_t k = 0; k < redo.size(); ++k) replies[redo[k]] = std::move(fresh[k]);
  }

  std::shared_ptr<Shared> s_;
};

}  // namespace redkit
