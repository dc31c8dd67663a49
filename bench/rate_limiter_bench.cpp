// RedisRateLimiter::allow beside raw hiredis in the same run, against one
// redis-server pinned to CPU 1, one connection each side:
//   1. allow() that is allowed (the script's TIME, GET and SET) vs raw
//      hiredis sending EVALSHA of the same script with the same arguments:
//      what the library adds to one decision;
//   2. the same for a denied decision (TIME and GET, nothing written);
//   3. allow() vs raw hiredis sending EVALSHA of a float GCRA written the
//      usual way (seconds as doubles, state as tostring()): what the exact
//      integer arithmetic costs the server;
// then the server's own count of calls per decision (INFO commandstats,
// which counts the commands a script runs too).
//
//   scripts/bench --benchmark_filter=allow    (or:)
//   taskset -c 1 build/bench/bench/redkit_bench_rate_limiter
#include <hiredis/hiredis.h>

#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <redkit/rate_limiter.hpp>

#include "bench_common.hpp"
#include "support/nodes.hpp"
#include "support/server.hpp"

namespace {

// A GCRA as it is usually written by hand: the time in seconds as a double,
// the TAT stored with tostring() (14 significant digits: 0.1 ms at today's
// epoch), the key's TTL from PX. Same answer shape as redkit's script.
const char* const kFloatGcra = R"lua(
local burst, rate, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local interval = period / rate
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local room = now - (new_tat - burst * interval)
if room < 0 then return {0, 0, math.ceil(-room * 1000), math.ceil((tat - now) * 1000)} end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000))
return {1, math.floor(room / interval), 0, math.ceil((new_tat - now) * 1000)}
)lua";

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

std::string script_load(redisContext* c, const std::string& source) {
  std::unique_ptr<redisReply, ReplyFree> r(
      static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %b", source.data(), source.size())));
  if (!r || r->type != REDIS_REPLY_STRING) throw std::runtime_error("SCRIPT LOAD failed");
  return std::string(r->str, r->len);
}

const char* const kCounted[] = {"evalsha", "eval", "time", "get", "set"};

std::string info(redisContext* c, const char* section) {
  std::unique_ptr<redisReply, ReplyFree> r(static_cast<redisReply*>(redisCommand(c, "INFO %s", section)));
  if (!r || r->type != REDIS_REPLY_STRING) throw std::runtime_error("INFO failed");
  return std::string(r->str, r->len);
}

// commandstats "calls" of each counted command (0 before its first call),
// and total_commands_processed (bench_common's info_number).
std::map<std::string, long long> server_calls(redisContext* c) {
  std::map<std::string, long long> out;
  const std::string commandstats = info(c, "commandstats");
  for (const char* cmd : kCounted) {
    out[cmd] = static_cast<long long>(redkit::bench::info_number(commandstats, std::string("cmdstat_") + cmd));
  }
  out["(total)"] = static_cast<long long>(redkit::bench::info_number(info(c, "stats"), "total_commands_processed"));
  return out;
}

// Runs n decisions through body and prints what the server counted per decision.
template <class Body>
void print_server_calls(const char* what, redisContext* ctl, int n, Body body) {
  const auto before = server_calls(ctl);
  for (int i = 0; i < n; ++i) body();
  auto after = server_calls(ctl);
  std::printf("%-34s", what);
  for (const char* cmd : kCounted) {
    const long long calls = after.at(cmd) - before.at(cmd);
    std::printf(" %s %.2f", cmd, static_cast<double>(calls) / n);
  }
  // The two INFO calls of the measurement itself are not the decisions'.
  std::printf("  total_commands_processed %.2f per decision\n",
              static_cast<double>(after["(total)"] - before.at("(total)") - 2) / n);
}

}  // namespace

int main(int argc, char** argv) {
  redkit::test::ServerOptions so;
  so.cpu_list = "1";  // the server shares CPU 1 with the pinned benchmark
  redkit::test::RedisServer server(so);

  redkit::Options o = redkit::Options::from_uri(server.uri());
  o.pool_size = 1;  // one connection on each side
  redkit::Redis redis(o);
  redkit::bench::RawHiredis raw(server.host(), server.port());
  redisContext* ctl = redisConnect(server.host().c_str(), server.port());
  if (!ctl || ctl->err) throw std::runtime_error("cannot connect");

  // Always allowed: a million per second (1 µs each), a million at once.
  const redkit::RateLimit open{1000000, std::chrono::seconds(1), 1000000};
  // Always denied after the first: one per hour.
  const redkit::RateLimit shut{1, std::chrono::hours(1), 1};
  redkit::RedisRateLimiter<> allowing(redis, "bench:rl:redkit:", open);
  redkit::RedisRateLimiter<> denying(redis, "bench:rl:redkit:", shut);
  if (!denying.allow("shut").allowed) throw std::runtime_error("first request denied");

  const std::string sha = script_load(ctl, redkit::detail::rate_limiter_script().source());
  const std::string float_sha = script_load(ctl, kFloatGcra);
  // The arguments redkit sends: the interval as n/d µs (1/1 here, and
  // 3600000000/1), the burst, the cost.
  const std::vector<std::string> raw_open{"EVALSHA", sha, "1", "bench:rl:raw:open", "1", "1", "1000000", "1"};
  const std::vector<std::string> raw_shut{"EVALSHA", sha, "1", "bench:rl:raw:shut", "3600000000", "1", "1", "1"};
  const std::vector<std::string> raw_float{"EVALSHA", float_sha, "1",       "bench:rl:raw:float",
                                           "1000000", "1000000", "1", "1"};
  raw.command(raw_shut);

  auto& pairs = redkit::bench::Pairs::instance();
  pairs.add(
      "allow_allowed",
      [&] {
        if (!allowing.allow("open").allowed) throw std::runtime_error("denied");
      },
      [&] { raw.command(raw_open); }, 1, 20000);
  pairs.add(
      "allow_denied",
      [&] {
        if (denying.allow("shut").allowed) throw std::runtime_error("allowed");
      },
      [&] { raw.command(raw_shut); }, 1, 20000);
  pairs.add(
      "allow_vs_float_gcra",
      [&] {
        if (!allowing.allow("open").allowed) throw std::runtime_error("denied");
      },
      [&] { raw.command(raw_float); }, 1, 20000);

  std::printf("server calls per decision (INFO commandstats, 2000 decisions each):\n");
  print_server_calls("redkit allow(), allowed", ctl, 2000, [&] { allowing.allow("open"); });
  print_server_calls("redkit allow(), denied", ctl, 2000, [&] { denying.allow("shut"); });
  print_server_calls("raw EVALSHA, same script, allowed", ctl, 2000, [&] { raw.command(raw_open); });
  print_server_calls("raw EVALSHA, float GCRA, allowed", ctl, 2000, [&] { raw.command(raw_float); });
  std::fflush(stdout);

  const int rc = redkit::bench::run_main(argc, argv);
  redisFree(ctl);
  return rc;
}
