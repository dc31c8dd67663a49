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
/// Thread safety: stateless apart from one compression and one
/// decompression context per thread; call from any thread.
/// Exceptions: serialize throws std::runtime_error if zstd fails (out of
/// memory); deserialize throws std::invalid_argument for a corrupt frame,
/// and whatever Inner::deserialize throws.
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

/// The content of one whole frame (see is_whole_zstd_frame).
/// @throws std::invalid_argument if it does not decompress (bad checksum).
inline std::string zstd_decompress(std::string_view frame) {
  thread_local std::unique_ptr<ZSTD_DCtx, ZstdFree> ctx(ZSTD_createDCtx());
  if (!ctx) throw std::runtime_error("zstd: cannot create a decompression context");
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
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
template <class Inner, std::size_t Threshold = 1024, int Level = 3>
struct Compressed {
  /// The value type, as Inner::deserialize returns it.
  using value_type = std::decay_t<decltype(Inner::deserialize(std::string_view()))>;
  static_assert(is_serializer_v<Inner, value_type>,
                "redkit::Compressed<Inner>: Inner must be a serializer (static serialize(const T&) "
                "and static T deserialize(std::string_view))");

  /// Inner's bytes, as one zstd frame when they are at least Threshold long
  /// (or begin with the zstd magic) and compression shrinks them; as they
  /// are otherwise. @throws std::runtime_error if zstd fails; whatever
  /// Inner::serialize throws.
  static std::string serialize(const value_type& value) {
    decltype(auto) inner = Inner::serialize(value);
    const std::string_view plain = inner;
    const bool looks_compressed = plain.substr(0, detail::kZstdMagic.size()) == detail::kZstdMagic;
    if (plain.size() < Threshold && !looks_compressed) return std::string(plain);
    std::string frame = detail::zstd_compress(plain, Level);
    if (frame.size() >= plain.size() && !looks_compressed) return std::string(plain);
    return frame;
  }

  /// Decompresses bytes that are exactly one complete zstd frame with a
  /// stated content size (checksum checked), then hands them to Inner; any
  /// other bytes go to Inner unchanged. @throws std::runtime_error for a
  /// corrupt frame or one that would decompress past its bound; whatever
  /// Inner::deserialize throws (RedisCache reports both as DecodeError).
  static value_type deserialize(std::string_view bytes) {
    if (!detail::is_whole_zstd_frame(bytes)) return Inner::deserialize(bytes);
    return Inner::deserialize(detail::zstd_decompress(bytes));
  }
};

}  // namespace redkit
