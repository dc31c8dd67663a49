// Randomness, in one place: lock tokens from the kernel CSPRNG (getrandom),
// because a guessable token lets another client release or extend a lock it
// does not hold; and one fast per-thread generator for jitter, fill tokens
// and sampling, seeded from getrandom and seeded again in a fork child (the
// child would otherwise draw the parent's numbers). Thread-safe.
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

#include "redkit/detail/fork.hpp"
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

/// A fresh token: kTokenBytes random bytes as lowercase hex. The bytes come
/// from getrandom() in batches of kTokensPerRefill tokens per thread (one
/// syscall costs about as much as the rest of a lock round trip's client
/// work); the batch is dropped in a fork child, so parent and child never
/// hand out the same token. @throws Error if getrandom() is unavailable.
inline constexpr std::size_t kTokensPerRefill = 32;
inline std::string random_token() {
  struct Batch {
    unsigned char bytes[kTokenBytes * kTokensPerRefill];
    std::size_t used = sizeof bytes;
    std::uint32_t generation = 0;
  };
  thread_local Batch batch;
  if (batch.generation != fork_generation()) {
    batch.used = sizeof batch.bytes;  // the parent's bytes: never reuse them here
    batch.generation = fork_generation();
  }
  if (batch.used + kTokenBytes > sizeof batch.bytes) {
    fill_random(batch.bytes, sizeof batch.bytes);
    batch.used = 0;
  }
  unsigned char* bytes = batch.bytes + batch.used;
  batch.used += kTokenBytes;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * kTokenBytes, '0');
  for (std::size_t i = 0; i < kTokenBytes; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  std::memset(bytes, 0, kTokenBytes);  // handed out: keep no second copy
  return out;
}

/// The calling thread's generator: not cryptographic, seeded from
/// getrandom, and seeded again after fork() so that parent and child never
/// draw the same numbers.
inline std::mt19937_64& rng() {
  struct Seeded {
    std::mt19937_64 engine;
    std::uint32_t generation = 0;
    bool seeded = false;
  };
  thread_local Seeded s;
  if (!s.seeded || s.generation != fork_generation()) {
    std::uint64_t seed[2] = {0, 0};
    fill_random(seed, sizeof seed);
    std::seed_seq seq{static_cast<std::uint32_t>(seed[0]), static_cast<std::uint32_t>(seed[0] >> 32),
                      static_cast<std::uint32_t>(seed[1]), static_cast<std::uint32_t>(seed[1] >> 32)};
    s.engine.seed(seq);
    s.generation = fork_generation();
    s.seeded = true;
  }
  return s.engine;
}

/// A uniformly random duration in [lo, hi], for retry jitter.
inline std::chrono::milliseconds random_between(std::chrono::milliseconds lo,
                                                std::chrono::milliseconds hi) {
  if (hi <= lo) return lo;
  std::uniform_int_distribution<long long> pick(lo.count(), hi.count());
  return std::chrono::milliseconds(pick(rng()));
}

/// Uniform in (0, 1].
inline double random_unit() { return 1.0 - std::uniform_real_distribution<double>(0.0, 1.0)(rng()); }

/// 128 random bits from rng() as 32 hex characters: unique, not secret
/// (cache fill tokens: they only keep a slow loader from releasing the
/// lock of the loader after it).
inline std::string unique_token() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = rng()();
    for (int i = 0; i < 16; ++i, bits >>= 4) token[static_cast<std::size_t>(half * 16 + i)] = kHex[bits & 0xf];
  }
  return token;
}

}  // namespace redkit::detail
