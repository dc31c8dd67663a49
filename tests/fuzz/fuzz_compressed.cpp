// Compressed<> decoding of hostile stored bytes: a whole zstd frame is
// decompressed only when its claimed size is within MaxDecompressed and
// what its blocks can hold; anything else that is not a whole frame goes to
// the inner serializer unchanged; errors are std::invalid_argument. The
// block walk must never refuse a frame that zstd itself decompresses, and
// every value survives serialize -> deserialize.
#include <zstd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include <redkit/compressed.hpp>

namespace {

constexpr std::size_t kLimit = 1 << 20;  // small, so claims near it are reachable
using Plain = redkit::Serializer<std::string>;
using Zipped = redkit::Compressed<Plain, 64, 1, kLimit>;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_compressed: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const bool frame = redkit::detail::is_whole_zstd_frame(bytes);
  const unsigned long long claimed = frame ? ZSTD_getFrameContentSize(bytes.data(), bytes.size()) : 0;

  std::string value;
  bool read = false;
  try {
    value = Zipped::deserialize(bytes);
    read = true;
  } catch (const std::invalid_argument&) {
    if (!frame) fail("refused bytes that are not a whole frame");
  }
  if (read && !frame && value != bytes) fail("bytes that are not a frame were changed");
  if (read && frame && (value.size() != claimed || claimed > kLimit)) fail("decompressed size is not the claim");

  // What zstd makes of a frame within the limit: our checks must not refuse it.
  if (frame && claimed <= kLimit && !read) {
    std::string out(static_cast<std::size_t>(claimed), '\0');
    const std::size_t n = ZSTD_decompress(out.data(), out.size(), bytes.data(), bytes.size());
    if (!ZSTD_isError(n) && n == claimed) fail("refused a frame zstd decompresses");
  }
  if (frame && claimed <= kLimit && claimed > redkit::detail::zstd_frame_capacity(bytes) && read) {
    fail("read a frame that claims more than its blocks hold");
  }

  // Writing: any value up to the limit reads back exactly.
  if (bytes.size() <= kLimit) {
    const std::string stored = Zipped::serialize(std::string(bytes));
    if (Zipped::deserialize(stored) != bytes) fail("a value changed in a round trip");
  }
  return 0;
}
