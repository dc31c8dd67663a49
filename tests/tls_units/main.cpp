// <redkit/tls.hpp> is included by a.cpp and b.cpp of this program, not
// here: including it in any linked file registers TLS once, before main,
// and two files including it do not clash (ODR). Exits 0 when a rediss://
// client made here works.
#include <cstdio>
#include <exception>

#include <redkit/redis.hpp>

#include "support/tls.hpp"

void enable_tls_again();  // b.cpp

int main() {
  try {
    redkit::test::RedisServer& server = redkit::test::shared_tls_server();
    if (redkit::Redis(server.tls_uri()).command({"PING"}).string_copy() != "PONG") return 1;
    enable_tls_again();  // idempotent
    if (redkit::Redis(server.tls_uri()).command({"ECHO", "again"}).string_copy() != "again") return 1;
    std::puts("TLS registered from other files: ok");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redkit_tls_units: %s\n", e.what());
    return 1;
  }
}
