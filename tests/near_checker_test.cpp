// The near cache under load, checked from the outside: writers (a redkit
// RedisCache and a raw hiredis connection) write increasing versions of a
// few keys, in bursts with quiet spells between; reader processes
// (tests/helpers/near_reader.cpp) read them through near caches of
// different sizes and ages and log every read with its start and end time
// (CLOCK_MONOTONIC, shared by every process). Faults come in the middle:
// CLIENT KILL of the invalidation connections, FLUSHALL, a server restart,
// a Cluster reshard of the keys' slot, a Sentinel failover.
//
// Asserted for every read:
//  - fresh enough: its version is no older than the last write acknowledged
//    before the read started minus the window W (writes a data-loss event
//    may have wiped are left out: FLUSHALL, restart, failover);
//  - never back in time within one process: a read that starts after
//    another one ended returns a version at least as new (outside data-loss
//    events);
//  - never from the future: no version that was not yet being written.
// A copy wrongly kept after its invalidation would stay through a quiet
// spell (several W long) and break the first rule. The staleness actually
// seen (how long after the newer version's acknowledgement a read still
// returned the older one) is printed as "[near-checker] ...".
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <redkit/cache.hpp>
#include <redkit/cluster.hpp>

#include "support/cluster.hpp"
#include "support/nodes.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::test::ChildProcess;
using redkit::test::RedisServer;
using Clock = std::chrono::steady_clock;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::chrono::milliseconds kWindow{500};  // sanitizers slow every thread down
#else
constexpr std::chrono::milliseconds kWindow{100};
#endif
constexpr int kKeys = 6;

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}
long long ms_ns(std::chrono::milliseconds d) { return d.count() * 1000000LL; }

struct Write {
  long long version;
  long long sent;
  long long acked;  // -1: the outcome is unknown (an error after sending)
};

// An interval in which acknowledged writes may be lost (FLUSHALL, restart,
// failover).
struct Loss {
  long long begin;
  long long end;
};

struct Read {
  int process;
  int key;
  long long version;
  long long start;
  long long end;
};

// What the writers did, per key. Thread-safe.
class History {
 public:
  History() : writes_(kKeys) {}
  void add(int key, const Write& w) {
    std::lock_guard<std::mutex> lk(m_);
    writes_[static_cast<std::size_t>(key)].push_back(w);
  }
  void loss(long long begin, long long end) {
    std::lock_guard<std::mutex> lk(m_);
    losses_.push_back({begin, end});
  }
  std::vector<std::vector<Write>> writes() {
    std::lock_guard<std::mutex> lk(m_);
    return writes_;
  }
  std::vector<Loss> losses() {
    std::lock_guard<std::mutex> lk(m_);
    return losses_;
  }

 private:
  std::mutex m_;
  std::vector<std::vector<Write>> writes_;
  std::vector<Loss> losses_;
};

// Writes versions 1, 2, 3 ... of its keys through set(key, version), in
// bursts of 1 to 4 with quiet spells of up to 4 W between, until stop.
// set may throw (a fault): that write's outcome is unknown.
void write_loop(History& history, std::vector<int> keys, const std::function<void(int, long long)>& set,
                std::atomic<bool>& stop, unsigned seed, std::atomic<long long>& acked) {
  std::mt19937 rng(seed);
  std::vector<long long> version(kKeys, 0);
  while (!stop) {
    const int key = keys[rng() % keys.size()];
    const int burst = 1 + static_cast<int>(rng() % 4);
    for (int b = 0; b < burst && !stop; ++b) {
      const long long v = ++version[static_cast<std::size_t>(key)];
      const long long sent = now_ns();
      try {
        set(key, v);
        history.add(key, {v, sent, now_ns()});
        ++acked;
      } catch (const std::exception&) {
        history.add(key, {v, sent, -1});
        std::this_thread::sleep_for(5ms);  // a fault is on
      }
    }
    // Load shape, not synchronisation: quiet spells are what makes a copy
    // wrongly kept after its invalidation stand out.
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % (4 * kWindow.count())));
  }
}

// A raw hiredis connection that follows its key to whichever node serves
// it (MOVED, ASK, READONLY, I/O errors: it asks `where` again).
class RawWriter {
 public:
  explicit RawWriter(std::function<int()> where) : where_(std::move(where)) {}
  ~RawWriter() {
    if (c_) redisFree(c_);
  }
  // SET key value PX 60000; throws when the outcome is not OK.
  void set(const std::string& key, const std::string& value) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      if (!c_) connect(where_());
      const char* argv[] = {"SET", key.c_str(), value.c_str(), "PX", "60000"};
      auto* r = static_cast<redisReply*>(redisCommandArgv(c_, 5, argv, nullptr));
      if (!r) {
        reset();
        throw std::runtime_error("raw writer: I/O error");  // it may have been written
      }
      const std::string err = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "";
      freeReplyObject(r);
      if (err.empty()) return;
      if (err.rfind("MOVED", 0) == 0 || err.rfind("READONLY", 0) == 0) {  // not written: go where it lives
        reset();
        if (err[0] == 'M') connect(std::stoi(err.substr(err.rfind(':') + 1)));
        continue;
      }
      if (err.rfind("ASK", 0) == 0) {  // not written: once on the importing node
        redisContext* there = redisConnect("127.0.0.1", std::stoi(err.substr(err.rfind(':') + 1)));
        if (there && !there->err) {
          freeReplyObject(redisCommand(there, "ASKING"));
          auto* again = static_cast<redisReply*>(redisCommandArgv(there, 5, argv, nullptr));
          const bool ok = again && again->type != REDIS_REPLY_ERROR;
          if (again) freeReplyObject(again);
          redisFree(there);
          if (ok) return;
        } else if (there) {
          redisFree(there);
        }
        throw std::runtime_error("raw writer: ASK failed");
      }
      throw std::runtime_error("raw writer: " + err);
    }
    throw std::runtime_error("raw writer: too many redirects");
  }

 private:
  void connect(int port) {
    reset();
    timeval tv{1, 0};
    c_ = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c_ || c_->err) {
      reset();
      throw std::runtime_error("raw writer: cannot connect");
    }
    redisSetTimeout(c_, tv);
  }
  void reset() {
    if (c_) redisFree(c_);
    c_ = nullptr;
  }
  std::function<int()> where_;
  redisContext* c_ = nullptr;
};

struct ReaderSpec {
  std::size_t max_entries;
  long long max_age_ms;
};

// Runs the readers (one process per spec, two threads each) and the two
// writers for duration; faults() runs on this thread meanwhile (it gets the
// start time and may record losses). Then checks every read.
template <class Client>
void check(const std::string& kind, const std::string& uri, const std::string& prefix, Client client,
           std::function<int(int)> raw_port_for_key, std::chrono::milliseconds duration,
           const std::function<void(Clock::time_point, History&)>& faults) {
  const std::vector<ReaderSpec> specs{{1000, 30000}, {3, 30000}, {1000, 300}};
  const std::string dir = redkit::test::make_temp_dir("near-checker");
  std::vector<std::unique_ptr<ChildProcess>> readers;
  for (std::size_t p = 0; p < specs.size(); ++p) {
    readers.push_back(std::make_unique<ChildProcess>(
        redkit::test::helper_path("near_reader"),
        std::vector<std::string>{kind, uri, prefix, std::to_string(kKeys), std::to_string(duration.count()), "2",
                                 std::to_string(specs[p].max_entries), std::to_string(specs[p].max_age_ms),
                                 dir + "/reads" + std::to_string(p)}));
  }

  History history;
  std::atomic<bool> stop{false};
  std::atomic<long long> acked{0};
  redkit::RedisCache<long long, redkit::Serializer<long long>, Client> cache(client, prefix);
  auto name = [&](int k) { return "k" + std::to_string(k); };
  std::thread redkit_writer([&] {
    write_loop(history, {0, 1, 2}, [&](int k, long long v) { cache.set(name(k), v, 60s); }, stop, 1, acked);
  });
  std::thread raw_writer([&] {
    RawWriter raw([&] { return raw_port_for_key(3); });
    write_loop(history, {3, 4, 5}, [&](int k, long long v) { raw.set(prefix + name(k), std::to_string(v)); }, stop,
               2, acked);
  });
  const auto t0 = Clock::now();
  faults(t0, history);
  std::this_thread::sleep_until(t0 + duration);  // the run's length, not a wait for a condition
  stop = true;
  redkit_writer.join();
  raw_writer.join();

  std::vector<Read> reads;
  for (std::size_t p = 0; p < readers.size(); ++p) {
    ASSERT_EQ(readers[p]->wait(duration + 120s), 0) << "reader " << p << ": " << readers[p]->output();
    std::printf("[near-checker] %s reader %zu (max_entries %zu, max_age %lld ms): %s", kind.c_str(), p,
                specs[p].max_entries, specs[p].max_age_ms, readers[p]->output().c_str());
    std::ifstream in(dir + "/reads" + std::to_string(p));
    Read r{static_cast<int>(p), 0, 0, 0, 0};
    while (in >> r.key >> r.version >> r.start >> r.end) {
      ASSERT_TRUE(r.key >= 0 && r.key < kKeys);
      reads.push_back(r);
    }
  }
  const auto writes = history.writes();
  const auto losses = history.losses();
  ASSERT_GT(acked.load(), 20) << "the writers barely wrote";
  ASSERT_GT(reads.size(), 1000u) << "the readers barely read";

  // The newest data-loss event that may touch a read ending at end.
  auto loss_horizon = [&](long long end) {
    long long h = -1;
    for (const Loss& l : losses) {
      if (l.begin < end) h = std::max(h, l.end);
    }
    return h;
  };
  auto in_loss = [&](long long from, long long to) {
    for (const Loss& l : losses) {
      if (l.begin < to && l.end > from) return true;
    }
    return false;
  };

  std::vector<double> staleness_ms;
  long long too_stale = 0, back_in_time = 0, from_future = 0;
  std::string first_problem;
  auto problem = [&](const std::string& what) {
    if (first_problem.empty()) first_problem = what;
  };
  for (const Read& r : reads) {
    const auto& ws = writes[static_cast<std::size_t>(r.key)];
    // Fresh enough.
    const long long horizon = loss_horizon(r.end);
    const long long bound = r.start - ms_ns(kWindow);
    long long required = -1;
    long long newest_acked_before_start = -1;
    long long newest_ack_time = 0;
    for (const Write& w : ws) {
      if (w.acked < 0 || w.acked <= horizon) continue;
      if (w.acked <= bound) required = std::max(required, w.version);
      if (w.acked <= r.start && w.version > newest_acked_before_start) {
        newest_acked_before_start = w.version;
        newest_ack_time = w.acked;
      }
    }
    if (r.version < required) {
      ++too_stale;
      problem("process " + std::to_string(r.process) + " read k" + std::to_string(r.key) + " = " +
              std::to_string(r.version) + " but version " + std::to_string(required) +
              " was acknowledged more than W before the read started");
    }
    if (r.version < newest_acked_before_start) {
      // Stale but allowed: how long after the newer one's acknowledgement.
      long long first_newer_ack = newest_ack_time;
      for (const Write& w : ws) {
        if (w.acked > horizon && w.acked <= r.start && w.version > r.version) {
          first_newer_ack = std::min(first_newer_ack, w.acked);
        }
      }
      staleness_ms.push_back(static_cast<double>(r.start - first_newer_ack) / 1e6);
    }
    // Not from the future.
    if (r.version > 0) {
      bool begun = false;
      for (const Write& w : ws) begun = begun || (w.version == r.version && w.sent < r.end);
      if (!begun) {
        ++from_future;
        problem("process " + std::to_string(r.process) + " read k" + std::to_string(r.key) + " = " +
                std::to_string(r.version) + " before anyone wrote it");
      }
    }
  }
  // Never back in time within a process (reads ordered by start; the
  // newest version among reads that ended before this one started).
  for (std::size_t p = 0; p < specs.size(); ++p) {
    for (int k = 0; k < kKeys; ++k) {
      std::vector<const Read*> mine;
      for (const Read& r : reads) {
        if (r.process == static_cast<int>(p) && r.key == k) mine.push_back(&r);
      }
      std::sort(mine.begin(), mine.end(), [](const Read* a, const Read* b) { return a->start < b->start; });
      std::vector<const Read*> by_end = mine;
      std::sort(by_end.begin(), by_end.end(), [](const Read* a, const Read* b) { return a->end < b->end; });
      std::size_t ended = 0;
      const Read* newest = nullptr;
      for (const Read* r : mine) {
        while (ended < by_end.size() && by_end[ended]->end < r->start) {
          if (!newest || by_end[ended]->version > newest->version) newest = by_end[ended];
          ++ended;
        }
        if (newest && r->version < newest->version && !in_loss(newest->start, r->end)) {
          ++back_in_time;
          problem("process " + std::to_string(p) + " read k" + std::to_string(k) + " = " +
                  std::to_string(r->version) + " after it had returned " + std::to_string(newest->version));
        }
      }
    }
  }
  std::sort(staleness_ms.begin(), staleness_ms.end());
  auto pct = [&](double q) {
    return staleness_ms.empty() ? 0.0 : staleness_ms[static_cast<std::size_t>(q * (staleness_ms.size() - 1))];
  };
  std::printf(
      "[near-checker] %s: %zu reads, %lld writes acknowledged, %zu data-loss events; %zu reads older than the "
      "newest acknowledged version, stale for p50 %.2f ms, p99 %.2f ms, max %.2f ms (W = %lld ms)\n",
      kind.c_str(), reads.size(), acked.load(), losses.size(), staleness_ms.size(), pct(0.5), pct(0.99), pct(1.0),
      static_cast<long long>(kWindow.count()));
  std::fflush(stdout);
  EXPECT_EQ(too_stale, 0) << first_problem;
  EXPECT_EQ(back_in_time, 0) << first_problem;
  EXPECT_EQ(from_future, 0) << first_problem;
}

// The ids of near cache invalidation connections on node (tracking and
// subscribed: CLIENT LIST flags t and P).
std::vector<std::string> tracking_ids(int port) {
  std::vector<std::string> ids;
  const redkit::Reply reply = redkit::test::node_command(port, {"CLIENT", "LIST"});
  const std::string list(reply.string());
  std::istringstream lines(list);
  for (std::string line; std::getline(lines, line);) {
    const auto flags = line.find(" flags=");
    if (flags == std::string::npos) continue;
    const std::string f = line.substr(flags + 7, line.find(' ', flags + 7) - flags - 7);
    if (f.find('t') != std::string::npos && f.find('P') != std::string::npos) {
      ids.push_back(line.substr(3, line.find(' ') - 3));
    }
  }
  return ids;
}

std::size_t kill_tracking(int port) {
  std::size_t n = 0;
  for (const std::string& id : tracking_ids(port)) {
    if (redkit::test::node_command(port, {"CLIENT", "KILL", "ID", id}).is_integer()) ++n;
  }
  return n;
}

}  // namespace

TEST(NearChecker, RedisReadsStayFreshThroughKilledInvalidationConnectionsFlushAllAndARestart) {
  RedisServer server;
  const std::string prefix = redkit::test::unique_prefix() + "chk:";
  check<redkit::Redis>(
      "redis", server.uri(), prefix, redkit::Redis(server.uri()), [&](int) { return server.port(); }, 12s,
      [&](Clock::time_point t0, History& history) {
        std::this_thread::sleep_until(t0 + 3s);  // the schedule of the faults
        EXPECT_GE(kill_tracking(server.port()), 3u);  // one per reader process
        std::this_thread::sleep_until(t0 + 6s);
        const long long b = now_ns();
        EXPECT_EQ(server.cli("FLUSHALL"), "OK");
        // A write the server ran just before the flush may be acknowledged
        // to its writer thread a little after the flush's own reply.
        history.loss(b, now_ns() + ms_ns(kWindow));
        std::this_thread::sleep_until(t0 + 8s);
        const long long r = now_ns();
        server.restart();
        history.loss(r, now_ns() + ms_ns(kWindow));
      });
}

TEST(NearChecker, ClusterReadsStayFreshThroughAReshardOfTheirSlot) {
  auto& cluster = redkit::test::shared_cluster();
  cluster.wait_healthy();
  // Every key in one slot (hash tag), which moves to another master and back.
  const std::string prefix = "{" + redkit::test::unique_prefix() + "chk}:";
  const int slot = redkit::hash_slot(prefix);
  std::atomic<int> owner_port{cluster.master_of(slot).port()};
  check<redkit::Cluster>(
      "cluster", cluster.seed_uri(), prefix, redkit::Cluster(cluster.seed_uri()), [&](int) { return owner_port.load(); },
      14s, [&](Clock::time_point t0, History&) {
        std::this_thread::sleep_until(t0 + 3s);
        RedisServer& from = cluster.master_of(slot);
        RedisServer* to = nullptr;
        for (RedisServer* m : cluster.masters()) {
          if (m != &from) to = m;
        }
        ASSERT_NE(to, nullptr);
        cluster.move_slot(slot, *to);
        owner_port = to->port();
        std::this_thread::sleep_until(t0 + 6s);
        for (RedisServer* m : cluster.masters()) kill_tracking(m->port());
        std::this_thread::sleep_until(t0 + 9s);
        cluster.move_slot(slot, from);
        owner_port = from.port();
      });
}

TEST(NearChecker, SentinelReadsStayFreshThroughAFailover) {
  auto& set = redkit::test::shared_sentinel();
  set.wait_ready_for_failover();
  const std::string prefix = redkit::test::unique_prefix() + "chk:";
  check<redkit::Redis>(
      "sentinel", set.uri(), prefix, redkit::Redis(set.uri()), [&](int) { return set.current_master().port(); }, 14s,
      [&](Clock::time_point t0, History& history) {
        std::this_thread::sleep_until(t0 + 4s);
        RedisServer& old_master = set.current_master();
        const long long b = now_ns();
        const redkit::Reply r = redkit::test::node_command(set.sentinel_ports()[0],
                                                   {"SENTINEL", "FAILOVER", set.master_name()});
        EXPECT_TRUE(r.ok()) << (r.is_error() ? std::string(r.error()) : std::string());
        // Over when the sentinels name the other server and it takes writes.
        redkit::Redis probe(set.uri());
        EXPECT_TRUE(redkit::test::wait_until(
            [&] {
              try {
                if (&set.current_master() == &old_master) return false;
                probe.command(Command{"SET"}.key("{probe}").arg("1"));
                return true;
              } catch (const redkit::Error&) {
                return false;
              }
            },
            20s, 20ms));
        history.loss(b, now_ns() + ms_ns(1000ms));  // replicas catch up just after
      });
}
