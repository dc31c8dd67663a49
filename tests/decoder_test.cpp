// The decoders that read untrusted stored bytes, without a server: the
// bounds Compressed<> and JsonSerializer put on what a hostile value may
// cost. (Through RedisCache, as DecodeError: torture_test.cpp.)
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>

#include <redkit/serializer.hpp>
#ifdef REDKIT_HAVE_JSON
#include <redkit/json.hpp>
#endif
#ifdef REDKIT_HAVE_ZSTD
#include <redkit/compressed.hpp>
#endif

// The largest single allocation made through operator new while tracking
// is on, so a test can show that a claim in a header was never allocated.
namespace {
std::atomic<bool> g_tracking{false};
std::atomic<std::size_t> g_largest{0};

void* tracked_alloc(std::size_t n) {
  if (g_tracking.load(std::memory_order_relaxed)) {
    std::size_t seen = g_largest.load(std::memory_order_relaxed);
    while (n > seen && !g_largest.compare_exchange_weak(seen, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}

// Runs f with tracking on; returns the largest allocation it made.
template <class F>
std::size_t largest_allocation(F&& f) {
  g_largest = 0;
  g_tracking = true;
  try {
    f();
  } catch (...) {
    g_tracking = false;
    throw;
  }
  g_tracking = false;
  return g_largest.load();
}
}  // namespace

void* operator new(std::size_t n) { return tracked_alloc(n); }
void* operator new[](std::size_t n) { return tracked_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

#ifdef REDKIT_HAVE_ZSTD

namespace {

using Plain = redkit::Serializer<std::string>;
using Zipped = redkit::Compressed<Plain>;

// A hand-made zstd frame (RFC 8878): single segment, an 8-byte content size
// of `claimed`, no checksum, then `rle_blocks` RLE blocks of 128 KiB of 'x'.
// Structurally whole, so it reaches the decompressor; it holds far less
// than it claims. Three blocks make it 25 bytes.
std::string claiming_frame(unsigned long long claimed, int rle_blocks = 3) {
  std::string f(redkit::detail::kZstdMagic);
  f.push_back(static_cast<char>(0xE0));  // content size: 8 bytes; single segment
  for (int i = 0; i < 8; ++i) f.push_back(static_cast<char>((claimed >> (8 * i)) & 0xff));
  for (int b = 0; b < rle_blocks; ++b) {
    const unsigned header = (b + 1 == rle_blocks ? 1u : 0u) | (1u << 1) | (128u * 1024u << 3);
    f.push_back(static_cast<char>(header & 0xff));
    f.push_back(static_cast<char>((header >> 8) & 0xff));
    f.push_back(static_cast<char>((header >> 16) & 0xff));
    f.push_back('x');
  }
  return f;
}

std::string message_of(const std::string& bytes) {
  try {
    Zipped::deserialize(bytes);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(DecoderCompressed, A25ByteFrameClaimingTerabytesIsRefusedWithoutAllocatingTheClaim) {
  const std::string frame = claiming_frame(1ULL << 40);
  ASSERT_EQ(frame.size(), 25u);
  ASSERT_TRUE(redkit::detail::is_whole_zstd_frame(frame));  // so the size check is what stops it
  std::string what;
  const std::size_t largest = largest_allocation([&] { what = message_of(frame); });
  EXPECT_NE(what.find("claims 1099511627776 bytes, above the limit of 67108864"), std::string::npos) << what;
  EXPECT_LT(largest, std::size_t{1} << 20);
}

TEST(DecoderCompressed, AClaimUnderTheLimitThatItsBlocksCannotHoldIsRefusedWithoutAllocatingIt) {
  const std::string frame = claiming_frame(60ULL << 20);  // 60 MiB claimed, 384 KiB held
  ASSERT_TRUE(redkit::detail::is_whole_zstd_frame(frame));
  std::string what;
  const std::size_t largest = largest_allocation([&] { what = message_of(frame); });
  EXPECT_NE(what.find("corrupt zstd frame: it claims 62914560 bytes but its blocks hold at most 393216"),
            std::string::npos)
      << what;
  EXPECT_LT(largest, std::size_t{1} << 20);
}

TEST(DecoderCompressed, AnHonestHandMadeFrameStillDecompresses) {
  const std::string frame = claiming_frame(3 * 128 * 1024);
  EXPECT_EQ(Zipped::deserialize(frame), std::string(3 * 128 * 1024, 'x'));
}

TEST(DecoderCompressed, BlockCapacityCoversEveryFrameZstdWrites) {
  std::mt19937 rng(7);
  std::string random(3 << 20, '\0');
  for (char& c : random) c = static_cast<char>(rng());
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{300000},
                                 std::size_t{3} << 20}) {
    for (const int level : {1, 3, 19}) {
      if (level == 19 && size > 300000) continue;  // slow, and no different in shape
      for (const std::string& plain : {std::string(size, 'a'), random.substr(0, size)}) {
        const std::string frame = redkit::detail::zstd_compress(plain, level);
        ASSERT_TRUE(redkit::detail::is_whole_zstd_frame(frame));
        EXPECT_GE(redkit::detail::zstd_frame_capacity(frame), plain.size()) << size << " level " << level;
        EXPECT_EQ(redkit::detail::zstd_decompress(frame, Zipped::max_decompressed), plain);
      }
    }
  }
}

TEST(DecoderCompressed, MaxDecompressedIsATemplateParameterForReadingAndWriting) {
  using Small = redkit::Compressed<Plain, 16, 3, 4096>;
  static_assert(Small::max_decompressed == 4096);
  static_assert(Zipped::max_decompressed == std::size_t{64} << 20);
  const std::string at_limit(4096, 'y');
  EXPECT_EQ(Small::deserialize(Small::serialize(at_limit)), at_limit);
  EXPECT_THROW(Small::serialize(at_limit + "y"), std::length_error);
  // A frame written with the default limit is refused by the small one.
  const std::string bigger = Zipped::serialize(std::string(5000, 'y'));
  ASSERT_TRUE(redkit::detail::is_whole_zstd_frame(bigger));
  EXPECT_THROW(Small::deserialize(bigger), std::invalid_argument);
  EXPECT_EQ(Zipped::deserialize(bigger), std::string(5000, 'y'));
}

TEST(DecoderCompressed, ACorruptChecksumIsAnInvalidArgument) {
  std::string frame = Zipped::serialize(std::string(5000, 'z'));
  frame.back() = static_cast<char>(frame.back() ^ 1);  // the XXH64 checksum's last byte
  EXPECT_THROW(Zipped::deserialize(frame), std::invalid_argument);
}

#endif  // REDKIT_HAVE_ZSTD

#ifdef REDKIT_HAVE_JSON

TEST(DecoderJson, ANulByteIsRefusedRatherThanEndingTheText) {
  using Json = redkit::JsonSerializer<nlohmann::json>;
  // nlohmann alone reads "1\0garbage" as 1.
  EXPECT_EQ(nlohmann::json::parse(std::string("1\0garbage", 9)), 1);
  try {
    Json::deserialize(std::string_view("1\0garbage", 9));
    FAIL() << "text with a NUL byte was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "not JSON: a NUL byte at offset 1");
  }
  EXPECT_EQ(Json::deserialize("\"a\\u0000b\""), std::string("a\0b", 3));  // an escaped NUL is fine
}

namespace {
using Json = redkit::JsonSerializer<nlohmann::json>;

std::string nested(std::size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}
}  // namespace

TEST(DecoderJson, AMillionDeepArrayIsRefusedBeforeParsing) {
  const std::string text = nested(1000000);
  try {
    Json::deserialize(text);
    FAIL() << "a 1,000,000-deep array was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "JSON nested deeper than 512 levels (redkit::JsonSerializer's MaxDepth)");
  }
}

TEST(DecoderJson, DepthFiveHundredTwelveReadsAndFiveHundredThirteenDoesNot) {
  
  static_assert(Json::max_depth == 512);
  EXPECT_NO_THROW(Json::deserialize(nested(512)));
  EXPECT_THROW(Json::deserialize(nested(513)), std::invalid_argument);
  // Objects count too, mixed with arrays.
  std::string mixed;
  for (int i = 0; i < 300; ++i) mixed += "{\"a\":[";
  mixed += "1";
  for (int i = 0; i < 300; ++i) mixed += "]}";
  EXPECT_THROW(Json::deserialize(mixed), std::invalid_argument);
}

TEST(DecoderJson, BracketsInsideStringsDoNotCount) {
  const std::string brackets(2000, '[');
  EXPECT_EQ(Json::deserialize("[\"" + brackets + "\"]")[0].get<std::string>(), brackets);
  // An escaped quote does not end the string; an escaped backslash does not escape the quote after it.
  EXPECT_EQ(Json::deserialize("\"\\\"" + brackets + "\"").get<std::string>(), "\"" + brackets);
  EXPECT_THROW(Json::deserialize("[\"\\\\\"" + brackets + "]"), std::invalid_argument);
}

TEST(DecoderJson, MaxDepthIsATemplateParameter) {
  using Shallow = redkit::JsonSerializer<nlohmann::json, 4>;
  EXPECT_NO_THROW(Shallow::deserialize("[[[[1]]]]"));
  EXPECT_THROW(Shallow::deserialize("[[[[[1]]]]]"), std::invalid_argument);
}

#endif  // REDKIT_HAVE_JSON

TEST(DecoderBuiltIn, FloatingPointReadsNeverRunPastBytesThatAreNotNulTerminated) {
  // fuzz_serializers found libstdc++ 12's from_chars(long double) reading
  // past "inf" in a buffer without a NUL (ASan: heap-buffer-overflow).
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const std::pair<const char*, double> cases[] = {
      {"inf", kInf}, {"nan", std::numeric_limits<double>::quiet_NaN()}, {"-inf", -kInf}, {"1e5", 100000.0},
      {"infinity", kInf}};
  for (const auto& [text, expected] : cases) {
    const std::size_t n = std::strlen(text);
    std::unique_ptr<char[]> exact(new char[n]);  // no terminator
    std::memcpy(exact.get(), text, n);
    const std::string_view bytes(exact.get(), n);
    const long double ld = redkit::Serializer<long double>::deserialize(bytes);
    const double d = redkit::Serializer<double>::deserialize(bytes);
    const float f = redkit::Serializer<float>::deserialize(bytes);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(ld)) << text;
      EXPECT_TRUE(std::isnan(d)) << text;
      EXPECT_TRUE(std::isnan(f)) << text;
    } else {
      EXPECT_EQ(ld, static_cast<long double>(expected)) << text;
      EXPECT_EQ(d, expected) << text;
      EXPECT_EQ(f, static_cast<float>(expected)) << text;
    }
  }
}

TEST(DecoderBuiltIn, NumbersAcceptOnlyTheWholeTextOfOneNumberInRange) {
  using Int = redkit::Serializer<int>;
  EXPECT_EQ(Int::deserialize("-42"), -42);
  for (const char* bad : {"", " 1", "1 ", "+1", "1x", "0x10", "2147483648", "1e3", "--1"}) {
    EXPECT_THROW(Int::deserialize(bad), std::invalid_argument) << bad;
  }
  EXPECT_THROW(redkit::Serializer<unsigned>::deserialize("-1"), std::invalid_argument);
  EXPECT_THROW(redkit::Serializer<char>::deserialize("300"), std::invalid_argument);
  EXPECT_THROW(redkit::Serializer<double>::deserialize("1e999"), std::invalid_argument);
  EXPECT_THROW(redkit::Serializer<bool>::deserialize("true"), std::invalid_argument);
}
