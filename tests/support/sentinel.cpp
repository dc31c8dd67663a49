#include "support/sentinel.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <redkit/error.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "support/nodes.hpp"

namespace redkit::test {
namespace {

using std::chrono::milliseconds;

std::string read_tail(const std::string& path, std::size_t max_bytes = 2000) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  const std::string s = all.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

// The value of a field in a flat [field, value, field, value...] reply.
std::string field(const redkit::ReplyView& entry, std::string_view name) {
  for (std::size_t i = 0; i + 1 < entry.size(); i += 2) {
    if (entry[i].string() == name) return std::string(entry[i + 1].string());
  }
  return {};
}

}  // namespace

/// One sentinel process and its directory (config file, log).
struct SentinelSet::Sentinel {
  Sentinel(const SentinelOptions& options, int master_port)
      : dir(make_temp_dir("sentinel")), owner(::getpid()) {
    for (int attempt = 1;; ++attempt) {
      port = pick_free_port();
      write_config(options, master_port);
      process = std::make_unique<ChildProcess>(
          redis_server_program(), std::vector<std::string>{dir + "/sentinel.conf", "--sentinel"});
      if (answers(options.master_name, milliseconds(10000))) return;
      process.reset();
      const std::string log = read_tail(dir + "/sentinel.log");
      if (attempt < 3 && log.find("Address already in use") != std::string::npos) continue;
      throw std::runtime_error("sentinel on port " + std::to_string(port) + " did not start:\n" + log);
    }
  }
  ~Sentinel() {
    if (::getpid() != owner) return;  // a fork of the test: not ours to stop
    process.reset();                  // SIGKILL and reap
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  void write_config(const SentinelOptions& options, int master_port) const {
    std::ofstream conf(dir + "/sentinel.conf");
    const std::string& name = options.master_name;
    conf << "port " << port << "\n"
         << "bind 127.0.0.1\n"
         << "daemonize no\n"
         << "dir \"" << dir << "\"\n"
         << "logfile \"" << dir << "/sentinel.log\"\n"
         << "sentinel monitor " << name << " 127.0.0.1 " << master_port << " " << options.quorum << "\n"
         << "sentinel down-after-milliseconds " << name << " 1000\n"
         << "sentinel failover-timeout " << name << " 3000\n"
         << "sentinel parallel-syncs " << name << " 1\n";
    if (!conf) throw std::runtime_error("cannot write " + dir + "/sentinel.conf");
  }

  // True once the sentinel answers and names a master.
  bool answers(const std::string& master_name, milliseconds timeout) const {
    return wait_until(
        [&] {
          try {
            return node_command(port, {"SENTINEL", "get-master-addr-by-name", master_name}).is_array();
          } catch (const redkit::Error&) {
            return false;
          }
        },
        timeout, milliseconds(20));
  }

  std::string dir;
  int port = 0;
  pid_t owner;
  std::unique_ptr<ChildProcess> process;
};

SentinelSet::SentinelSet(SentinelOptions options) : options_(std::move(options)) {
  ServerOptions so = options_.server;
  so.extra_args.insert(so.extra_args.end(), {"--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0"});
  servers_.emplace_back(so);
  so.extra_args.insert(so.extra_args.end(), {"--replicaof", "127.0.0.1", std::to_string(servers_[0].port())});
  servers_.emplace_back(so);
  wait_replica_synced(options_.ready_timeout);
  for (int i = 0; i < options_.sentinels; ++i) {
    sentinels_.push_back(std::make_unique<Sentinel>(options_, servers_[0].port()));
    sentinel_ports_.push_back(sentinels_.back()->port);
  }
}

SentinelSet::~SentinelSet() = default;

std::string SentinelSet::uri() const {
  std::string uri = "redis-sentinel://";
  for (std::size_t i = 0; i < sentinel_ports_.size(); ++i) {
    uri += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(sentinel_ports_[i]);
  }
  return uri + "/0#" + options_.master_name;
}

RedisServer& SentinelSet::current_master() {
  for (int port : sentinel_ports_) {
    try {
      redkit::Reply r = node_command(port, {"SENTINEL", "get-master-addr-by-name", options_.master_name});
      if (!r.is_array()) continue;
      const std::string master_port(r[1].string());
      for (auto& s : servers_) {
        if (std::to_string(s.port()) == master_port) return s;
      }
    } catch (const redkit::Error&) {
    }
  }
  throw std::runtime_error("SentinelSet: no sentinel names a known master");
}

RedisServer& SentinelSet::current_replica() {
  RedisServer& master = current_master();
  return &master == &servers_[0] ? servers_[1] : servers_[0];
}

void SentinelSet::swap_roles_without_failover() {
  RedisServer& old_master = current_master();
  RedisServer& new_master = current_replica();
  const std::string port = std::to_string(new_master.port());
  auto expect_ok = [](redkit::Reply r, const std::string& what) {
    if (r.is_error()) throw std::runtime_error("SentinelSet: " + what + ": " + std::string(r.error()));
  };
  // Like a graceful failover: let the replica catch up first. (WAIT would
  // only cover the writes of its own connection.)
  auto offset = [](RedisServer& s, const char* field) {
    const std::string info(node_command(s.port(), {"INFO", "replication"}).string_copy());
    const std::string v = info_field(info, field);
    return v.empty() ? -1LL : std::stoll(v);
  };
  if (!wait_until(
          [&] { return offset(new_master, "slave_repl_offset") >= offset(old_master, "master_repl_offset"); },
          options_.ready_timeout, milliseconds(5))) {
    throw std::runtime_error("SentinelSet: replica did not catch up before the swap");
  }
  expect_ok(node_command(new_master.port(), {"REPLICAOF", "NO", "ONE"}), "REPLICAOF NO ONE");
  expect_ok(node_command(old_master.port(), {"REPLICAOF", "127.0.0.1", port}), "REPLICAOF");
  const std::string& name = options_.master_name;
  for (int sentinel : sentinel_ports_) {
    expect_ok(node_command(sentinel, {"SENTINEL", "REMOVE", name}), "SENTINEL REMOVE");
    expect_ok(node_command(sentinel,
                           {"SENTINEL", "MONITOR", name, "127.0.0.1", port, std::to_string(options_.quorum)}),
              "SENTINEL MONITOR");
    expect_ok(node_command(sentinel, {"SENTINEL", "SET", name, "down-after-milliseconds", "1000",
                                      "failover-timeout", "3000", "parallel-syncs", "1"}),
              "SENTINEL SET");
  }
  wait_replica_synced(options_.ready_timeout);
}

void SentinelSet::wait_replica_synced(milliseconds timeout) {
  const bool ok = wait_until(
      [&] {
        for (auto& s : servers_) {
          if (!s.running()) continue;
          try {
            const std::string info(node_command(s.port(), {"INFO", "replication"}).string_copy());
            if (info_field(info, "role") == "slave" && info_field(info, "master_link_status") != "up")
              return false;
          } catch (const redkit::Error&) {
            return false;
          }
        }
        return true;
      },
      timeout, milliseconds(20));
  if (!ok) {
    throw std::runtime_error("SentinelSet: replica link not up after " + std::to_string(timeout.count()) +
                             " ms\n" + servers_[1].log_tail(10));
  }
}

// What a failover would still lack, or "" when nothing.
std::string SentinelSet::failover_problem() {
  const std::string& name = options_.master_name;
  for (int port : sentinel_ports_) {
    const std::string where = "sentinel " + std::to_string(port) + ": ";
    try {
      redkit::Reply master = node_command(port, {"SENTINEL", "MASTER", name});
      if (master.is_error()) return where + std::string(master.error());
      if (field(master, "flags") != "master") return where + "master flags " + field(master, "flags");

      redkit::Reply replicas = node_command(port, {"SENTINEL", "REPLICAS", name});
      int good = 0;
      for (std::size_t i = 0; i < replicas.size(); ++i) {
        if (field(replicas[i], "flags") == "slave" && field(replicas[i], "master-link-status") == "ok")
          ++good;
      }
      if (good == 0) return where + "sees no healthy replica";

      redkit::Reply others = node_command(port, {"SENTINEL", "SENTINELS", name});
      if (static_cast<int>(others.size()) < options_.sentinels - 1) {
        return where + "sees " + std::to_string(others.size()) + " other sentinels";
      }
    } catch (const redkit::Error& e) {
      return where + e.what();
    }
  }
  return {};
}

void SentinelSet::wait_ready_for_failover(milliseconds timeout) {
  wait_replica_synced(timeout);
  std::string problem;
  if (!wait_until([&] { return (problem = failover_problem()).empty(); }, timeout, milliseconds(50))) {
    throw std::runtime_error("SentinelSet: not ready for a failover after " +
                             std::to_string(timeout.count()) + " ms: " + problem);
  }
}

SentinelSet& shared_sentinel() {
  static SentinelSet set;
  return set;
}

}  // namespace redkit::test
