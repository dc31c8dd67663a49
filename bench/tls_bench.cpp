// GET of a 100-byte value over TLS beside the same GET over plain TCP, both
// redkit, against one redis-server (a plain and a TLS port) this program
// starts on CPU 1: interleaved rounds, the median of the paired throughput
// ratios (tls / plain) and the client CPU per operation. Also a pipeline of
// 100 GETs each way. Then the server's CPU per GET each way (INFO cpu)
// beside the client's, and, as an outside reference, redis-benchmark
// (one connection, SET then GET of 100 bytes) over both ports of the same
// server, when it is installed.
//
//   scripts/bench --benchmark_filter=tls
//   (or: taskset -c 1 build/bench/bench/redkit_bench_tls)
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <redkit/redis.hpp>
#include <redkit/tls.hpp>

#include "bench_common.hpp"
#include "support/nodes.hpp"
#include "support/server.hpp"
#include "support/tls.hpp"

namespace {

// requests per second of the GET line of redis-benchmark --csv, or 0.
double redis_benchmark_get_rps(const std::vector<std::string>& args) {
  try {
    redkit::test::ChildProcess p("redis-benchmark", args);
    if (p.wait(std::chrono::seconds(120)) != 0) return 0;
    std::istringstream lines(p.output());
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("\"GET\",\"", 0) == 0) return std::stod(line.substr(7));
    }
  } catch (const std::exception& e) {
    std::printf("redis-benchmark: %s\n", e.what());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  redkit::test::TestCertificates certs;
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  so.tls = certs.server();
  redkit::test::RedisServer server(so);

  redkit::Options plain_options = redkit::Options::from_uri(server.uri());
  redkit::Options tls_options = redkit::Options::from_uri(server.tls_uri());
  plain_options.pool_size = tls_options.pool_size = 1;  // one connection on each side
  redkit::Redis plain(plain_options);
  redkit::Redis tls(tls_options);

  const std::string value(100, 'v');
  plain.command(redkit::Command{"SET"}.key("bench:tls:value").arg(value));
  const redkit::Command get = redkit::Command{"GET"}.key("bench:tls:value");
  auto get_one = [&get](redkit::Redis& r) {
    if (r.command(get).string_copy().size() != 100) throw std::runtime_error("tls bench: wrong value");
  };
  constexpr int kBatch = 100;
  const std::vector<redkit::Command> batch(kBatch, get);
  auto get_batch = [&batch](redkit::Redis& r) {
    for (const auto& reply : r.pipeline(batch)) {
      if (reply.string().size() != 100) throw std::runtime_error("tls bench: wrong value");
    }
  };

  auto& pairs = redkit::bench::Pairs::instance();
  const redkit::bench::Sides sides{"tls", "plain"};
  pairs.add(
      "tls_get_100b", [&] { get_one(tls); }, [&] { get_one(plain); }, /*ops_per_iteration=*/1,
      /*iterations=*/20000, /*rounds=*/10, sides);
  pairs.add(
      "tls_pipeline_100_get", [&] { get_batch(tls); }, [&] { get_batch(plain); }, kBatch, 500, 10, sides);

  const int rc = redkit::bench::run_main(argc, argv);

  // Where the time goes: the server's CPU per GET each way (INFO cpu, read
  // over the plain port before and after 20,000 GETs), beside the client's.
  auto server_cpu_seconds = [&server] {
    const std::string info = server.cli("INFO", "cpu");
    return redkit::bench::info_number(info, "used_cpu_sys") + redkit::bench::info_number(info, "used_cpu_user");
  };
  for (auto* side : {&tls, &plain}) {
    constexpr int kOps = 20000;
    const double server0 = server_cpu_seconds();
    const double client0 = redkit::bench::cpu_seconds();
    for (int i = 0; i < kOps; ++i) get_one(*side);
    const double client_us = (redkit::bench::cpu_seconds() - client0) / kOps * 1e6;
    const double server_us = (server_cpu_seconds() - server0) / kOps * 1e6;
    std::printf("GET 100 B over %-5s: client CPU %.2f us/op, server CPU %.2f us/op (one run of %d)\n",
                side == &tls ? "TLS" : "plain", client_us, server_us, kOps);
  }

  // redis-benchmark: same server, one connection, no pipelining.
  const std::string host = server.host();
  const std::vector<std::string> common = {"-h", host, "-t", "set,get", "-d", "100", "-n", "100000",
                                           "-c", "1", "--csv"};
  std::vector<std::string> plain_args = common;
  plain_args.insert(plain_args.end(), {"-p", std::to_string(server.port())});
  std::vector<std::string> tls_args = common;
  tls_args.insert(tls_args.end(), {"-p", std::to_string(server.tls_port()), "--tls", "--cacert", certs.ca_file()});
  const double rb_plain = redis_benchmark_get_rps(plain_args);
  const double rb_tls = redis_benchmark_get_rps(tls_args);
  if (rb_plain > 0 && rb_tls > 0) {
    std::printf("redis-benchmark -c 1 -d 100 GET: tls %.0f/s, plain %.0f/s, ratio %.3fx (outside reference, one run)\n",
                rb_tls, rb_plain, rb_tls / rb_plain);
  } else {
    std::printf("redis-benchmark: not run (not installed or failed)\n");
  }
  return rc;
}
