// Built by every consumer project (tests/consumer/programs.cmake) with
// redkit::redkit alone, or `pkg-config redkit`. Runs without a server.
#include <redkit/redkit.hpp>

#include <iostream>

int main() {
  // Parsing a URI needs no server.
  redkit::Options o = redkit::Options::from_uri("redis://127.0.0.1:1/0");
  (void)o;
  std::cout << "redkit " << REDKIT_VERSION << '\n';
  return 0;
}
