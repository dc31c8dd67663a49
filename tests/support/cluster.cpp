#include "support/cluster.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/nodes.hpp"

namespace redkit::test {
namespace {

using std::chrono::milliseconds;

// One line of CLUSTER NODES:
//   <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
struct NodeLine {
  std::string id;
  int port = 0;
  std::string flags;
  std::vector<std::pair<int, int>> slots;  // inclusive ranges; migrations ([...]) left out
  bool master() const { return flags.find("master") != std::string::npos; }
  bool failed() const {
    return flags.find("fail") != std::string::npos && flags.find("fail?") == std::string::npos;
  }
  bool myself() const { return flags.find("myself") != std::string::npos; }
};

std::vector<NodeLine> parse_cluster_nodes(const std::string& text) {
  std::vector<NodeLine> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    NodeLine n;
    std::string address, master, ping, pong, epoch, link;
    if (!(words >> n.id >> address >> n.flags >> master >> ping >> pong >> epoch >> link)) continue;
    const auto colon = address.rfind(':', address.find('@'));
    n.port = std::stoi(address.substr(colon + 1, address.find('@') - colon - 1));
    for (std::string range; words >> range;) {
      if (range.front() == '[') continue;
      const auto dash = range.find('-');
      const int first = std::stoi(range.substr(0, dash));
      const int last = dash == std::string::npos ? first : std::stoi(range.substr(dash + 1));
      n.slots.emplace_back(first, last);
    }
    out.push_back(std::move(n));
  }
  return out;
}

std::string cluster_nodes(int port) {
  redkit::Reply r = node_command(port, {"CLUSTER", "NODES"});
  return std::string(r.string());
}

std::string info(int port, const char* section) {
  redkit::Reply r = node_command(port, {"INFO", section});
  return std::string(r.string());
}

}  // namespace

RedisCluster::RedisCluster(ClusterOptions options) : options_(std::move(options)) {
  const int total = options_.masters * (1 + options_.replicas_per_master);
  if (options_.masters < 3) throw std::runtime_error("RedisCluster: redis-cli needs at least 3 masters");
  nodes_.reserve(static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) {
    ServerOptions so = options_.server;
    // No 5 s wait before a replica's first sync; no wait for replicas at
    // shutdown. An explicit bus port: the default (port + 10000) does not exist for
    // ports above 55535, which the kernel hands out.
    so.extra_args.insert(so.extra_args.end(), {"--cluster-enabled", "yes", "--cluster-config-file",
                                               "nodes.conf", "--cluster-node-timeout", "1000",
                                               "--cluster-port", std::to_string(pick_free_port()),
                                               "--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0"});
    nodes_.emplace_back(so);
  }

  std::vector<std::string> args = {"--cluster", "create"};
  for (const auto& n : nodes_) args.push_back("127.0.0.1:" + std::to_string(n.port()));
  args.insert(args.end(),
              {"--cluster-replicas", std::to_string(options_.replicas_per_master), "--cluster-yes"});
  ChildProcess create("redis-cli", args);
  const int rc = create.wait(options_.ready_timeout);
  if (rc != 0) {
    throw std::runtime_error("RedisCluster: redis-cli --cluster create exited with " + std::to_string(rc) +
                             ":\n" + create.output());
  }
  wait_healthy(options_.ready_timeout);
}

std::string RedisCluster::seed_uri() const {
  for (const auto& n : nodes_) {
    if (n.running()) return n.uri();
  }
  throw std::runtime_error("RedisCluster: no node is running");
}

RedisServer& RedisCluster::by_port(int port) {
  for (auto& n : nodes_) {
    if (n.port() == port) return n;
  }
  throw std::runtime_error("RedisCluster: no node on port " + std::to_string(port));
}

std::vector<RedisServer*> RedisCluster::masters() {
  std::vector<RedisServer*> out;
  for (auto& n : nodes_) {
    if (!n.running()) continue;
    for (const NodeLine& line : parse_cluster_nodes(cluster_nodes(n.port()))) {
      if (line.master() && !line.failed() && !line.slots.empty()) out.push_back(&by_port(line.port));
    }
    return out;
  }
  throw std::runtime_error("RedisCluster: no node is running");
}

RedisServer& RedisCluster::master_of(int slot) {
  for (auto& n : nodes_) {
    if (!n.running()) continue;
    for (const NodeLine& line : parse_cluster_nodes(cluster_nodes(n.port()))) {
      if (!line.master() || line.failed()) continue;
      for (auto [first, last] : line.slots) {
        if (slot >= first && slot <= last) return by_port(line.port);
      }
    }
    throw std::runtime_error("RedisCluster: no master serves slot " + std::to_string(slot));
  }
  throw std::runtime_error("RedisCluster: no node is running");
}

std::string RedisCluster::node_id(RedisServer& node) const {
  return node_command(node.port(), {"CLUSTER", "MYID"}).string_copy();
}

namespace {

void expect_ok(const redkit::Reply& r, const std::string& what) {
  if (r.is_error() || !r.ok()) {
    throw std::runtime_error("RedisCluster: " + what + ": " +
                             (r.is_error() ? std::string(r.error()) : std::string("unexpected reply")));
  }
}

}  // namespace

RedisServer& RedisCluster::begin_slot_migration(int slot, RedisServer& to) {
  RedisServer& from = master_of(slot);
  const std::string s = std::to_string(slot);
  expect_ok(node_command(to.port(), {"CLUSTER", "SETSLOT", s, "IMPORTING", node_id(from)}),
            "SETSLOT IMPORTING");
  expect_ok(node_command(from.port(), {"CLUSTER", "SETSLOT", s, "MIGRATING", node_id(to)}),
            "SETSLOT MIGRATING");
  return from;
}

void RedisCluster::migrate_key(RedisServer& from, RedisServer& to, const std::string& key) {
  redkit::Reply r =
      node_command(from.port(), {"MIGRATE", "127.0.0.1", std::to_string(to.port()), key, "0", "5000"});
  if (r.is_error()) throw std::runtime_error("RedisCluster: MIGRATE " + key + ": " + std::string(r.error()));
}

void RedisCluster::finish_slot_migration(int slot, RedisServer& from, RedisServer& to) {
  const std::string s = std::to_string(slot);
  for (;;) {
    redkit::Reply keys = node_command(from.port(), {"CLUSTER", "GETKEYSINSLOT", s, "100"});
    if (keys.size() == 0) break;
    for (std::size_t i = 0; i < keys.size(); ++i) migrate_key(from, to, std::string(keys[i].string()));
  }
  // The importing node first, then the old owner, then everyone else.
  const std::string id = node_id(to);
  expect_ok(node_command(to.port(), {"CLUSTER", "SETSLOT", s, "NODE", id}), "SETSLOT NODE");
  expect_ok(node_command(from.port(), {"CLUSTER", "SETSLOT", s, "NODE", id}), "SETSLOT NODE");
  for (RedisServer* m : masters()) {
    if (m != &to && m != &from)
      expect_ok(node_command(m->port(), {"CLUSTER", "SETSLOT", s, "NODE", id}), "SETSLOT NODE");
  }
  wait_healthy();
}

void RedisCluster::move_slot(int slot, RedisServer& to) {
  RedisServer& from = begin_slot_migration(slot, to);
  finish_slot_migration(slot, from, to);
}

// What keeps the cluster from being healthy, or "" when nothing does.
std::string RedisCluster::health_problem() {
  std::string first_view;
  for (auto& n : nodes_) {
    if (!n.running()) continue;
    const std::string where = "node " + std::to_string(n.port()) + ": ";
    try {
      const std::string state =
          info_field(node_command(n.port(), {"CLUSTER", "INFO"}).string_copy(), "cluster_state");
      if (state != "ok") return where + "cluster_state:" + state;

      // Its view of who serves what: every slot, by a running master.
      std::vector<std::string> owners;
      int covered = 0;
      for (const NodeLine& line : parse_cluster_nodes(cluster_nodes(n.port()))) {
        if (!line.master() || line.slots.empty()) continue;
        if (line.failed())
          return where + "sees failed master " + std::to_string(line.port) + " still serving slots";
        if (!by_port(line.port).running())
          return where + "thinks stopped node " + std::to_string(line.port) + " serves slots";
        for (auto [first, last] : line.slots) {
          covered += last - first + 1;
          owners.push_back(std::to_string(first) + "-" + std::to_string(last) + "@" +
                           std::to_string(line.port));
        }
      }
      if (covered != 16384) return where + "sees " + std::to_string(covered) + " of 16384 slots served";
      std::sort(owners.begin(), owners.end());
      std::string view;
      for (const auto& o : owners) view += o + " ";
      if (first_view.empty()) {
        first_view = view;
      } else if (view != first_view) {
        return where + "disagrees on the slot map: " + view + "vs " + first_view;
      }

      const std::string replication = info(n.port(), "replication");
      if (info_field(replication, "role") == "slave" &&
          info_field(replication, "master_link_status") != "up") {
        return where + "replica link is " + info_field(replication, "master_link_status");
      }
    } catch (const std::exception& e) {
      return where + e.what();
    }
  }
  if (first_view.empty()) return "no node is running";
  return {};
}

void RedisCluster::wait_healthy(milliseconds timeout) {
  std::string problem;
  const bool ok = wait_until([&] { return (problem = health_problem()).empty(); }, timeout, milliseconds(50));
  if (!ok) {
    std::string logs;
    for (auto& n : nodes_) logs += "\n--- node " + std::to_string(n.port()) + "\n" + n.log_tail(8);
    throw std::runtime_error("RedisCluster: not healthy after " + std::to_string(timeout.count()) +
                             " ms: " + problem + logs);
  }
}

RedisCluster& shared_cluster() {
  static RedisCluster cluster;
  return cluster;
}

}  // namespace redkit::test
