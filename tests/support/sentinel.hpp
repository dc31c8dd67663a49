// Test support: a real Redis Sentinel set on 127.0.0.1: one master, one
// replica (RedisServers) and three sentinels (`redis-server <conf>
// --sentinel`, down-after-milliseconds 1000, failover-timeout 3000), each in
// its own temporary directory, all stopped with the SentinelSet.
//
// Thread safety: as RedisServer: one thread starts, kills and restarts
// servers; the queries may run on several threads while none changes.
// Exceptions: std::runtime_error when a process cannot be started or the set
// does not become ready in time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "support/server.hpp"

namespace redkit::test {

struct SentinelOptions {
  std::string master_name = "mymaster";
  int sentinels = 3;
  int quorum = 2;
  // For the master and the replica. With server.tls enabled, they replicate
  // over TLS and the sentinels get a TLS port and reach them over TLS.
  ServerOptions server;
  std::chrono::milliseconds ready_timeout{30000};
};

class SentinelSet {
 public:
  /// Starts the master, the replica (waits for its link), then the
  /// sentinels (waits until each answers and names the master).
  explicit SentinelSet(SentinelOptions options = {});
  ~SentinelSet();
  SentinelSet(const SentinelSet&) = delete;
  SentinelSet& operator=(const SentinelSet&) = delete;

  const std::string& master_name() const { return options_.master_name; }
  /// "redis-sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/0#mymaster".
  std::string uri() const;
  /// "rediss-sentinel://127.0.0.1:T1,.../0?tls_ca_file=<CA>#mymaster", the
  /// sentinels' TLS ports; throws std::runtime_error for a set without TLS.
  std::string tls_uri() const;
  /// The plain ports (the support's own queries use them).
  const std::vector<int>& sentinel_ports() const { return sentinel_ports_; }
  /// The TLS ports (empty without TLS).
  const std::vector<int>& sentinel_tls_ports() const { return sentinel_tls_ports_; }

  /// The two data servers: 0 started as master, 1 as its replica.
  RedisServer& server(std::size_t i) { return servers_.at(i); }
  /// The data server the first answering sentinel names as master now.
  RedisServer& current_master();
  /// The data server that is not current_master().
  RedisServer& current_replica();

  /// Swaps the roles of the two data servers without a failover: once the
  /// replica has caught up (replication offsets), it becomes master (REPLICAOF NO ONE), the master its replica, and
  /// every sentinel is pointed at the new master (SENTINEL REMOVE, MONITOR,
  /// SET). Clients connected to the old master stay connected (a failover
  /// would CLIENT KILL them): they see READONLY, as after a demoted master
  /// comes back. Waits until the new replica is synced.
  void swap_roles_without_failover();

  /// Waits until every running data server that is not the master is its
  /// replica with the link up.
  void wait_replica_synced(std::chrono::milliseconds timeout = std::chrono::milliseconds(20000));
  /// Waits until every sentinel names the same running master, sees the
  /// replica (not down, link ok) and the other sentinels: what a failover
  /// needs. Sentinels learn of each other from hello messages every 2 s.
  void wait_ready_for_failover(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

 private:
  struct Sentinel;
  std::string failover_problem();

  SentinelOptions options_;
  std::vector<RedisServer> servers_;
  std::vector<int> sentinel_ports_;
  std::vector<int> sentinel_tls_ports_;
  std::vector<std::unique_ptr<Sentinel>> sentinels_;
};

/// One lazily started sentinel set per process, for the suites that only
/// need "a sentinel-mode master". Call it first from the main thread.
SentinelSet& shared_sentinel();

}  // namespace redkit::test
