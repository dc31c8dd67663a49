/// @file redis.hpp
/// redkit::Redis, the shared client: a cheap, copyable handle to one pool of
/// connections to one Redis server (or, in sentinel mode, to the master a
/// group of sentinels names).
///
/// Thread safety: every member is thread-safe; copies share the pool.
/// Exceptions: IoError (TimeoutError, ClosedError) when the server cannot be
/// reached or does not answer in time, ReplyError when it answers with an
/// error, ProtocolError for bytes that are not RESP, ConfigError for bad
/// options and for commands the shared pool refuses (see command()). After
/// an I/O error the next call connects afresh: a restarted server is picked
/// up with no user action. A moved-from Redis throws Error when used.
///
/// fork(): after fork() the child's first use of an inherited Redis (or of
/// any lock, cache or counter built on it) opens its own connections and
/// starts its own scheduler thread; it never reads or writes the parent's
/// sockets (it closes its copies of them at the fork), and the parent is
/// unaffected by anything the child does. The check costs one atomic load
/// per call, no syscall.
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
#include "redkit/detail/command_state.hpp"
#include "redkit/detail/events.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/pool.hpp"
#include "redkit/detail/process_local.hpp"
#include "redkit/detail/retry.hpp"
#include "redkit/detail/scheduler.hpp"
#include "redkit/detail/sentinel.hpp"
#include "redkit/detail/socket.hpp"
#include "redkit/detail/transport.hpp"
#include "redkit/error.hpp"
#include "redkit/event.hpp"
#include "redkit/lease.hpp"
#include "redkit/options.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"

namespace redkit {

namespace detail {

/// The range checks every client applies to the Options it is built from.
/// @throws ConfigError naming the field.
inline void check_common_options(const Options& o) {
  using std::chrono::milliseconds;
  const milliseconds day = std::chrono::hours(24);
  auto duration = [&](milliseconds v, const char* name) {
    if (v.count() < 0) throw ConfigError(std::string("redkit: Options::") + name + " is negative");
    if (v > day) throw ConfigError(std::string("redkit: Options::") + name + " is longer than a day");
  };
  duration(o.connect_timeout, "connect_timeout");
  duration(o.command_timeout, "command_timeout");
  duration(o.pool_wait_timeout, "pool_wait_timeout");
  if (o.pool_size == 0 || o.pool_size > 4096) throw ConfigError("redkit: Options::pool_size must be in 1..4096");
  if (o.dedicated_pool_size == 0 || o.dedicated_pool_size > 65536) {
    throw ConfigError("redkit: Options::dedicated_pool_size must be in 1..65536");
  }
  if (o.db < 0) throw ConfigError("redkit: negative db index");
  if (o.unix_socket.size() > kMaxUnixPath) {
    throw ConfigError("redkit: Options::unix_socket is " + std::to_string(o.unix_socket.size()) +
                      " bytes; the kernel takes at most " + std::to_string(kMaxUnixPath));
  }
  if (o.tls.enabled && tls_factory().load() == nullptr) throw tls_not_built();
  if (!o.tls.cert_file.empty() && o.tls.key_file.empty()) {
    throw ConfigError("redkit: TlsOptions::cert_file is set without key_file");
  }
  // The files are read now (with <redkit/tls.hpp>), so a client with an
  // unreadable certificate, key or CA file is refused when it is built.
  if (o.tls.enabled) {
    if (TlsCheck check = tls_check().load()) check(o.tls);
  }
}

}  // namespace detail

/// The client for one Redis server, or for the master of a sentinel group
/// (see the file comment). Thread-safe; copies are cheap handles to one
/// shared pool.
///
///     redkit::Redis redis("redis://127.0.0.1:6379/0");
///     redis.command({"SET", "greeting", "hello"});
class Redis {
 public:
  /// A client for the server described by options. Connects lazily, on
  /// first use. @throws ConfigError for options that cannot work.
  explicit Redis(Options options = {}) : s_(std::make_shared<Shared>(validated(std::move(options)))) {}
  /// Same, from a URI (see Options::from_uri). @throws ConfigError.
  explicit Redis(std::string_view uri) : Redis(Options::from_uri(uri)) {}

  /// Runs one command on a pooled connection. The routing key, if any, is
  /// ignored on a single server. A command that would change the state of
  /// its connection for the next user (SELECT, MULTI, EXEC, WATCH,
  /// SUBSCRIBE, MONITOR, CLIENT REPLY, AUTH, RESET, READONLY, ...) is
  /// refused with a ConfigError that points to lease().
  /// @throws ReplyError for an error reply, IoError on I/O failure,
  /// ConfigError as said.
  Reply command(const Command& cmd) {
    detail::check_poolable(cmd);
    auto run = [&](Connection& c) { return c.command(cmd); };
    Reply r = with_master(run);
    if (master_moved(r)) r = with_master(run);
    r.check();
    return r;
  }
  /// command() of an argv.
  Reply command(std::initializer_list<std::string_view> argv) { return command(Command(argv)); }

  /// Runs n commands in one round trip (one write, n replies in order).
  /// Error replies stay in place; check each with Reply::is_error(). A
  /// transaction (MULTI ... EXEC, optionally after WATCH) may be part of it
  /// if it closes within the pipeline; other state-changing commands are
  /// refused as by command(). @throws IoError on I/O failure (no partial
  /// result), ConfigError as said.
  std::vector<Reply> pipeline(const std::vector<Command>& cmds) {
    if (cmds.empty()) return {};
    detail::check_poolable_batch(cmds.data(), cmds.size(), true);
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

  /// Borrows a dedicated connection (for blocking commands, transactions,
  /// subscriptions), separate from the command pool so that blocked waiters
  /// never starve other callers. At most Options::dedicated_pool_size are
  /// out at once; the next waits up to pool_wait_timeout. See lease.hpp for
  /// when it is reused. @throws IoError if it cannot connect, TimeoutError
  /// when none frees up in time.
  Lease lease(std::string_view key = {}) {
    (void)key;
    return Lease(acquire(*core().dedicated));
  }

  /// The name of the server that serves key: on a single server or in
  /// sentinel mode always this client's one server ("host:port", or the
  /// sentinel master's name). Per-node work (lock renewal) is grouped by it.
  /// (Cluster has the same member, naming the key's master.)
  std::string node_name(std::string_view key) const {
    (void)key;
    return name(shared().options);
  }

  /// The masters to visit for work that must cover every master (SCAN):
  /// on a single server or in sentinel mode, this client itself. (Cluster
  /// has the same member, returning one handle per master.)
  std::vector<Redis> masters() {
    (void)shared();
    return {*this};
  }

  /// The options this client was built from.
  const Options& options() const { return shared().options; }

  /// Counters of this client (all its copies) in this process.
  ClientStats stats() { return core().events->snapshot(); }

  /// False: every key is on one server, so a multi-key command may name any
  /// keys. (Cluster: true, split multi-key work by slot; see slot.hpp.)
  static constexpr bool shards_keys = false;

  /// The client's one background thread in this process for periodic work
  /// (lock renewal); started on first use, a fresh one in a fork child.
  detail::Scheduler& scheduler() { return core().scheduler; }

  /// State a primitive keeps per client and per process (see
  /// detail/process_local.hpp). Not for users.
  template <class T>
  std::shared_ptr<T> process_local() {
    return core().locals.template get<T>();
  }

 private:
  // What one process has of a client: connections, threads, counters.
  struct Core {
    explicit Core(const Options& o)
        : events(std::make_shared<detail::EventSink>(o.on_event)),
          sentinel(std::make_shared<detail::SentinelState>()),
          pool(make_pool(o, o.pool_size)),
          dedicated(make_pool(o, o.dedicated_pool_size)) {}
    std::shared_ptr<detail::EventSink> events;
    std::shared_ptr<detail::SentinelState> sentinel;
    std::shared_ptr<detail::Pool> pool;
    std::shared_ptr<detail::Pool> dedicated;
    detail::ProcessLocal locals;
    detail::Scheduler scheduler;  // last: destroyed first, while the pools still exist

    std::shared_ptr<detail::Pool> make_pool(const Options& o, std::size_t size) {
      auto connect = [o, events = events, sentinel = sentinel]() -> std::unique_ptr<Connection> {
        if (o.sentinels.empty()) return std::make_unique<Connection>(o, events);
        return detail::connect_to_master(o, *sentinel, events);
      };
      return std::make_shared<detail::Pool>(size, o.pool_wait_timeout, name(o), connect, events);
    }
  };

  struct Shared {
    explicit Shared(Options o) : options(std::move(o)), core([this] { return new Core(options); }) {}
    const Options options;
    detail::PerProcess<Core> core;
  };

  static std::string name(const Options& o) {
    return o.sentinels.empty() ? detail::endpoint_name(o) : "sentinel master '" + o.master_name + "'";
  }

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
    detail::check_common_options(o);
    return o;
  }

  Shared& shared() const {
    detail::check_not_moved_from(s_ != nullptr, "redkit::Redis");
    return *s_;
  }
  Core& core() const { return shared().core.get(); }

  bool sentinel_mode() const { return !shared().options.sentinels.empty(); }

  // A connection from pool. In sentinel mode a failed connect proves nothing
  // was sent, so it is retried while a failover may be under way.
  detail::Checkout acquire(detail::Pool& pool) {
    if (!sentinel_mode()) return pool.checkout();
    detail::Backoff backoff(shared().options.command_timeout);
    for (;;) {
      try {
        return pool.checkout();
      } catch (const IoError&) {
        if (!backoff.can_retry()) throw;
        backoff.wait();
      }
    }
  }

  template <class F>
  auto with_master(F&& f) -> decltype(f(std::declval<Connection&>())) {
    detail::Checkout c = acquire(*core().pool);
    return f(*c);
  }

  // Sentinel mode: a READONLY reply means our connections lead to a demoted
  // master. Drops them all; true if the command should run once more.
  bool master_moved(const ReplyView& r) {
    if (!sentinel_mode() || !detail::is_readonly(r)) return false;
    Core& c = core();
    c.pool->invalidate();
    c.dedicated->invalidate();
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
