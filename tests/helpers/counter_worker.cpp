// Child process for the multi-process counter test:
//   redkit_helper_counter_worker <uri> <key> <increments>
// Increments the counter one by one and prints the last value it saw.
#include <cstdlib>
#include <iostream>
#include <string>

#include <redkit/redkit.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " <uri> <key> <increments>\n";
    return 2;
  }
  try {
    redkit::Redis redis(redkit::Options::from_uri(argv[1]));
    redkit::RedisCounter<long long> counter(redis, argv[2]);
    const long n = std::strtol(argv[3], nullptr, 10);
    long long last = 0;
    for (long i = 0; i < n; ++i) last = counter.incr();
    std::cout << last << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "counter_worker: " << e.what() << "\n";
    return 1;
  }
}
