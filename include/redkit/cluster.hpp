/// @file cluster.hpp
/// redkit::Cluster, the client for Redis Cluster: the same interface as
/// redkit::Redis (command, pipeline, eval, lease, scheduler, options), routed
/// by key over a slot map, with one connection pool per master.
///
/// Thread safety: every member is thread-safe; copies are cheap handles to
/// one shared state (slot map and pools).
///
/// Exceptions: IoError (TimeoutError, ClosedError) when a node cannot be
/// reached or does not answer in time, ReplyError when it answers with an
/// error that is not a redirect, ConfigError for options that cannot work
/// with a cluster. MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY and LOADING
/// replies, and failed connects, prove the command was not executed: those
/// are retried (at most 16 redirects; waits of 5 ms doubling to 100 ms, for
/// at most Options::command_timeout in all) and reach the caller only when
/// the retries run out. An I/O error after a command was sent is ambiguous:
/// it reaches the caller as IoError (never a silent resend), and the slot
/// map is refreshed so that the next call goes to the right node.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redkit/command.hpp"
#include "redkit/connection.hpp"
#include "redkit/detail/command_state.hpp"
#include "redkit/detail/crc16.hpp"
#include "redkit/detail/events.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/pool.hpp"
#include "redkit/detail/process_local.hpp"
#include "redkit/detail/retry.hpp"
#include "redkit/detail/scheduler.hpp"
#include "redkit/detail/slot_map.hpp"
#include "redkit/error.hpp"
#include "redkit/event.hpp"
#include "redkit/lease.hpp"
#include "redkit/options.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"
#include "redkit/slot.hpp"

namespace redkit {

/// A client for Redis Cluster. Built from the Options of any one node (the
/// seed); learns the rest from CLUSTER SLOTS on first use. Commands go to the
/// master that serves their routing key's slot (Command::key()); a command
/// without a routing key goes to any master. Reads are never sent to
/// replicas. Options::db must be 0 (a cluster has only db 0).
class Cluster {
 public:
  /// True: keys live on several masters, so multi-key commands and scripts
  /// must keep to one hash slot (see slot.hpp). Redis has the same member.
  static constexpr bool shards_keys = true;

  /// A client for the cluster that the node in seed belongs to. Connects
  /// lazily, on first use. @throws ConfigError for options that cannot work
  /// (db other than 0, a unix socket, sentinels, pool_size 0).
  explicit Cluster(Options seed) : s_(std::make_shared<Shared>(validated(std::move(seed)))) {}
  /// Same, from the URI of any node (see Options::from_uri). @throws ConfigError.
  explicit Cluster(std::string_view uri) : Cluster(Options::from_uri(uri)) {}

  /// Runs one command on the master serving its routing key, following
  /// redirects. Commands that change their connection's state (SELECT,
  /// MULTI, SUBSCRIBE, READONLY, ...) are refused with a ConfigError, as on
  /// Redis. @throws ReplyError for an error reply, IoError on I/O failure.
  Reply command(const Command& cmd) {
    detail::check_poolable(cmd);
    Reply r = execute(cmd);
    r.check();
    return r;
  }
  /// A command given as argv has no routing key: it goes to any master, and
  /// a MOVED reply then sends it on to the right one (one extra hop). Build
  /// a Command with key() for direct routing.
  Reply command(std::initializer_list<std::string_view> argv) { return command(Command(argv)); }

  /// Runs the commands grouped per master, one round trip per master
  /// involved (plus one per redirect round). Replies come back in the
  /// caller's order; error replies stay in place. Order of execution is kept
  /// among commands on the same node; there is none across nodes. Each
  /// node's batch is written on a connection taken without waiting where
  /// one is free; a node whose pool is busy is served after the others have
  /// been read and given back, so a pipeline never holds one node's
  /// connection while it waits for another's. MULTI/EXEC and other
  /// state-changing commands are refused (ConfigError; use a script on one
  /// hash tag). @throws IoError on I/O failure after sending (no partial
  /// result), or when a node stays unreachable.
  std::vector<Reply> pipeline(const std::vector<Command>& cmds);

  /// Runs a script with EVALSHA on the master serving its first key (any
  /// master when keys is empty), and with EVAL if that node answers
  /// NOSCRIPT. All keys must share a slot (else CROSSSLOT).
  /// @throws ReplyError for a script error, IoError on I/O failure.
  template <class Keys = std::initializer_list<std::string_view>,
            class Args = std::initializer_list<std::string_view>>
  Reply eval(const Script& script, const Keys& keys, const Args& args) {
    Reply r = run_script(script, keys, args, [&](const Command& cmd) { return execute(cmd); });
    r.check();
    return r;
  }

  /// Borrows a dedicated connection to the master serving key (for blocking
  /// commands and subscriptions). It keeps its pool alive, and goes back to
  /// it when the Lease is destroyed (see lease.hpp). Replies on it are not
  /// redirected: a blocked command may end with MOVED or TRYAGAIN when its
  /// slot moves. At most Options::dedicated_pool_size per node; the next
  /// waits up to pool_wait_timeout.
  /// @throws IoError if no connection can be made, TimeoutError.
  Lease lease(std::string_view key) {
    const int slot = hash_slot(key);
    return lease_on([this, slot]() -> Node& { return node_for_slot(slot); });
  }
  /// Borrows a dedicated connection to any master.
  Lease lease() {
    return lease_on([this]() -> Node& { return any_master(); });
  }

  /// "host:port" of the master that serves key's slot in the current slot
  /// map. Per-node work (lock renewal) is grouped by it. @throws IoError if
  /// the slot map cannot be loaded.
  std::string node_name(std::string_view key) { return node_for_slot(hash_slot(key)).name; }

  /// One Redis handle per master in the current slot map, for work that
  /// must visit every master: a SCAN sent through command() has no routing
  /// key, so each call may reach a different master. Each call makes new
  /// handles with their own connections. @throws IoError if the slot map
  /// cannot be loaded.
  std::vector<Redis> masters() {
    ensure_loaded();
    std::vector<Redis> out;
    Core& c = core();
    std::lock_guard<std::mutex> lk(c.m);
    for (Node* n : c.masters) out.emplace_back(n->options);
    return out;
  }

  /// The seed options this client was built from.
  const Options& options() const { return shared().seed; }

  /// Counters of this client (all its copies) in this process.
  ClientStats stats() { return core().events->snapshot(); }

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
  using Clock = std::chrono::steady_clock;
  using Redirect = detail::Redirect;
  static constexpr int kMaxRedirects = 16;
  static constexpr std::chrono::milliseconds kMinRefreshInterval{100};

  /// One cluster node: its options and its two pools. Never destroyed
  /// before the Core, so Node pointers stay valid; Leases keep their pool.
  struct Node {
    Node(Options o, const std::shared_ptr<detail::EventSink>& events)
        : options(std::move(o)),
          name(detail::endpoint_name(options)),
          pool(make_pool(options, options.pool_size, events)),
          dedicated(make_pool(options, options.dedicated_pool_size, events)) {}
    Options options;
    std::string name;
    std::shared_ptr<detail::Pool> pool;
    std::shared_ptr<detail::Pool> dedicated;
    std::atomic<bool> suspect{false};  // failed lately: asked last for the slot map

    static std::shared_ptr<detail::Pool> make_pool(const Options& o, std::size_t size,
                                                   const std::shared_ptr<detail::EventSink>& events) {
      return std::make_shared<detail::Pool>(
          size, o.pool_wait_timeout, detail::endpoint_name(o),
          [o, events] { return std::make_unique<Connection>(o, events); }, events);
    }
  };

  // What one process has of a cluster client: the slot map, the nodes and
  // their pools, the scheduler, counters.
  struct Core {
    explicit Core(const Options& o) : events(std::make_shared<detail::EventSink>(o.on_event)) {}
    std::shared_ptr<detail::EventSink> events;

    std::mutex m;                                        // guards the three members below
    std::map<std::string, std::unique_ptr<Node>> nodes;  // by "host:port"; never erased
    std::vector<Node*> slots;                            // empty until the first load
    std::vector<Node*> masters;

    std::mutex refresh_m;  // one CLUSTER SLOTS at a time; guards last_refresh
    Clock::time_point last_refresh{};

    std::atomic<unsigned> next_any{0};
    detail::ProcessLocal locals;
    detail::Scheduler scheduler;  // last: destroyed first, while the pools still exist
  };

  struct Shared {
    explicit Shared(Options o) : seed(std::move(o)), core([this] { return new Core(seed); }) {}
    const Options seed;
    detail::PerProcess<Core> core;
  };

  Shared& shared() const {
    detail::check_not_moved_from(s_ != nullptr, "redkit::Cluster");
    return *s_;
  }
  Core& core() const { return shared().core.get(); }

  static Options validated(Options o) {
    if (!o.sentinels.empty())
      throw ConfigError("redkit: Cluster does not take sentinels (use Redis for sentinel mode)");
    if (!o.unix_socket.empty()) throw ConfigError("redkit: Cluster needs a TCP seed node, not a unix socket");
    if (o.db != 0) throw ConfigError("redkit: Redis Cluster has only db 0, not db " + std::to_string(o.db));
    if (o.host.empty()) throw ConfigError("redkit: empty host");
    if (o.port < 1 || o.port > 65535)
      throw ConfigError("redkit: port out of range: " + std::to_string(o.port));
    detail::check_common_options(o);
    return o;
  }

  // ---- the slot map ---------------------------------------------------------

  // The node at an address, created on first sight. Caller holds core().m.
  Node& node_at_locked(const Endpoint& ep) {
    auto& slot = core().nodes[ep.host + ":" + std::to_string(ep.port)];
    if (!slot) {
      Options o = shared().seed;
      o.host = ep.host;
      o.port = ep.port;
      slot = std::make_unique<Node>(std::move(o), core().events);
    }
    return *slot;
  }

  Node& node_at(const Endpoint& ep) {
    std::lock_guard<std::mutex> lk(core().m);
    return node_at_locked(ep);
  }

  bool loaded() {
    std::lock_guard<std::mutex> lk(core().m);
    return !core().slots.empty();
  }

  void ensure_loaded() {
    if (!loaded()) refresh();
  }

  // Where to ask for CLUSTER SLOTS: the nodes that did not fail lately, then
  // those that did, then the seed.
  std::vector<Endpoint> refresh_candidates() {
    std::vector<Endpoint> healthy;
    std::vector<Endpoint> suspect;
    {
      std::lock_guard<std::mutex> lk(core().m);
      for (const auto& entry : core().nodes) {
        const Node& n = *entry.second;
        (n.suspect ? suspect : healthy).push_back(Endpoint{n.options.host, n.options.port});
      }
    }
    healthy.insert(healthy.end(), suspect.begin(), suspect.end());
    healthy.push_back(Endpoint{shared().seed.host, shared().seed.port});
    return healthy;
  }

  /// Reloads the slot map with CLUSTER SLOTS from the first node that
  /// answers. Skipped when another caller did it within kMinRefreshInterval
  /// (callers that wait for it here then use its result).
  /// @throws IoError if no node gives a slot map.
  void refresh() {
    std::lock_guard<std::mutex> rl(core().refresh_m);
    const auto now = Clock::now();
    if (loaded() && now - core().last_refresh < kMinRefreshInterval) return;
    core().last_refresh = now;

    std::string failures;
    for (const Endpoint& ep : refresh_candidates()) {
      Node& node = node_at(ep);
      try {
        // A free pooled connection, else one of its own: a refresh must
        // not wait behind busy callers.
        detail::Checkout c = node.pool->try_checkout();
        if (!c) c = detail::Checkout(std::make_unique<Connection>(node.options, core().events));
        Reply r = c->command(Command{"CLUSTER", "SLOTS"});
        r.check();
        auto ranges = detail::parse_cluster_slots(r, ep.host);
        if (ranges.empty()) {
          failures += " " + node.name + ": no slots assigned;";
          continue;  // a node that has not joined yet
        }
        install(ranges, node.name);
        return;
      } catch (const Error& e) {
        failures += std::string(" ") + e.what() + ";";
      }
    }
    throw IoError("redkit: cannot load the cluster slot map from any known node:" + failures);
  }

  /// Refreshes if possible; on failure the old map stays and the caller's
  /// own retry or error reporting carries on.
  void refresh_quietly() noexcept {
    try {
      refresh();
    } catch (...) {
    }
  }

  void install(const std::vector<detail::SlotRange>& ranges, const std::string& asked) {
    install_locked(ranges);
    core().events->emit(EventType::SlotMapReloaded, asked);
  }

  void install_locked(const std::vector<detail::SlotRange>& ranges) {
    std::lock_guard<std::mutex> lk(core().m);
    std::vector<Node*> slots(detail::kClusterSlots, nullptr);
    std::vector<Node*> masters;
    for (const auto& range : ranges) {
      Node* master = &node_at_locked(range.master);
      for (int slot = range.first; slot <= range.last; ++slot) slots[static_cast<std::size_t>(slot)] = master;
      if (std::find(masters.begin(), masters.end(), master) == masters.end()) masters.push_back(master);
      for (const auto& replica : range.replicas) node_at_locked(replica);  // asked on the next refresh
    }
    core().slots = std::move(slots);
    core().masters = std::move(masters);
  }

  // The master for a command: its slot's owner, or any master for a
  // command without a routing key or a slot our map does not cover (that
  // master will say where to go, or CLUSTERDOWN). Caller holds core().m and
  // the map is loaded.
  Node& node_for_locked(const Command& cmd) {
    if (cmd.has_route()) {
      if (Node* n = core().slots[static_cast<std::size_t>(hash_slot(cmd.route_key()))]) return *n;
    }
    return *core().masters[core().next_any++ % core().masters.size()];
  }

  Node& node_for(const Command& cmd) {
    {
      std::lock_guard<std::mutex> lk(core().m);
      if (!core().slots.empty()) return node_for_locked(cmd);
    }
    refresh();  // the first use: load the map
    std::lock_guard<std::mutex> lk(core().m);
    return node_for_locked(cmd);
  }

  Node& any_master() { return node_for(Command{}); }

  Node& node_for_slot(int slot) {
    ensure_loaded();
    std::lock_guard<std::mutex> lk(core().m);
    if (Node* n = core().slots[static_cast<std::size_t>(slot)]) return *n;
    return *core().masters[core().next_any++ % core().masters.size()];
  }

  /// Follows a MOVED: the slot's new owner goes into the map at once; the
  /// whole map is reloaded only if ours was wrong (a keyless command that
  /// landed on the wrong master is no news).
  Node& follow_moved(const Redirect& moved) {
    Node* target = nullptr;
    bool news = false;
    {
      std::lock_guard<std::mutex> lk(core().m);
      target = &node_at_locked(moved.to);
      if (!core().slots.empty()) {
        Node*& owner = core().slots[static_cast<std::size_t>(moved.slot)];
        news = owner != target;
        owner = target;
      }
    }
    core().events->emit(EventType::RedirectFollowed, target->name, "MOVED " + std::to_string(moved.slot));
    if (news) refresh_quietly();
    return *target;
  }

  static bool waits(Redirect::Kind kind) {
    return kind == Redirect::Kind::TryAgain || kind == Redirect::Kind::ClusterDown ||
           kind == Redirect::Kind::ReadOnly || kind == Redirect::Kind::Loading;
  }

  // ---- one command -----------------------------------------------------------

  // Sends cmd (after ASKING when asking) on a connection taken from node's
  // pool. An I/O error here is ambiguous: mark, refresh, rethrow.
  Reply send_on(Node& node, detail::Checkout c, const Command& cmd, bool asking) {
    try {
      if (!asking) return c->command(cmd);
      const Command both[2] = {Command{"ASKING"}, cmd};
      const auto deadline = c->command_deadline();
      c->send(both, 2, deadline);
      c->read(deadline);  // +OK
      return c->read(deadline);
    } catch (const IoError&) {
      c.reset();
      node.suspect = true;
      refresh_quietly();
      throw;
    }
  }

  /// Runs one command, following redirects and retrying what provably did
  /// not run. Returns the final reply, which may be an error reply.
  Reply execute(const Command& cmd) {
    detail::Backoff backoff(shared().seed.command_timeout);
    Node* node = &node_for(cmd);
    bool asking = false;
    for (int redirects = 0;;) {
      detail::Checkout c;
      try {
        c = node->pool->checkout();
      } catch (const IoError&) {
        // Nothing was sent. The node may have just failed: look again.
        node->suspect = true;
        if (!backoff.can_retry()) throw;
        backoff.wait();
        refresh_quietly();
        node = &node_for(cmd);
        asking = false;
        continue;
      }
      Reply r = send_on(*node, std::move(c), cmd, asking);
      if (node->suspect) node->suspect = false;
      if (!r.is_error()) return r;

      const Redirect redirect = detail::parse_redirect(r.error(), node->options.host);
      asking = false;
      if (redirect.kind == Redirect::Kind::None) return r;
      if (waits(redirect.kind)) {
        if (!backoff.can_retry()) return r;
        backoff.wait();
        if (redirect.kind != Redirect::Kind::TryAgain) refresh_quietly();
        node = &node_for(cmd);
        continue;
      }
      if (++redirects > kMaxRedirects) return r;
      if (redirect.kind == Redirect::Kind::Moved) {
        node = &follow_moved(redirect);
      } else {  // Ask: this one command goes to the importing node, the map stays
        node = &node_at(redirect.to);
        asking = true;
        core().events->emit(EventType::RedirectFollowed, node->name, "ASK " + std::to_string(redirect.slot));
      }
    }
  }

  // ---- leases ----------------------------------------------------------------

  template <class PickNode>
  Lease lease_on(PickNode pick) {
    detail::Backoff backoff(shared().seed.command_timeout);
    for (;;) {
      Node& node = pick();
      try {
        return Lease(node.dedicated->checkout());
      } catch (const IoError&) {
        node.suspect = true;
        if (!backoff.can_retry()) throw;
        backoff.wait();
        refresh_quietly();
      }
    }
  }

  // ---- pipelines -------------------------------------------------------------

  /// One command still to run: its position in the caller's vector, where
  /// to send it, and whether it goes after ASKING.
  struct Pending {
    std::size_t index;
    Node* node;
    bool asking;
  };

  /// The commands of one round that go to one node.
  struct Batch {
    Node* node = nullptr;
    std::vector<const Command*> wire;  // what is sent, ASKINGs included
    std::vector<std::size_t> owner;    // for each wire command: its position in the round, or kAsking
    detail::Checkout conn;
    bool sent = false;
  };
  static constexpr std::size_t kAsking = static_cast<std::size_t>(-1);

  static const Command& asking_command() {
    static const Command asking{"ASKING"};
    return asking;
  }

  static std::vector<Batch> batches_of(const std::vector<Command>& cmds, const std::vector<Pending>& round) {
    std::vector<Batch> batches;
    for (std::size_t p = 0; p < round.size(); ++p) {
      auto it = std::find_if(batches.begin(), batches.end(),
                             [&](const Batch& b) { return b.node == round[p].node; });
      if (it == batches.end()) {
        batches.emplace_back();
        it = batches.end() - 1;
        it->node = round[p].node;
      }
      if (round[p].asking) {
        it->wire.push_back(&asking_command());
        it->owner.push_back(kAsking);
      }
      it->wire.push_back(&cmds[round[p].index]);
      it->owner.push_back(p);
    }
    return batches;
  }

  /// State of one round of a pipeline.
  struct Round {
    const std::vector<Command>& cmds;
    const std::vector<Pending>& pending;
    std::vector<Reply>& out;
    std::vector<bool> answered;
    std::vector<Pending> again;
    std::exception_ptr ambiguous;    // a failure after sending
    std::exception_ptr unreachable;  // a failed connect (nothing sent)
    bool wait = false;
  };

  // A batch whose node could not be reached: its commands run again.
  void unreachable(Round& r, Batch& b) {
    b.node->suspect = true;
    r.unreachable = std::current_exception();
    r.wait = true;
    for (std::size_t p : b.owner) {
      if (p != kAsking) r.again.push_back(Pending{r.pending[p].index, nullptr, false});
    }
  }

  void send_batch(Round& r, Batch& b, const detail::Deadline& deadline) {
    try {
      b.conn->send(b.wire, deadline);
      b.sent = true;
    } catch (const IoError&) {
      if (!r.ambiguous) r.ambiguous = std::current_exception();
    }
  }

  // Reads a sent batch's replies into the round, then gives its
  // connection back (a broken one is discarded by the checkout).
  void read_batch(Round& r, Batch& b, const detail::Deadline& deadline) {
    if (b.sent) {
      try {
        for (std::size_t w = 0; w < b.wire.size(); ++w) {
          Reply reply = b.conn->read(deadline);
          if (b.owner[w] == kAsking) continue;
          r.out[r.pending[b.owner[w]].index] = std::move(reply);
          r.answered[b.owner[w]] = true;
        }
      } catch (const IoError&) {
        if (!r.ambiguous) r.ambiguous = std::current_exception();
      }
    }
    const bool failed = !b.sent || b.conn->broken();
    b.conn.reset();
    if (failed) {
      b.node->suspect = true;
    } else if (b.node->suspect) {
      b.node->suspect = false;
    }
  }

  /// Sends one round of pending commands and stores each reply in out.
  /// Batches whose node has a free connection are all written before any
  /// reply is read (one round trip for all of them); a batch whose node's
  /// pool is busy waits for a connection only after the others are read and
  /// given back, so no connection is held while waiting for another.
  /// Returns the commands to run again: redirected (node set), told to wait
  /// or never sent because their node was unreachable (node null; wait set,
  /// unreachable keeps the connect error). @throws IoError after an
  /// ambiguous failure (a write or read that failed after sending), once
  /// every batch is done with.
  std::vector<Pending> run_round(Round& r) {
    std::vector<Batch> batches = batches_of(r.cmds, r.pending);
    const detail::Deadline deadline = detail::Deadline::after(shared().seed.command_timeout);
    std::vector<Batch*> deferred;
    for (Batch& b : batches) {
      try {
        b.conn = b.node->pool->try_checkout();
      } catch (const IoError&) {
        unreachable(r, b);
        continue;
      }
      if (!b.conn) {
        deferred.push_back(&b);
        continue;
      }
      send_batch(r, b, deadline);
    }
    for (Batch& b : batches) {
      if (b.conn) read_batch(r, b, deadline);
    }
    for (Batch* b : deferred) {
      try {
        b->conn = b->node->pool->checkout();
      } catch (const IoError&) {
        unreachable(r, *b);
        continue;
      }
      send_batch(r, *b, deadline);
      read_batch(r, *b, deadline);
    }
    if (r.ambiguous) {
      refresh_quietly();
      std::rethrow_exception(r.ambiguous);
    }

    for (std::size_t p = 0; p < r.pending.size(); ++p) {
      const Reply& reply = r.out[r.pending[p].index];
      if (!r.answered[p] || !reply.is_error()) continue;
      const Redirect redirect = detail::parse_redirect(reply.error(), r.pending[p].node->options.host);
      if (redirect.kind == Redirect::Kind::None) continue;
      if (waits(redirect.kind)) {
        r.wait = true;
        r.again.push_back(Pending{r.pending[p].index, nullptr, false});
      } else if (redirect.kind == Redirect::Kind::Moved) {
        r.again.push_back(Pending{r.pending[p].index, &follow_moved(redirect), false});
      } else {
        Node& to = node_at(redirect.to);
        core().events->emit(EventType::RedirectFollowed, to.name, "ASK " + std::to_string(redirect.slot));
        r.again.push_back(Pending{r.pending[p].index, &to, true});
      }
    }
    return std::move(r.again);
  }

  std::shared_ptr<Shared> s_;
};

inline std::vector<Reply> Cluster::pipeline(const std::vector<Command>& cmds) {
  std::vector<Reply> out;
  out.reserve(cmds.size());
  for (std::size_t i = 0; i < cmds.size(); ++i) out.emplace_back(nullptr);
  if (cmds.empty()) return out;
  detail::check_poolable_batch(cmds.data(), cmds.size(), false);

  std::vector<Pending> pending;
  pending.reserve(cmds.size());
  ensure_loaded();
  {
    Core& c = core();
    std::lock_guard<std::mutex> lk(c.m);
    for (std::size_t i = 0; i < cmds.size(); ++i) pending.push_back(Pending{i, &node_for_locked(cmds[i]), false});
  }

  detail::Backoff backoff(shared().seed.command_timeout);
  for (int rounds = 0; !pending.empty(); ++rounds) {
    Round round{cmds, pending, out, std::vector<bool>(pending.size(), false), {}, nullptr, nullptr, false};
    std::vector<Pending> again = run_round(round);
    if (again.empty()) break;
    if (rounds >= kMaxRedirects || (round.wait && !backoff.can_retry())) {
      if (round.unreachable) std::rethrow_exception(round.unreachable);
      break;  // the redirect or wait errors stay in place
    }
    if (round.wait) {
      backoff.wait();
      refresh_quietly();
    }
    for (Pending& p : again) {
      if (p.node == nullptr) p.node = &node_for(cmds[p.index]);
    }
    pending = std::move(again);
  }
  return out;
}

}  // namespace redkit
