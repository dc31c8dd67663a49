// Links only redkit::zstd (or `pkg-config redkit-zstd`): <redkit/compressed.hpp>
// and libzstd must come with it. Runs without a server.
#include <redkit/compressed.hpp>
#include <redkit/serializer.hpp>

#include <iostream>
#include <string>

int main() {
  using Packed = redkit::Compressed<redkit::Serializer<std::string>, 64>;
  const std::string value(4096, 'a');
  const std::string stored = Packed::serialize(value);
  const bool is_frame = stored.size() >= 4 && stored.compare(0, 4, "\x28\xB5\x2F\xFD") == 0;
  std::cout << "redkit::zstd: " << value.size() << " bytes stored as a " << stored.size()
            << "-byte zstd frame\n";
  return is_frame && stored.size() < value.size() && Packed::deserialize(stored) == value ? 0 : 1;
}
