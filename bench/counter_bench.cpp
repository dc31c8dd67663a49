// The client layer: RedisCounter::incr, a pipeline of 100 INCRBY and one of
// 256 GETs of 100-byte values, each beside raw hiredis sending the same
// commands to the same server in the same run.
//   scripts/bench            (or: taskset -c 1 build/bench/bench/redkit_bench_counter)
#include <stdexcept>
#include <string>
#include <vector>

#include <redkit/redkit.hpp>

#include "bench_common.hpp"
#include "support/server.hpp"

int main(int argc, char** argv) {
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  redkit::test::RedisServer server(so);

  redkit::Options o = redkit::Options::from_uri(server.uri());
  o.pool_size = 1;  // one connection on each side
  redkit::Redis redis(o);
  redkit::RedisCounter<long long> counter(redis, "bench:counter:redkit");
  redkit::bench::RawHiredis raw(server.host(), server.port());

  const std::vector<std::string> raw_incr{"INCR", "bench:counter:raw"};
  auto& pairs = redkit::bench::Pairs::instance();
  pairs.add("counter_incr", [&] { counter.incr(); }, [&] { raw.command(raw_incr); },
            /*ops_per_iteration=*/1, /*iterations=*/20000);

  constexpr int kBatch = 100;
  std::vector<redkit::Command> batch;
  for (int i = 0; i < kBatch; ++i) {
    batch.push_back(redkit::Command{"INCRBY"}.key("bench:batch:redkit:" + std::to_string(i)).arg(1));
  }
  std::vector<std::vector<std::string>> raw_batch;
  for (int i = 0; i < kBatch; ++i) raw_batch.push_back({"INCRBY", "bench:batch:raw:" + std::to_string(i), "1"});
  pairs.add(
      "pipeline_100_incrby",
      [&] {
        for (const auto& r : redis.pipeline(batch)) r.check();
      },
      [&] {
        for (const auto& c : raw_batch) raw.append(c);
        for (int i = 0; i < kBatch; ++i) raw.read_one();
      },
      kBatch, 500);

  constexpr int kGets = 256;
  std::vector<redkit::Command> gets;
  std::vector<std::vector<std::string>> raw_gets;
  const std::string value(100, 'v');
  for (int i = 0; i < kGets; ++i) {
    const std::string key = "bench:get:" + std::to_string(i);
    redis.command(redkit::Command{"SET"}.key(key).arg(value));
    gets.push_back(redkit::Command{"GET"}.key(key));
    raw_gets.push_back({"GET", key});
  }
  pairs.add(
      "pipeline_256_get",
      [&] {
        for (const auto& r : redis.pipeline(gets)) {
          if (r.string().size() != value.size()) throw std::runtime_error("bad GET reply");
        }
      },
      [&] {
        for (const auto& c : raw_gets) raw.append(c);
        for (int i = 0; i < kGets; ++i) raw.read_one();
      },
      kGets, 200);

  return redkit::bench::run_main(argc, argv);
}
