// Test support: a real Redis Cluster (by default 3 masters, 3 replicas) on
// 127.0.0.1, made with `redis-cli --cluster create`, each node a RedisServer
// in its own temporary directory, all stopped with the RedisCluster.
//
// Thread safety: as RedisServer: one thread starts, kills and restarts
// nodes; the queries may run on several threads while no node changes.
// Exceptions: std::runtime_error when the cluster cannot be made or does not
// become healthy in time (with the log tails of the nodes).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "support/server.hpp"

namespace redkit::test {

struct ClusterOptions {
  int masters = 3;
  int replicas_per_master = 1;
  // For every node: cpu_list, extra_args; with server.tls enabled (and
  // its cluster and replication flags), a TLS cluster made over TLS.
  ServerOptions server;
  std::chrono::milliseconds ready_timeout{60000};
};

class RedisCluster {
 public:
  /// Starts the nodes with cluster-node-timeout 1000 ms and no persistence,
  /// joins them with `redis-cli --cluster create ... --cluster-replicas N`,
  /// and waits until wait_healthy() holds.
  explicit RedisCluster(ClusterOptions options = {});
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  std::size_t size() const { return nodes_.size(); }
  RedisServer& node(std::size_t i) { return nodes_.at(i); }
  /// "redis://127.0.0.1:PORT/0" of the first running node.
  std::string seed_uri() const;
  /// RedisServer::tls_uri() of the first running node.
  std::string tls_seed_uri() const;
  /// The node listening on port (plain or TLS). Throws std::runtime_error if none.
  RedisServer& by_port(int port);

  /// The running master that serves slot, as the first running node sees it.
  RedisServer& master_of(int slot);
  /// The running masters that serve slots, as the first running node sees them.
  std::vector<RedisServer*> masters();
  /// CLUSTER MYID of a node.
  std::string node_id(RedisServer& node) const;

  /// Starts moving slot to `to`: CLUSTER SETSLOT IMPORTING on `to`, then
  /// MIGRATING on the slot's current master, which is returned. Keys stay
  /// where they are until migrate_key() or finish_slot_migration().
  RedisServer& begin_slot_migration(int slot, RedisServer& to);
  /// MIGRATEs one key from `from` to `to` (during a migration).
  void migrate_key(RedisServer& from, RedisServer& to, const std::string& key);
  /// MIGRATEs the slot's remaining keys, assigns it to `to` on every master
  /// (CLUSTER SETSLOT NODE) and waits until the cluster is healthy.
  void finish_slot_migration(int slot, RedisServer& from, RedisServer& to);
  /// The three steps above in one: slot and its keys end up on `to`.
  void move_slot(int slot, RedisServer& to);

  /// Waits until every running node says cluster_state:ok, they all agree on
  /// which running master serves each of the 16384 slots, and every running
  /// replica's link to its master is up (so a replica can take over).
  /// Throws std::runtime_error on timeout, describing what was still wrong.
  void wait_healthy(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

 private:
  std::string health_problem();

  ClusterOptions options_;
  std::vector<RedisServer> nodes_;
};

/// One lazily started cluster per process (3 masters, 3 replicas), for the
/// suites that only need "a cluster". Call it first from the main thread.
RedisCluster& shared_cluster();

}  // namespace redkit::test
