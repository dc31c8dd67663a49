// Measures how much a 100 MiB SET adds to the client's peak memory
// (ru_maxrss), for one way of sending it, in a process of its own so that
// earlier peaks do not hide it:
//   redkit_helper_big_set URI MODE   (MODE: arg_view | arg_copy | cache_set)
//   redkit_helper_big_set_tls ...    the same, built with <redkit/tls.hpp> (rediss://)
// Prints "MODE_extra_mib=X" (the peak's growth during the SET, in MiB).
#include <sys/resource.h>

#include <cstdio>
#include <string>

#include <redkit/cache.hpp>
#include <redkit/redis.hpp>
#ifdef REDKIT_TEST_TLS
#include <redkit/tls.hpp>
#endif

namespace {
double peak_mib() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string mode = argv[2];
  redkit::Options o = redkit::Options::from_uri(argv[1]);
  o.command_timeout = std::chrono::seconds(60);
  redkit::Redis redis(o);
  redis.command({"PING"});
  std::string value(100u << 20, '\0');
  for (std::size_t i = 0; i < value.size(); i += 4096) value[i] = static_cast<char>(i / 4096 + 1);
  const std::string key = "big-set:" + mode;
  const double before = peak_mib();
  if (mode == "arg_view") {
    redis.command(redkit::Command{"SET"}.key(key).arg_view(value));
  } else if (mode == "arg_copy") {
    redis.command(redkit::Command{"SET"}.key(key).arg(value));
  } else if (mode == "cache_set") {
    redkit::RedisCache<std::string> cache(redis, "big-set:");
    cache.set("cache", value, std::chrono::seconds(60));
  } else {
    return 2;
  }
  const double after = peak_mib();
  redis.command(redkit::Command{"DEL"}.key(key).key("big-set:cache"));
  std::printf("%s_extra_mib=%.1f\n", mode.c_str(), after - before);
  return 0;
}
