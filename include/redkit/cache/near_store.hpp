/// @file cache/near_store.hpp
/// The memory of a near cache: decoded values of one RedisCache in this
/// process, bounded by entries and bytes, in shards that each have their own
/// reader-writer lock, striped so that hits from different threads write
/// no common cache line (detail/striped.hpp). No I/O here: cache/tracker.hpp says when a
/// copy may no longer be trusted, cache/near.hpp reads Redis. Part of
/// <redkit/cache.hpp>.
///
/// Eviction is CLOCK (second chance): a hit only sets the entry's
/// "referenced" bit, under the shared lock; an insert that needs room looks
/// at the oldest entry and either evicts it or, if it was referenced since,
/// clears the bit and gives it another round. So hot keys stay when the
/// working set is larger than max_entries, and hits never reorder a list.
///
/// The read/invalidation race (as rueidis orders it): before a read is
/// sent, begin() leaves a pending mark for its key; an invalidation of the
/// key, a flush or an epoch change removes the mark; settle() stores the
/// value only if its mark is still there. Reads of one key that overlap
/// share one mark: when two of them saw different bytes (a write came in
/// between, and its invalidation is on its way), the copy is dropped, so a
/// process never goes back to an older value once it has returned a newer
/// one.
///
/// Thread safety: every member is thread-safe.
/// Exceptions: std::bad_alloc; a copy of T may throw what T's copy throws.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "redkit/cache/options.hpp"
#include "redkit/detail/striped.hpp"

namespace redkit::detail::cache {

/// Trust shared by every near cache of one client in one process, kept by
/// the tracker (cache/tracker.hpp). An epoch is even while tracking is
/// confirmed on every master, odd while it is not; a copy is trusted only
/// if it was stored in the current epoch, and stored only if that epoch is
/// even. Moving to a new epoch drops every copy at once, before the memory
/// is freed.
class TrackingState {
 public:
  std::uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }
  static bool confirmed(std::uint64_t epoch) noexcept { return epoch % 2 == 0; }

  /// The topology generation (see Tracker) at which every master was known
  /// to be tracked; a read stores its value only if the client's topology
  /// generation was this when it started and still is when it ends.
  std::uint64_t verified_topology() const noexcept { return topology_.load(std::memory_order_acquire); }

 protected:
  // Read by every hit; kept apart from anything written often.
  alignas(64) std::atomic<std::uint64_t> epoch_{1};
  std::atomic<std::uint64_t> topology_{~std::uint64_t{0}};
  char pad_[64 - 2 * sizeof(std::atomic<std::uint64_t>)] = {};
};

/// What a tracker tells the near caches it serves.
class NearListener {
 public:
  virtual ~NearListener() = default;
  /// The server said key (without the cache's prefix) changed.
  virtual void invalidate(std::string_view key) noexcept = 0;
  /// Every copy must go (FLUSHALL/FLUSHDB, tracking lost or restarted).
  virtual void flush() noexcept = 0;
};

/// A read in flight: made by NearStore::begin before the read is sent,
/// given back to settle() or abandon() when it ends. Empty (false) when the
/// read must not be stored.
struct NearTicket {
  using Clock = std::chrono::steady_clock;
  std::string key;
  std::uint64_t id = 0;
  std::uint64_t epoch = 0;
  std::uint64_t topology = 0;
  Clock::time_point started{};
  explicit operator bool() const noexcept { return id != 0; }
};

template <class T>
class NearStore final : public NearListener {
 public:
  using Clock = std::chrono::steady_clock;

  /// A trusted copy and what XFetch needs of it.
  struct Hit {
    T value;
    std::chrono::milliseconds left;  ///< time to live left (local, so never longer than in Redis)
    long long delta_ms;              ///< the load time stored with the value, 0 when unknown
  };

  /// Bytes a copy costs on top of its key and serialized value (node, map
  /// entry, bookkeeping).
  static constexpr std::size_t kEntryOverhead = 160;

  NearStore(const NearCacheOptions& options, const TrackingState& tracking)
      : tracking_(tracking),
        max_age_(options.max_age),
        shard_count_(shards_for(options.max_entries, options.max_bytes)),
        shards_(new Shard[shard_count_]) {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      shards_[i].max_entries = options.max_entries / shard_count_ + (i < options.max_entries % shard_count_ ? 1 : 0);
      shards_[i].max_bytes = options.max_bytes / shard_count_;
    }
  }
  NearStore(const NearStore&) = delete;
  NearStore& operator=(const NearStore&) = delete;

  /// A copy of the value of key, if a trusted copy is here (counts a near hit).
  std::optional<T> get(std::string_view key) {
    std::optional<T> out;
    read(key, true, [&](const Node& n, Clock::time_point) { out.emplace(n.value); });
    return out;
  }

  /// As get(), with the copy's time left and load time (get_or_set's
  /// XFetch), and not counted: count_hit() when it is served.
  std::optional<Hit> get_hit(std::string_view key) {
    std::optional<Hit> out;
    read(key, false, [&](const Node& n, Clock::time_point now) {
      out.emplace(Hit{n.value, std::chrono::duration_cast<std::chrono::milliseconds>(n.expires - now), n.delta_ms});
    });
    return out;
  }
  void count_hit() noexcept { hits_.add(); }

  /// True if a trusted copy of key is here (counts a near hit).
  bool contains(std::string_view key) {
    return read(key, true, [](const Node&, Clock::time_point) {});
  }

  /// Marks a read of key about to be sent. Empty when tracking is not
  /// confirmed, or the client's topology moved since it was verified
  /// (topology: its generation now).
  NearTicket begin(std::string_view key, std::uint64_t topology) {
    NearTicket t;
    const std::uint64_t epoch = tracking_.epoch();
    if (!TrackingState::confirmed(epoch) || topology != tracking_.verified_topology()) return t;
    t.started = Clock::now();
    t.epoch = epoch;
    t.topology = topology;
    t.key.assign(key.data(), key.size());
    Shard& s = shard_of(t.key);
    std::unique_lock<detail::StripedSharedMutex> lk(s.m);
    auto [it, fresh] = s.pending.try_emplace(t.key, 0);
    if (fresh) it->second = ++s.next_ticket;
    t.id = it->second;
    return t;
  }

  /// Ends the read of ticket t: bytes (what Redis returned; nullptr for
  /// nil) decoded as value, with pttl_ms its PTTL from the same round trip
  /// (-1: no expiry) and delta_ms its load time (0: unknown). Stores a copy
  /// only if no invalidation, flush or topology change came since begin().
  /// topology: the client's topology generation now.
  void settle(NearTicket& t, const std::string_view* bytes, const T* value, long long pttl_ms, long long delta_ms,
              std::uint64_t topology) {
    if (!t) return;
    const std::size_t hash = bytes ? std::hash<std::string_view>{}(*bytes) : 0;
    Shard& s = shard_of(t.key);
    std::unique_lock<detail::StripedSharedMutex> lk(s.m);
    const auto p = s.pending.find(t.key);
    const bool mine = p != s.pending.end() && p->second == t.id;
    if (!mine) {
      // Another read with this ticket stored first: if it saw other bytes,
      // a write came between the two, so neither copy is to be trusted.
      auto e = s.index.find(t.key);
      if (e != s.index.end() && e->second->ticket == t.id && (!bytes || e->second->hash != hash)) erase(s, e);
      t.id = 0;
      return;
    }
    s.pending.erase(p);
    const std::uint64_t id = t.id;
    t.id = 0;
    // PTTL counts whole milliseconds of the server's clock: the value may
    // go up to 1 ms before the time it says, so the copy ends 1 ms early.
    if (!bytes || !value || pttl_ms == -2 || pttl_ms == 0 || pttl_ms == 1 || pttl_ms < -2) return;
    if (tracking_.epoch() != t.epoch || topology != t.topology) return;
    auto expires = t.started + max_age_;
    if (pttl_ms > 0) expires = std::min(expires, t.started + std::chrono::milliseconds(pttl_ms - 1));
    const std::size_t cost = t.key.size() + bytes->size() + kEntryOverhead;
    if (cost > s.max_bytes || s.max_entries == 0) return;
    if (auto old = s.index.find(t.key); old != s.index.end()) erase(s, old);
    make_room(s, cost);
    s.order.emplace_front(t.key, *value, cost, expires, t.epoch, id, hash, delta_ms);
    s.index.emplace(s.order.front().key, s.order.begin());
    s.bytes += cost;
    entries_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Ends a read that failed (no answer): its mark goes.
  void abandon(NearTicket& t) noexcept {
    if (!t) return;
    Shard& s = shard_of(t.key);
    std::unique_lock<detail::StripedSharedMutex> lk(s.m);
    const auto p = s.pending.find(t.key);
    if (p != s.pending.end() && p->second == t.id) s.pending.erase(p);
    t.id = 0;
  }

  /// The server said key changed: the copy and any read in flight go.
  /// Counted after the drop: whoever sees the count has the copy gone.
  void invalidate(std::string_view key) noexcept override {
    drop(key);
    invalidations_.fetch_add(1, std::memory_order_release);
  }

  /// Drops the copy of key and any read in flight (a write of this process).
  void drop(std::string_view key) noexcept {
    Shard& s = shard_of(key);
    std::unique_lock<detail::StripedSharedMutex> lk(s.m);
    if (auto e = s.index.find(key); e != s.index.end()) erase(s, e);
    if (!s.pending.empty()) {
      if (auto p = s.pending.find(std::string(key)); p != s.pending.end()) s.pending.erase(p);
    }
  }

  /// Every copy and every read in flight go; counted once all shards are
  /// empty, so whoever sees the count sees no copy from before it.
  void flush() noexcept override {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      Shard& s = shards_[i];
      std::list<Node> doomed;
      {
        std::unique_lock<detail::StripedSharedMutex> lk(s.m);
        s.index.clear();
        s.pending.clear();
        doomed.swap(s.order);
        entries_.fetch_sub(doomed.size(), std::memory_order_relaxed);
        s.bytes = 0;
      }
      // The values are destroyed outside the lock.
    }
    flushes_.fetch_add(1, std::memory_order_release);
  }

  std::uint64_t hits() const noexcept { return hits_.load(); }
  std::uint64_t entries() const noexcept { return entries_.load(std::memory_order_relaxed); }
  std::uint64_t invalidations() const noexcept { return invalidations_.load(std::memory_order_acquire); }
  std::uint64_t flushes() const noexcept { return flushes_.load(std::memory_order_acquire); }

 private:
  struct Node {
    Node(std::string k, const T& v, std::size_t c, Clock::time_point e, std::uint64_t ep, std::uint64_t t,
         std::size_t h, long long d)
        : key(std::move(k)), value(v), cost(c), expires(e), epoch(ep), ticket(t), hash(h), delta_ms(d) {}
    const std::string key;
    const T value;
    const std::size_t cost;
    const Clock::time_point expires;
    const std::uint64_t epoch;
    const std::uint64_t ticket;  // the read that stored it
    const std::size_t hash;      // of the bytes it was decoded from
    const long long delta_ms;
    mutable std::atomic<bool> referenced{false};
  };
  using Order = std::list<Node>;

  struct alignas(64) Shard {
    mutable detail::StripedSharedMutex m;
    Order order;  // front: newest, or given a second chance
    std::unordered_map<std::string_view, typename Order::iterator> index;  // views of Node::key
    std::unordered_map<std::string, std::uint64_t> pending;                 // key -> ticket of the read in flight
    std::uint64_t next_ticket = 0;
    std::size_t bytes = 0;
    std::size_t max_entries = 0;
    std::size_t max_bytes = 0;
  };

  // Up to 16 shards, each with room for at least 8 entries and 1 MiB (a
  // value larger than its shard's share of max_bytes is never kept).
  static std::size_t shards_for(std::size_t max_entries, std::size_t max_bytes) {
    std::size_t n = 1;
    while (n < 16 && n * 2 * 8 <= max_entries && n * 2 * (std::size_t{1} << 20) <= max_bytes) n *= 2;
    return n;
  }

  Shard& shard_of(std::string_view key) const noexcept {
    if (shard_count_ == 1) return shards_[0];
    const std::size_t h = std::hash<std::string_view>{}(key);
    return shards_[(h ^ (h >> 29) ^ (h >> 47)) & (shard_count_ - 1)];
  }

  // Calls f(node, now) on a trusted copy of key under the shard's shared
  // lock; true if there was one. Counts the hit if count.
  template <class F>
  bool read(std::string_view key, bool count, F&& f) {
    Shard& s = shard_of(key);
    detail::StripedSharedMutex::SharedLock lk(s.m);
    const auto e = s.index.find(key);
    if (e == s.index.end()) return false;
    const Node& n = *e->second;
    if (n.epoch != tracking_.epoch()) return false;
    const auto now = Clock::now();
    if (now >= n.expires) return false;
    if (!n.referenced.load(std::memory_order_relaxed)) n.referenced.store(true, std::memory_order_relaxed);
    f(n, now);
    if (count) hits_.add();
    return true;
  }

  void erase(Shard& s, typename std::unordered_map<std::string_view, typename Order::iterator>::iterator e) noexcept {
    const auto node = e->second;
    s.index.erase(e);
    s.bytes -= node->cost;
    s.order.erase(node);
    entries_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Evicts until one more entry of cost bytes fits. Oldest first, except
  // that an entry hit since it was last looked at goes round once more.
  void make_room(Shard& s, std::size_t cost) noexcept {
    std::size_t looked = 0;
    const std::size_t patience = 2 * s.order.size() + 1;
    while (!s.order.empty() && (s.order.size() + 1 > s.max_entries || s.bytes + cost > s.max_bytes)) {
      auto oldest = std::prev(s.order.end());
      const bool now = Clock::now() >= oldest->expires || oldest->epoch != tracking_.epoch();
      if (!now && oldest->referenced.load(std::memory_order_relaxed) && ++looked < patience) {
        oldest->referenced.store(false, std::memory_order_relaxed);
        s.order.splice(s.order.begin(), s.order, oldest);
        continue;
      }
      erase(s, s.index.find(oldest->key));
    }
  }

  const TrackingState& tracking_;
  const std::chrono::milliseconds max_age_;
  const std::size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
  detail::StripedCounter hits_;
  std::atomic<std::uint64_t> entries_{0};
  std::atomic<std::uint64_t> invalidations_{0};
  std::atomic<std::uint64_t> flushes_{0};
};

}  // namespace redkit::detail::cache
