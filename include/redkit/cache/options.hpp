/// @file cache/options.hpp
/// redkit::CacheOptions (how a RedisCache stores and refreshes values) and
/// redkit::CacheStats (what it did), with the range checks and the TTL
/// jitter that follow from the options. Part of <redkit/cache.hpp>.
///
/// Thread safety: plain values; the counters behind CacheStats are atomics.
/// Exceptions: the checks throw ConfigError naming the field.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "redkit/detail/duration.hpp"
#include "redkit/detail/striped.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/error.hpp"

namespace redkit {

/// The near cache of a RedisCache: values kept in this process's memory and
/// dropped when the server says they changed (CLIENT TRACKING, see the
/// README's "Near cache"). Off unless max_entries is above 0.
struct NearCacheOptions {
  /// Most copies kept in this process (for this cache object). 0 (the
  /// default) = no near cache.
  std::size_t max_entries = 0;

  /// Most bytes kept: per copy, its key, its serialized value and about 160
  /// bytes of bookkeeping. A value too large for its share is not kept.
  /// Must be positive when the near cache is on.
  std::size_t max_bytes = std::size_t{64} << 20;

  /// The longest a copy is served from memory, counted from the read that
  /// fetched it: an upper bound on how stale a hit can be if the
  /// invalidation stream fails in a way nobody notices. Also sets how often
  /// the invalidation connections are checked (PING every max_age / 4, at
  /// most every second). Must be positive when the near cache is on.
  std::chrono::milliseconds max_age{std::chrono::minutes(1)};
};

/// How a RedisCache stores and refreshes values. Every duration must be
/// positive unless its comment says otherwise, and at most 100 years; the
/// constructor checks (ConfigError).
struct CacheOptions {
  /// Time to live of a stored value when set() or get_or_set() is not given
  /// one.
  std::chrono::milliseconds ttl{std::chrono::minutes(5)};

  /// Spreads expiries so that values written together do not expire
  /// together: each write's TTL is ttl * (1 - ttl_jitter * u), u uniform in
  /// [0, 1). Never longer than asked. 0 (the default) = exactly ttl. Must be
  /// in [0, 1).
  double ttl_jitter = 0.0;

  /// Negative caching for loaders that return std::optional<T>: an empty
  /// result is remembered for this long, so get_or_set returns nullopt
  /// without calling the loader again. Unset (the default) = not remembered.
  std::optional<std::chrono::milliseconds> negative_ttl;

  /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015): a
  /// get_or_set that finds the value reloads it before it expires with
  /// probability growing as expiry nears: when
  /// `load_time * xfetch_beta * -ln(rand()) >= remaining_ttl`. Other callers
  /// keep getting the current value meanwhile. Above 1 refreshes earlier,
  /// below 1 later; 0 turns it off. Costs a PTTL and a GET of the side key
  /// in the same round trip as each get_or_set read.
  double xfetch_beta = 1.0;

  /// Stale serving: when above 0, every write also keeps a copy of the
  /// value for ttl + stale_ttl (COPY, so Redis 6.2 or later), and a
  /// get_or_set that misses while another caller is already loading the
  /// key returns that stale copy at once instead of waiting. get(),
  /// get_many() and contains() never return it. 0 (the default) = off.
  std::chrono::milliseconds stale_ttl{0};

  /// How long one loader holds a key's fill lock. A loader that takes
  /// longer (or crashed) lets the next caller load too.
  std::chrono::milliseconds fill_lock_ttl{std::chrono::seconds(10)};

  /// The longest a get_or_set waits for a load in another process before
  /// it calls its own loader (without the lock). 0 = never wait.
  std::chrono::milliseconds wait_timeout{std::chrono::seconds(10)};

  /// The near cache: hits served from this process's memory, invalidated by
  /// the server. Off by default (near_cache.max_entries = 0).
  NearCacheOptions near_cache;
};

/// Counters of one RedisCache object (this process only), read with
/// RedisCache::stats().
struct CacheStats {
  std::uint64_t hits = 0;             ///< reads that found a usable value (or a cached "absent")
  std::uint64_t misses = 0;           ///< reads that found none
  std::uint64_t loads = 0;            ///< loader calls
  std::uint64_t load_failures = 0;    ///< loader calls that threw
  std::uint64_t errors = 0;           ///< stored values the serializer could not read
  std::uint64_t early_refreshes = 0;  ///< XFetch reloads of a value not yet expired
  std::uint64_t coalesced = 0;        ///< get_or_set calls that shared another thread's load
  std::uint64_t stale_served = 0;     ///< get_or_set calls answered with the stale copy
  std::uint64_t store_failures = 0;   ///< loaded values the server refused to store (an error reply to
                                      ///< get_or_set's SET, e.g. OOM): returned to the caller all the same
  std::uint64_t near_hits = 0;        ///< reads answered from the near cache (also counted in hits)
  std::uint64_t near_entries = 0;     ///< copies in the near cache now
  std::uint64_t near_invalidations = 0;  ///< invalidations of this prefix's keys the server sent this process
  std::uint64_t near_flushes = 0;     ///< times the near cache was emptied at once (tracking lost or
                                      ///< restarted, FLUSHALL/FLUSHDB, failover, clear())
};

namespace detail::cache {

/// The live counters behind CacheStats. hits is bumped by every hit, near
/// ones included, from any number of threads: striped.
struct Counters {
  using Counter = std::atomic<std::uint64_t>;
  detail::StripedCounter hits;
  Counter misses{0}, loads{0}, load_failures{0}, errors{0}, early_refreshes{0}, coalesced{0}, stale_served{0},
      store_failures{0};

  static void bump(Counter& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }
  static void bump(detail::StripedCounter& c) noexcept { c.add(); }

  CacheStats snapshot() const noexcept {
    CacheStats s;
    s.hits = hits.load();
    s.misses = misses.load(std::memory_order_relaxed);
    s.loads = loads.load(std::memory_order_relaxed);
    s.load_failures = load_failures.load(std::memory_order_relaxed);
    s.errors = errors.load(std::memory_order_relaxed);
    s.early_refreshes = early_refreshes.load(std::memory_order_relaxed);
    s.coalesced = coalesced.load(std::memory_order_relaxed);
    s.stale_served = stale_served.load(std::memory_order_relaxed);
    s.store_failures = store_failures.load(std::memory_order_relaxed);
    return s;
  }
};

/// o, if every field is in range. @throws ConfigError naming the field.
inline const CacheOptions& checked(const CacheOptions& o) {
  using detail::check_duration;
  using std::chrono::milliseconds;
  check_duration(o.ttl, milliseconds(1), "cache ttl");
  if (!(o.ttl_jitter >= 0.0 && o.ttl_jitter < 1.0)) {
    throw ConfigError("redkit: cache ttl_jitter must be in [0, 1)");
  }
  if (o.negative_ttl) check_duration(*o.negative_ttl, milliseconds(1), "cache negative_ttl (when set)");
  if (!(o.xfetch_beta >= 0.0 && std::isfinite(o.xfetch_beta))) {
    throw ConfigError("redkit: cache xfetch_beta must be a finite number >= 0");
  }
  check_duration(o.stale_ttl, milliseconds(0), "cache stale_ttl");
  check_duration(o.fill_lock_ttl, milliseconds(1), "cache fill_lock_ttl");
  check_duration(o.wait_timeout, milliseconds(0), "cache wait_timeout");
  if (o.near_cache.max_entries > 0) {
    if (o.near_cache.max_bytes == 0) throw ConfigError("redkit: cache near_cache.max_bytes must be positive");
    check_duration(o.near_cache.max_age, milliseconds(1), "cache near_cache.max_age");
  }
  return o;
}

/// @throws ConfigError if a TTL given to set() or get_or_set() is not
/// positive or over 100 years.
inline void check_ttl(std::chrono::milliseconds ttl) {
  detail::check_duration(ttl, std::chrono::milliseconds(1), "cache ttl");
}

/// ttl shortened by CacheOptions::ttl_jitter: ttl * (1 - jitter * u), u in
/// [0, 1), at least 1 ms.
inline std::chrono::milliseconds jittered(const CacheOptions& o, std::chrono::milliseconds ttl) {
  if (o.ttl_jitter <= 0.0) return ttl;
  const double cut = static_cast<double>(ttl.count()) * o.ttl_jitter * (1.0 - detail::random_unit());
  return std::chrono::milliseconds(std::max<long long>(1, ttl.count() - static_cast<long long>(cut)));
}

}  // namespace detail::cache

}  // namespace redkit
