// Read-mostly data touched by many threads at once, without a cache line
// that every reader writes: a counter whose bumps go to per-thread cells,
// and a reader-writer lock whose readers each lock a cell of their own (a
// writer locks them all). Used by the near cache's hits, which would
// otherwise all write the same lock word and counter and stop scaling with
// threads. Thread safety: both are thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace redkit::detail {

inline constexpr std::size_t kStripes = 8;

/// This thread's cell, 0..kStripes-1 (threads are dealt round robin).
inline std::size_t stripe_of_this_thread() noexcept {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine % kStripes;
}

/// A counter many threads bump at once: each adds to its own padded cell,
/// a read sums them.
class StripedCounter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    cells_[stripe_of_this_thread()].value.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t load() const noexcept {
    std::uint64_t sum = 0;
    for (const Cell& c : cells_) sum += c.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(64) Cell {
    std::atomic<std::uint64_t> value{0};
  };
  std::array<Cell, kStripes> cells_;
};

/// A reader-writer lock for data read far more often than written: a
/// reader locks only its thread's cell (lock_shared / unlock_shared, or
/// SharedLock); a writer locks every cell in order (lock / unlock, so
/// std::unique_lock works). Readers of different cells never share a cache
/// line; a write costs kStripes lock operations.
class StripedSharedMutex {
 public:
  void lock() noexcept {
    for (Cell& c : cells_) c.m.lock();
  }
  void unlock() noexcept {
    for (std::size_t i = kStripes; i-- > 0;) cells_[i].m.unlock();
  }

  /// Holds one reader cell of a StripedSharedMutex for its scope.
  class SharedLock {
   public:
    explicit SharedLock(StripedSharedMutex& m) noexcept : m_(m.cells_[stripe_of_this_thread()].m) { m_.lock(); }
    SharedLock(const SharedLock&) = delete;
    SharedLock& operator=(const SharedLock&) = delete;
    ~SharedLock() { m_.unlock(); }

   private:
    std::mutex& m_;
  };

 private:
  struct alignas(64) Cell {
    std::mutex m;
  };
  std::array<Cell, kStripes> cells_;
};

}  // namespace redkit::detail
