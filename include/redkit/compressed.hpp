/// @file compressed.hpp
/// redkit::Compressed<Inner>: an opt-in serializer wrapper that stores large
/// values as zstd frames. Only compiled where included; link libzstd
/// (Debian: libzstd-dev; pkg-config name `libzstd`).
///
///     redkit::RedisCache<Page, redkit::Compressed<redkit::JsonSerializer<Page>>> pages(redis, "page:");
///
/// Stored format (readable without redkit: `zstd -d` or any zstd binding):
///  - a value whose Inner bytes are shorter than Threshold is stored as
///    those bytes, unchanged; so is a longer one that zstd cannot shrink;
///  - otherwise the value is one standard zstd frame (magic 28 B5 2F FD,
///    content size in the header, XXH64 checksum) of the Inner bytes;
///  - Inner bytes that begin with the zstd magic are always stored
///    compressed, whatever their size, so every value Compressed writes that
///    begins with the magic is a frame of its own making.
///
/// Reading: bytes that begin with the magic and are exactly one complete
/// frame with a known content size are decompressed (a bad checksum is a
/// decode error); all other bytes go to Inner::deserialize unchanged. So
/// values written before compression was turned on still read, including
/// ones that happen to begin with the magic bytes. The one case that cannot
/// be told apart: an old plain value that is itself a complete zstd frame
/// (raw bytes that were compressed data already) is decompressed. Valid
/// UTF-8 text (JSON, decimal numbers, most strings) never begins with the
/// magic: 0xB5 is a continuation byte and cannot follow '(' (0x28), so text
/// values are never ambiguous.
///
/// Stored bytes are untrusted: a frame's header states its content size,
/// and a 25-byte frame may claim gigabytes. Before allocating anything,
/// deserialize checks the claim against MaxDecompressed (64 MiB by default)
/// and against what the frame's blocks can hold at most (their headers give
/// each raw or RLE block's size; a compressed block holds at most 128 KiB),
/// so the memory a value costs is bounded by the limit and by its own
/// length; and serialize refuses a value whose Inner bytes exceed the limit,
/// since it could not be read back. The limit is a template parameter, like
/// Threshold and Level: it is part of the stored values' type, costs
/// nothing, and no process-wide setting can change it under another user.
///
/// Thread safety: stateless apart from one compression and one
/// decompression context per thread; call from any thread.
/// Exceptions: serialize throws std::length_error for a value over
/// MaxDecompressed and std::runtime_error if zstd fails (out of memory);
/// deserialize throws std::invalid_argument for a corrupt frame or one that
/// claims more than MaxDecompressed bytes (RedisCache reports either as
/// DecodeError naming the key), and whatever Inner::deserialize throws.
#pragma once

#include <zstd.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "redkit/serializer.hpp"

namespace redkit {

namespace detail {

/// The first four bytes of every zstd frame (0xFD2FB528 little-endian).
inline constexpr std::string_view kZstdMagic("\x28\xB5\x2F\xFD", 4);

/// Compressed's default MaxDecompressed: 64 MiB, far above a sensible cache
/// value and far below what a hostile header could make a reader allocate.
inline constexpr std::size_t kDefaultMaxDecompressed = std::size_t{64} << 20;

struct ZstdFree {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};

/// One zstd frame of `plain` at `level`, with content size and checksum.
inline std::string zstd_compress(std::string_view plain, int level) {
  thread_local std::unique_ptr<ZSTD_CCtx, ZstdFree> ctx(ZSTD_createCCtx());
  if (!ctx) throw std::runtime_error("zstd: cannot create a compression context");
  ZSTD_CCtx_reset(ctx.get(), ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_contentSizeFlag, 1);
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  const std::size_t n = ZSTD_compress2(ctx.get(), out.data(), out.size(), plain.data(), plain.size());
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

/// True if bytes are exactly one complete zstd frame whose header states
/// its content size: the only shape Compressed writes.
inline bool is_whole_zstd_frame(std::string_view bytes) noexcept {
  if (bytes.substr(0, kZstdMagic.size()) != kZstdMagic) return false;
  const unsigned long long size = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) return false;
  const std::size_t frame = ZSTD_findFrameCompressedSize(bytes.data(), bytes.size());
  return !ZSTD_isError(frame) && frame == bytes.size();
}

/// The most content the blocks of one whole frame can decompress to, read
/// from their headers (RFC 8878, 3.1.1): a raw or RLE block states its
/// size, a compressed block holds at most 128 KiB. 0 if the frame does not
/// parse (is_whole_zstd_frame has checked it already, so that is corrupt).
inline unsigned long long zstd_frame_capacity(std::string_view frame) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(frame[i])); };
  if (frame.size() < kZstdMagic.size() + 1) return 0;
  const unsigned descriptor = byte(4);
  const bool single_segment = (descriptor >> 5) & 1;
  static constexpr std::size_t kDictionaryIdBytes[] = {0, 1, 2, 4};
  static constexpr std::size_t kContentSizeBytes[] = {0, 2, 4, 8};
  const unsigned content_size_flag = descriptor >> 6;
  std::size_t at = 5 + (single_segment ? 0 : 1) + kDictionaryIdBytes[descriptor & 3] +
                   (content_size_flag == 0 && single_segment ? 1 : kContentSizeBytes[content_size_flag]);
  constexpr unsigned long long kMaxBlockContent = 128 * 1024;
  unsigned long long capacity = 0;
  for (;;) {
    if (at + 3 > frame.size()) return 0;
    const unsigned header = byte(at) | (byte(at + 1) << 8) | (byte(at + 2) << 16);
    at += 3;
    const unsigned type = (header >> 1) & 3;
    const std::size_t size = header >> 3;
    if (type == 0) {  // raw
      capacity += size;
      at += size;
    } else if (type == 1) {  // RLE: one byte repeated size times
      capacity += size;
      at += 1;
    } else if (type == 2) {  // compressed
      capacity += kMaxBlockContent;
      at += size;
    } else {
      return 0;  // reserved
    }
    if (at > frame.size()) return 0;
    if (header & 1) return capacity;  // the last block
  }
}

/// The content of one whole frame (see is_whole_zstd_frame), if its header
/// claims at most max_size bytes and its blocks can hold that much.
/// @throws std::invalid_argument if it claims more, or does not decompress
/// (bad checksum); nothing is allocated for a claim that fails the checks.
inline std::string zstd_decompress(std::string_view frame, std::size_t max_size) {
  thread_local std::unique_ptr<ZSTD_DCtx, ZstdFree> ctx(ZSTD_createDCtx());
  if (!ctx) throw std::runtime_error("zstd: cannot create a decompression context");
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size > max_size) {
    throw std::invalid_argument("zstd frame claims " + std::to_string(size) + " bytes, above the limit of " +
                                std::to_string(max_size) + " (redkit::Compressed's MaxDecompressed)");
  }
  const unsigned long long capacity = zstd_frame_capacity(frame);
  if (size > capacity) {
    throw std::invalid_argument("corrupt zstd frame: it claims " + std::to_string(size) +
                                " bytes but its blocks hold at most " + std::to_string(capacity));
  }
  std::string out(static_cast<std::size_t>(size), '\0');
  const std::size_t n = ZSTD_decompressDCtx(ctx.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != out.size()) {
    throw std::invalid_argument(std::string("corrupt zstd frame: ") +
                                (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong content size"));
  }
  return out;
}

}  // namespace detail

/// Wraps the serializer Inner: values whose Inner bytes are at least
/// Threshold long are stored as a zstd frame at compression Level (see the
/// file comment for the exact format and how old plain values still read).
/// No value whose Inner bytes exceed MaxDecompressed is written, and no
/// frame that claims more is decompressed.
template <class Inner, std::size_t Threshold = 1024, int Level = 3,
          std::size_t MaxDecompressed = detail::kDefaultMaxDecompressed>
struct Compressed {
  /// The value type, as Inner::deserialize returns it.
  using value_type = std::decay_t<decltype(Inner::deserialize(std::string_view()))>;
  static_assert(is_serializer_v<Inner, value_type>,
                "redkit::Compressed<Inner>: Inner must be a serializer (static serialize(const T&) "
                "and static T deserialize(std::string_view))");

  /// The largest Inner value, in bytes, that is written or read.
  static constexpr std::size_t max_decompressed = MaxDecompressed;

  /// Inner's bytes, compressed when at least Threshold long.
  /// @throws std::length_error above MaxDecompressed; std::runtime_error
  /// if zstd fails; whatever Inner::serialize throws.
  static std::string serialize(const value_type& value) {
    decltype(auto) inner = Inner::serialize(value);
    const std::string_view plain = inner;
    if (plain.size() > MaxDecompressed) {
      throw std::length_error("redkit::Compressed: a value of " + std::to_string(plain.size()) +
                              " bytes is above MaxDecompressed (" + std::to_string(MaxDecompressed) +
                              "), so it could not be read back; raise MaxDecompressed");
    }
    const bool looks_compressed = plain.substr(0, detail::kZstdMagic.size()) == detail::kZstdMagic;
    if (plain.size() < Threshold && !looks_compressed) return std::string(plain);
    std::string frame = detail::zstd_compress(plain, Level);
    if (frame.size() >= plain.size() && !looks_compressed) return std::string(plain);
    return frame;
  }

  /// The value in bytes: a whole zstd frame is decompressed first (see the
  /// file comment). @throws std::invalid_argument for a corrupt frame or one
  /// that claims more than MaxDecompressed; whatever Inner::deserialize throws.
  static value_type deserialize(std::string_view bytes) {
    if (!detail::is_whole_zstd_frame(bytes)) return Inner::deserialize(bytes);
    return Inner::deserialize(detail::zstd_decompress(bytes, MaxDecompressed));
  }
};

}  // namespace redkit
