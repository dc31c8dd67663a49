// Random lock tokens and jitter. Tokens come from the kernel CSPRNG
// (getrandom), because a guessable token lets another client release or
// extend a lock it does not hold. Thread-safe.
#pragma once

#include <sys/random.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "redkit/error.hpp"

namespace redkit::detail {

/// Bytes of randomness in a lock token (hex-encoded: twice as many chars).
inline constexpr std::size_t kTokenBytes = 16;

/// Fills buf with n bytes from getrandom(). Retries on EINTR and on short
/// reads. @throws Error if the kernel cannot provide them (ENOSYS, EFAULT).
inline void fill_random(void* buf, std::size_t n) {
  auto* p = static_cast<unsigned char*>(buf);
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::getrandom(p + got, n - got, 0);
    if (r > 0) {
      got += static_cast<std::size_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else {
      throw Error(std::string("redkit: getrandom failed: ") +
                  (r < 0 ? std::strerror(errno) : "no bytes returned"));
    }
  }
}

/// A fresh token: kTokenBytes random bytes as lowercase hex.
/// @throws Error if getrandom() is unavailable.
inline std::string random_token() {
  unsigned char bytes[kTokenBytes];
  fill_random(bytes, sizeof bytes);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * sizeof bytes, '0');
  for (std::size_t i = 0; i < sizeof bytes; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

/// A uniformly random duration in [lo, hi], for retry jitter. Not
/// cryptographic: a per-thread generator seeded once from getrandom().
inline std::chrono::milliseconds random_between(std::chrono::milliseconds lo,
                                                std::chrono::milliseconds hi) {
  if (hi <= lo) return lo;
  thread_local std::mt19937_64 rng = [] {
    std::uint64_t seed = 0;
    fill_random(&seed, sizeof seed);
    return std::mt19937_64(seed);
  }();
  std::uniform_int_distribution<long long> pick(lo.count(), hi.count());
  return std::chrono::milliseconds(pick(rng));
}

}  // namespace redkit::detail
