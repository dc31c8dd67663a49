// redkit::Cluster beside raw hiredis that sends the same commands straight
// to the right master, against one 3-master, 3-replica cluster started here
// with every node on CPU 1:
//   - counter_incr: RedisCounter<long long, Cluster>::incr vs INCR on a raw
//     connection to the key's master;
//   - get_many_1000: 1,000 GETs over keys in 1,000 slots, one Cluster::pipeline
//     vs raw hiredis writing each master's share to its own connection
//     before reading any reply. Before the rounds it checks, from the
//     masters' INFO stats, how many round trips one call takes (one per
//     master: each master sees one read of one batch).
//   scripts/bench --benchmark_filter=cluster
//   (or: taskset -c 1 build/bench/bench/redkit_bench_cluster)
#include <hiredis/hiredis.h>

#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <redkit/cluster.hpp>
#include <redkit/counter.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "support/cluster.hpp"
#include "support/nodes.hpp"

namespace {

// A raw hiredis connection that can queue commands and flush them without
// reading, so the raw side also writes to every master before reading.
class RawNode {
 public:
  RawNode(const std::string& host, int port) : c_(redisConnect(host.c_str(), port)) {
    if (!c_ || c_->err) throw std::runtime_error("raw hiredis: cannot connect");
  }
  ~RawNode() { redisFree(c_); }
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  void append_get(const std::string& key) {
    const char* argv[2] = {"GET", key.data()};
    const size_t lens[2] = {3, key.size()};
    redisAppendCommandArgv(c_, 2, argv, lens);
  }
  void flush() {
    int done = 0;
    while (!done) {
      if (redisBufferWrite(c_, &done) != REDIS_OK) throw std::runtime_error("raw hiredis: write failed");
    }
  }
  void read_one() {
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || !r) throw std::runtime_error("raw hiredis: I/O error");
    const bool err = static_cast<redisReply*>(r)->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (err) throw std::runtime_error("raw hiredis: error reply");
  }

 private:
  redisContext* c_;
};

long long stat(int port, const char* field) {
  const std::string info(redkit::test::node_command(port, {"INFO", "stats"}).string_copy());
  return static_cast<long long>(redkit::bench::info_number(info, field));
}

// What each master's INFO stats counted (read events, commands) while
// work() ran, less what the stats queries themselves add (measured by a
// run with no work).
std::map<int, std::pair<long long, long long>> server_counts(
    const std::vector<redkit::test::RedisServer*>& masters, const std::function<void()>& work) {
  auto measure = [&](const std::function<void()>& f) {
    std::map<int, std::pair<long long, long long>> before, delta;
    for (auto* m : masters) {
      before[m->port()] = {stat(m->port(), "total_reads_processed"),
                           stat(m->port(), "total_commands_processed")};
    }
    f();
    for (auto* m : masters) {
      delta[m->port()] = {stat(m->port(), "total_reads_processed") - before[m->port()].first,
                          stat(m->port(), "total_commands_processed") - before[m->port()].second};
    }
    return delta;
  };
  auto idle = measure([] {});
  auto busy = measure(work);
  for (auto& [port, counts] : busy) {
    counts.first -= idle[port].first;
    counts.second -= idle[port].second;
  }
  return busy;
}

// Runs one pipeline and prints what each master saw.
void report_round_trips(redkit::Cluster& client, const std::vector<redkit::Command>& gets,
                        const std::vector<redkit::test::RedisServer*>& masters) {
  const auto counts = server_counts(masters, [&] { client.pipeline(gets); });
  std::printf("get_many_1000: one Cluster::pipeline of %zu GETs over %zu masters:\n", gets.size(),
              masters.size());
  int round_trips = 0;
  for (const auto& [port, c] : counts) {
    std::printf("  master %d: %lld read event(s), %lld commands\n", port, c.first, c.second);
    if (c.second > 0) ++round_trips;  // each master's share is written once, then read back
  }
  std::printf("  round trips (masters that got a batch): %d\n\n", round_trips);
}

}  // namespace

int main(int argc, char** argv) {
  redkit::test::ClusterOptions co;
  co.server.cpu_list = "1";  // every node shares CPU 1 with the pinned benchmark
  redkit::test::RedisCluster cluster(co);

  redkit::Options o = redkit::Options::from_uri(cluster.seed_uri());
  o.pool_size = 1;  // one connection per node on each side
  redkit::Cluster client(o);
  auto& pairs = redkit::bench::Pairs::instance();

  // Both counters on one master (one hash tag), so both sides do the same work.
  const std::string redkit_key = "{bench}:counter:redkit";
  const std::string raw_key = "{bench}:counter:raw";
  redkit::RedisCounter<long long, redkit::Cluster> counter(client, redkit_key);
  redkit::test::RedisServer& owner = cluster.master_of(redkit::hash_slot(raw_key));
  redkit::bench::RawHiredis raw(owner.host(), owner.port());
  const std::vector<std::string> raw_incr{"INCR", raw_key};
  counter.incr();  // the slot map is loaded before the rounds
  pairs.add(
      "cluster_counter_incr", [&] { counter.incr(); }, [&] { raw.command(raw_incr); },
      /*ops_per_iteration=*/1, /*iterations=*/20000);

  // 1,000 keys, each in its own slot, spread over the three masters.
  constexpr int kKeys = 1000;
  std::vector<std::string> keys;
  for (int n = 0; static_cast<int>(keys.size()) < kKeys; ++n) {
    std::string key = "bench:many:" + std::to_string(n);
    if (redkit::hash_slot(key) % 16 == 0) keys.push_back(std::move(key));  // 1,000 distinct-ish slots
  }
  std::vector<redkit::Command> sets;
  std::vector<redkit::Command> gets;
  for (const auto& key : keys) {
    sets.push_back(redkit::Command{"SET"}.key(key).arg("value"));
    gets.push_back(redkit::Command{"GET"}.key(key));
  }
  for (const auto& r : client.pipeline(sets)) r.check();

  const auto masters = cluster.masters();
  std::map<int, std::unique_ptr<RawNode>> raw_nodes;  // by port
  std::vector<RawNode*> raw_route;                    // key i -> its master
  for (auto* m : masters) raw_nodes[m->port()] = std::make_unique<RawNode>(m->host(), m->port());
  for (const auto& key : keys) {
    raw_route.push_back(raw_nodes.at(cluster.master_of(redkit::hash_slot(key)).port()).get());
  }
  report_round_trips(client, gets, masters);

  pairs.add(
      "cluster_get_many_1000",
      [&] {
        for (const auto& r : client.pipeline(gets)) r.check();
      },
      [&] {
        for (std::size_t i = 0; i < keys.size(); ++i) raw_route[i]->append_get(keys[i]);
        for (auto& node : raw_nodes) node.second->flush();  // every master before any reply
        for (auto* node : raw_route) node->read_one();
      },
      kKeys, 200);

  return redkit::bench::run_main(argc, argv);
}
