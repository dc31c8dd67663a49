/// @file cache.hpp
/// redkit::RedisCache, a typed cache-aside layer over Redis.
///
/// Thread safety: every member of RedisCache is thread-safe. Share one
/// cache object per prefix in a process: its single flight (one load per
/// key at a time) works across the threads that share it.
///
/// Exceptions: IoError (TimeoutError, ClosedError) when Redis cannot be
/// reached or does not answer in time, ReplyError for an error reply,
/// DecodeError when a stored value cannot be read by the serializer (get,
/// get_many), ConfigError for bad options or a non-positive TTL, and
/// whatever a loader or the serializer's serialize throws.
///
/// Stored format: the value for `key` lives at exactly `prefix + key`, as
/// exactly the serializer's bytes, with a PX expiry. Anything else redkit
/// keeps lives in side keys in the same hash slot (see
/// detail/cache_keys.hpp): `:rk-meta` (the measured load time for early
/// refresh, or the marker of a cached "absent"), `:rk-fill` (the fill lock),
/// `:rk-waiters` and `:rk-wake` (the wake-up of waiting processes),
/// `:rk-stale` (with stale serving on, a copy of the value that outlives it
/// by CacheOptions::stale_ttl). So `GET prefix+key` from any language
/// returns the value, and a value written there by another program is read.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "redkit/command.hpp"
#include "redkit/detail/cache_keys.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/detail/duration.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/single_flight.hpp"
#include "redkit/detail/slot_map.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/detail/wait_list.hpp"
#include "redkit/error.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"
#include "redkit/serializer.hpp"
#include "redkit/slot.hpp"

namespace redkit {

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
};

namespace detail::cache {

// Decides what a get_or_set that needs a load does, atomically with taking
// the fill lock.
// KEYS: value, meta, fill, waiters, stale
// ARGV: token, fill_lock_ms, check_present ('1'|'0'), honour_negative
//       ('1'|'0'), seen_pttl ('' = no check), on_busy ('wait'|'stale'|'keep')
// Returns {kind, fill lock pttl}: 'present' (the value is there now),
// 'absent' (a cached "absent"), 'fresh' (the value was rewritten since the
// caller read it with seen_pttl left), 'load' (the caller holds the fill
// lock), 'busy' (someone else holds it; on_busy 'keep'), 'stale' (someone
// else holds it and a stale copy exists), 'wait' (someone else holds it; the
// caller is counted as a waiter and will be woken through the wake list).
inline const Script& claim_script() {
  static const Script s(R"lua(
local value, meta, fill, waiters, stale = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local exists = redis.call('EXISTS', value) == 1
if ARGV[3] == '1' and exists then return {'present', 0} end
if ARGV[4] == '1' and not exists and redis.call('GET', meta) == 'absent' then return {'absent', 0} end
if ARGV[5] ~= '' and redis.call('PTTL', value) > tonumber(ARGV[5]) then return {'fresh', 0} end
if redis.call('SET', fill, ARGV[1], 'NX', 'PX', ARGV[2]) then return {'load', 0} end
if ARGV[6] == 'keep' then return {'busy', 0} end
if ARGV[6] == 'stale' and redis.call('EXISTS', stale) == 1 then return {'stale', 0} end
local pttl = redis.call('PTTL', fill)
redis.call('INCR', waiters)
redis.call('PEXPIRE', waiters, math.max(pttl, 0) + 1000)
return {'wait', pttl}
)lua");
  return s;
}

// Ends a load: records its outcome in the side keys, releases the fill lock
// if the token still holds it, and wakes every counted waiter (one list
// element each). The value itself was SET before, by a plain command.
// KEYS: value, meta, fill, waiters, wake, stale
// ARGV: token ('' = no lock held), outcome ('stored'|'absent'|'failed'),
//       meta text, meta/negative ttl ms ('0' = none), stale_ms, wake_ttl_ms
// Returns the number of waiters woken.
inline const Script& finish_script() {
  static const Script s(R"lua(
local value, meta, fill, waiters, wake, stale = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if ARGV[2] == 'stored' then
  redis.call('SET', meta, ARGV[3], 'PX', ARGV[4])
  if ARGV[5] ~= '0' then
    local pttl = redis.call('PTTL', value)
    if pttl > 0 then
      redis.call('COPY', value, stale, 'REPLACE')
      redis.call('PEXPIRE', stale, pttl + tonumber(ARGV[5]))
    end
  end
elseif ARGV[2] == 'absent' then
  redis.call('DEL', value, stale)
  if ARGV[4] ~= '0' then redis.call('SET', meta, 'absent', 'PX', ARGV[4]) else redis.call('DEL', meta) end
end
if ARGV[1] ~= '' and redis.call('GET', fill) == ARGV[1] then redis.call('DEL', fill) end
local n = tonumber(redis.call('GET', waiters) or '0') or 0
if n > 0 then
  redis.call('DEL', waiters)
  for i = 1, n do redis.call('RPUSH', wake, '1') end
  redis.call('PEXPIRE', wake, ARGV[6])
end
return n
)lua");
  return s;
}

/// What claim_script decided.
struct Claim {
  enum class Kind { Present, Absent, Fresh, Load, Busy, Stale, Wait };
  Kind kind = Kind::Wait;
  std::chrono::milliseconds fill_pttl{0};
};

inline Claim::Kind claim_kind(std::string_view s) {
  if (s == "present") return Claim::Kind::Present;
  if (s == "absent") return Claim::Kind::Absent;
  if (s == "fresh") return Claim::Kind::Fresh;
  if (s == "load") return Claim::Kind::Load;
  if (s == "busy") return Claim::Kind::Busy;
  if (s == "stale") return Claim::Kind::Stale;
  if (s == "wait") return Claim::Kind::Wait;
  throw ProtocolError("redkit: unexpected cache claim result '" + std::string(s) + "'");
}

/// Uniform in (0, 1] (the one fork-safe generator in detail/token.hpp).
inline double random_unit() { return detail::random_unit(); }

/// A fill lock token: 128 random bits as hex (detail::unique_token).
inline std::string fill_token() { return detail::unique_token(); }

inline std::string decimal(long long v) { return std::to_string(v); }

/// Text of the exception being handled, for DecodeError.
inline std::string current_exception_text() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// What a get_or_set loader L returns (decayed), or NotALoader<L> when L
/// cannot be called with no arguments.
template <class L>
struct NotALoader {};
template <class L, class = void>
struct LoaderReturn {
  using type = NotALoader<L>;
};
template <class L>
struct LoaderReturn<L, std::enable_if_t<std::is_invocable_v<L&>>> {
  using type = std::decay_t<std::invoke_result_t<L&>>;
};

/// get_or_set's result for a loader returning R: std::optional<T> for a
/// loader returning std::optional, T otherwise. `valid` is false for a
/// loader of the wrong shape, whose static_assert has already failed.
template <class T, class R>
struct LoaderResult {
  static_assert(std::is_convertible_v<R, T>,
                "redkit::RedisCache::get_or_set: the loader must return T, something that converts "
                "to T, or std::optional<T> (empty = absent), as in `[&] { return load(key); }`");
  using type = T;
  static constexpr bool optional = false;
  static constexpr bool valid = std::is_convertible_v<R, T>;
};
template <class T, class U>
struct LoaderResult<T, std::optional<U>> {
  static_assert(std::is_convertible_v<U, T>,
                "redkit::RedisCache::get_or_set: a loader returning std::optional<U> needs U to "
                "convert to T");
  using type = std::optional<T>;
  static constexpr bool optional = true;
  static constexpr bool valid = std::is_convertible_v<U, T>;
};
template <class T, class L>
struct LoaderResult<T, NotALoader<L>> {
  static_assert(std::is_invocable_v<L&>,
                "redkit::RedisCache::get_or_set: the loader is called with no arguments, as in "
                "`[&] { return load(key); }` (capture the key instead of taking it as a parameter), "
                "and returns T, something that converts to T, or std::optional<T> (empty = absent)");
  using type = T;
  static constexpr bool optional = false;
  static constexpr bool valid = false;
};

}  // namespace detail::cache

/// A typed cache of T at keys `prefix + key`.
///
///     redkit::RedisCache<std::string> pages(redis, "page:");
///     std::string html = pages.get_or_set("/index", [] { return render_index(); });
///
/// Serializer is any class with `static std::string serialize(const T&)`
/// and `static T deserialize(std::string_view)` (see serializer.hpp).
/// Client is redkit::Redis (one server, or sentinel mode), redkit::Cluster,
/// or any client with their interface (command, pipeline, eval, lease,
/// masters, shards_keys).
///
/// Thread-safe; share one object per prefix in a process. Movable, not
/// copyable: a moved-from cache may only be destroyed or assigned to; any
/// other member throws redkit::Error saying so (stats() returns zeros,
/// prefix() and options() are unspecified but safe). A loader must not
/// call get_or_set for its own key on the same object: it would wait for
/// itself.
template <class T, class Serializer = redkit::Serializer<T>, class Client = Redis>
class RedisCache {
  static_assert(is_serializer_v<Serializer, T>,
                "redkit::RedisCache<T>: no serializer for T. Either specialise redkit::Serializer<T> "
                "with `static std::string serialize(const T&)` and `static T "
                "deserialize(std::string_view)`, or pass a class with those two statics as "
                "RedisCache's second template argument, or #include <redkit/json.hpp> and use "
                "redkit::RedisCache<T, redkit::JsonSerializer<T>>.");
  static_assert(std::is_copy_constructible_v<T>,
                "redkit::RedisCache<T>: T must be copy-constructible (a shared load hands each "
                "waiting caller its own copy)");

 public:
  using value_type = T;               ///< The cached type.
  using serializer_type = Serializer;  ///< Turns a T into the stored bytes and back.

  /// A cache of values at `prefix + key` in the Redis that client reaches.
  /// Sends nothing. @throws ConfigError for invalid options.
  RedisCache(Client client, std::string prefix, CacheOptions options = {})
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        options_(validated(options)),
        state_(std::make_unique<detail::PerProcess<State>>([] { return new State(); })) {}

  /// The value at `prefix + key`, or nullopt if there is none (GET).
  /// @throws DecodeError (naming the Redis key) if the serializer cannot
  /// read the stored bytes; IoError, ReplyError.
  std::optional<T> get(std::string_view key) {
    check_live();
    const std::string full = full_key(key);
    Reply r = client_.command(Command{"GET"}.key(full));
    if (r.is_nil()) {
      count(&State::misses);
      return std::nullopt;
    }
    T value = decode(full, r.string());
    count(&State::hits);
    return value;
  }

  /// Stores value at `prefix + key` for the default TTL (with jitter).
  /// One round trip: SET key bytes PX ttl, and UNLINK of the meta side key
  /// (plus COPY/PEXPIRE of the stale copy when stale serving is on).
  /// @throws whatever serialize throws; ReplyError, IoError, each naming the
  /// key and size (a value over the server's proto-max-bulk-len is refused).
  void set(std::string_view key, const T& value) { set(key, value, options_.ttl); }

  /// Stores value with an explicit TTL (with jitter; see set(key, value)).
  /// @throws ConfigError if ttl is not positive or over 100 years; as
  /// set(key, value).
  void set(std::string_view key, const T& value, std::chrono::milliseconds ttl) {
    check_live();
    check_ttl(ttl);
    const std::string full = full_key(key);
    decltype(auto) bytes = Serializer::serialize(value);
    const std::string_view view = bytes;
    std::vector<Command> cmds;
    append_set(cmds, full, view, jittered(ttl));
    store_context(full, view.size(), [&] { check_all(client_.pipeline(cmds)); });
  }

  /// Removes the value at `prefix + key` and its side keys (UNLINK).
  /// True if a value was there. @throws IoError, ReplyError.
  bool erase(std::string_view key) {
    check_live();
    const std::string full = full_key(key);
    const std::string base = detail::cache::side_base(full);
    std::vector<Command> cmds;
    cmds.push_back(Command{"UNLINK"}.key(full));
    cmds.push_back(Command{"UNLINK"}
                       .key(side(base, detail::cache::kMetaSuffix))
                       .key(side(base, detail::cache::kStaleSuffix)));
    auto replies = client_.pipeline(cmds);
    check_all(replies);
    return replies[0].integer() > 0;
  }

  /// True if a value is stored at `prefix + key` (EXISTS).
  /// @throws IoError, ReplyError.
  bool contains(std::string_view key) {
    check_live();
    return client_.command(Command{"EXISTS"}.key(full_key(key))).integer() == 1;
  }

  /// The time the value at `prefix + key` has left (PTTL); nullopt when
  /// there is no value or it has no expiry. @throws IoError, ReplyError.
  std::optional<std::chrono::milliseconds> ttl(std::string_view key) {
    check_live();
    const long long ms = client_.command(Command{"PTTL"}.key(full_key(key))).integer();
    if (ms < 0) return std::nullopt;
    return std::chrono::milliseconds(ms);
  }

  /// The values at `prefix + k` for each k in keys, in the same order;
  /// nullopt where there is none. One MGET, one round trip (on a Cluster:
  /// one MGET per hash slot, in one pipeline). Keys is any range of things
  /// that convert to std::string_view.
  /// @throws DecodeError naming the first key whose bytes cannot be read;
  /// IoError, ReplyError.
  template <class Keys>
  std::vector<std::optional<T>> get_many(const Keys& keys) {
    check_live();
    std::vector<std::string_view> names;
    for (const auto& k : keys) names.emplace_back(k);
    std::vector<std::optional<T>> out(names.size());
    fetch_many(names, [&](std::size_t i, std::optional<std::string_view> bytes) {
      if (!bytes) {
        count(&State::misses);
        return;
      }
      out[i].emplace(decode(prefix_, names[i], *bytes));
      count(&State::hits);
    });
    return out;
  }
  /// get_many() of a braced list: `cache.get_many({"a", "b"})`.
  std::vector<std::optional<T>> get_many(std::initializer_list<std::string_view> keys) {
    return get_many<std::initializer_list<std::string_view>>(keys);
  }

  /// Stores every (key, value) pair of items, each for the default TTL (with
  /// jitter), in one pipeline: what set() sends, for each. Items is any
  /// range of pairs (std::map<std::string, T>, std::vector<std::pair<...>>).
  /// Not atomic: after an error some pairs may be stored.
  /// @throws as set(): an error reply names the key it answered; a failure
  /// of the whole pipeline (the server closed the connection, e.g. over a
  /// value beyond proto-max-bulk-len) names the largest value's key.
  template <class Items>
  void set_many(const Items& items) {
    set_many(items, options_.ttl);
  }

  /// Same, with an explicit TTL. @throws ConfigError if ttl is not positive.
  template <class Items>
  void set_many(const Items& items, std::chrono::milliseconds ttl) {
    check_live();
    check_ttl(ttl);
    std::vector<Command> cmds;
    std::vector<std::pair<std::string, std::size_t>> stored;  // key and size, for errors
    std::vector<std::size_t> first_command;
    std::deque<std::string> owned;  // serialized bytes the commands reference (stable addresses)
    for (const auto& [key, value] : items) {
      const std::string full = full_key(key);
      decltype(auto) bytes = Serializer::serialize(value);
      std::string_view view = bytes;
      using Bytes = decltype(bytes);
      if constexpr (std::is_same_v<Bytes, std::string>) {
        owned.push_back(std::move(bytes));  // made for us: keep it until the pipeline is sent
        view = owned.back();
      } else if constexpr (!std::is_reference_v<Bytes> && !std::is_same_v<Bytes, std::string_view>) {
        owned.emplace_back(view);  // some other owning type: copy before it goes
        view = owned.back();
      }
      first_command.push_back(cmds.size());
      stored.emplace_back(full, view.size());
      append_set(cmds, full, view, jittered(ttl));
    }
    if (cmds.empty()) return;
    // The pipeline fails as a whole when the server drops the connection,
    // as it does on a value beyond proto-max-bulk-len: name the largest.
    std::size_t total = 0;
    const auto largest = std::max_element(stored.begin(), stored.end(),
                                          [](const auto& a, const auto& b) { return a.second < b.second; });
    for (const auto& s : stored) total += s.second;
    std::vector<Reply> replies;
    try {
      replies = client_.pipeline(cmds);
    } catch (const Error& e) {
      const std::string value = value_note(largest->first, largest->second);
      if (stored.size() == 1) rethrow_as(e, std::string(e.what()) + " (storing " + value + ")");
      rethrow_as(e, std::string(e.what()) + " (storing " + std::to_string(stored.size()) + " values, " +
                        std::to_string(total) + " bytes in all, in one pipeline; the largest is " + value + ")");
    }
    for (std::size_t i = 0; i < stored.size(); ++i) {
      const std::size_t end = i + 1 < stored.size() ? first_command[i + 1] : cmds.size();
      for (std::size_t c = first_command[i]; c < end; ++c) {
        if (replies[c].is_error()) {
          store_context(stored[i].first, stored[i].second, [&] { replies[c].check(); });
        }
      }
    }
  }

  /// Cache-aside: the value at `prefix + key` if there is one, otherwise
  /// the loader's result, stored for the default TTL. See the three-argument
  /// form for the details.
  template <class Loader>
  auto get_or_set(std::string_view key, Loader&& loader) ->
      typename detail::cache::LoaderResult<T, typename detail::cache::LoaderReturn<Loader>::type>::type {
    return get_or_set(key, std::forward<Loader>(loader), options_.ttl);
  }

  /// Cache-aside with stampede protection: returns the value at
  /// `prefix + key`, or calls loader() (no arguments), stores its result
  /// for ttl (with jitter) and returns it.
  ///
  /// The loader returns T (get_or_set returns T), or std::optional<T>
  /// (get_or_set returns std::optional<T>; an empty result is "absent":
  /// nothing is stored, and with CacheOptions::negative_ttl the absence is
  /// remembered for that long).
  ///
  /// - Threads of this process that miss the same key while it loads wait
  ///   for that one load and share its result, or its exception.
  /// - Across processes at most one loader runs per key: it holds the fill
  ///   lock (SET NX PX, fill_lock_ttl); the others wait, blocked in BLPOP on
  ///   a dedicated connection, and are woken when the value lands, or get the
  ///   stale copy at once when stale serving is on. A crashed loader delays
  ///   them by at most fill_lock_ttl; after wait_timeout they load
  ///   themselves.
  /// - A loader that throws: the exception reaches every caller in this
  ///   process's flight, nothing is stored, the lock is released and the
  ///   waiting processes are woken (one of them loads next).
  /// - A stored value the serializer cannot read counts in stats().errors
  ///   and is treated as a miss: it is loaded again and overwritten.
  /// - With xfetch_beta > 0, a read that finds the value may reload it early
  ///   (see CacheOptions::xfetch_beta); meanwhile everyone else gets the
  ///   current value.
  ///
  /// Commands: a hit is one round trip (GET, with PTTL and GET of the meta
  /// side key when XFetch is on or the loader returns std::optional). A load
  /// adds one EVALSHA to claim the fill lock, a SET PX of the value, and one
  /// EVALSHA that records the load time, releases the lock and wakes waiters.
  /// @throws ConfigError if ttl is not positive; whatever the loader or
  /// serialize throws; IoError, ReplyError.
  template <class Loader>
  auto get_or_set(std::string_view key, Loader&& loader, std::chrono::milliseconds ttl) ->
      typename detail::cache::LoaderResult<T, typename detail::cache::LoaderReturn<Loader>::type>::type {
    using Result = detail::cache::LoaderResult<T, typename detail::cache::LoaderReturn<Loader>::type>;
    check_live();
    check_ttl(ttl);
    auto load = [&]() -> std::optional<T> {
      if constexpr (!Result::valid) {
        return std::nullopt;  // never runs: Result's static_assert has failed
      } else if constexpr (Result::optional) {
        auto r = loader();
        if (!r) return std::nullopt;
        return std::optional<T>(std::in_place, std::move(*r));
      } else {
        return std::optional<T>(std::in_place, loader());
      }
    };
    std::optional<T> result = read_or_load(full_key(key), load, ttl, Result::optional);
    if constexpr (Result::optional) {
      return result;
    } else {
      return std::move(*result);
    }
  }

  /// Removes every key that starts with the prefix, and redkit's side keys
  /// of those values, in batches: on every master, SCAN MATCH prefix* COUNT
  /// 1000 (glob characters in the prefix escaped) and a second SCAN for the
  /// side keys that start with '{', each batch followed by one pipeline of
  /// UNLINKs; never KEYS. Returns how many keys were removed, side keys
  /// included. Not atomic: values written meanwhile may survive. An empty
  /// prefix clears the whole database. @throws IoError, ReplyError.
  std::size_t clear() {
    check_live();
    using detail::cache::glob_escape;
    std::size_t removed = scan_and_unlink(glob_escape(prefix_) + "*", [](std::string_view) { return true; });
    removed += scan_and_unlink("\\{*" + glob_escape(prefix_) + "*", [this](std::string_view k) {
      return detail::cache::is_untagged_side_key(k, prefix_);
    });
    return removed;
  }

  /// A snapshot of this object's counters (see CacheStats); zeros for a
  /// moved-from cache. Never throws.
  CacheStats stats() const noexcept {
    CacheStats s;
    if (!state_) return s;  // moved from
    const State* st = &state_->get();
    s.hits = st->hits.load(std::memory_order_relaxed);
    s.misses = st->misses.load(std::memory_order_relaxed);
    s.loads = st->loads.load(std::memory_order_relaxed);
    s.load_failures = st->load_failures.load(std::memory_order_relaxed);
    s.errors = st->errors.load(std::memory_order_relaxed);
    s.early_refreshes = st->early_refreshes.load(std::memory_order_relaxed);
    s.coalesced = st->coalesced.load(std::memory_order_relaxed);
    s.stale_served = st->stale_served.load(std::memory_order_relaxed);
    return s;
  }

  /// The prefix every key is stored under (`prefix + key`).
  const std::string& prefix() const noexcept { return prefix_; }
  /// The options given at construction.
  const CacheOptions& options() const noexcept { return options_; }
  /// The client this cache sends its commands through.
  Client& client() noexcept { return client_; }

 private:
  using Claim = detail::cache::Claim;
  using Counter = std::atomic<std::uint64_t>;

  // Per-object state behind a pointer, so the cache stays movable.
  struct State {
    detail::SingleFlight<std::optional<T>> flights;
    Counter hits{0}, misses{0}, loads{0}, load_failures{0}, errors{0}, early_refreshes{0}, coalesced{0},
        stale_served{0};
  };

  // What one get_or_set read saw. value points into replies.
  struct Snapshot {
    std::vector<Reply> replies;
    std::optional<std::string_view> value;
    long long pttl = -1;  // -1: not read (or no expiry)
    std::string_view meta;
  };

  static CacheOptions validated(const CacheOptions& o) {
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
    return o;
  }

  static void check_ttl(std::chrono::milliseconds ttl) {
    detail::check_duration(ttl, std::chrono::milliseconds(1), "cache ttl");
  }

  void check_live() const { detail::check_not_moved_from(state_ != nullptr, "RedisCache"); }

  std::string full_key(std::string_view key) const {
    std::string full;
    full.reserve(prefix_.size() + key.size());
    full.append(prefix_).append(key);
    return full;
  }

  static std::string side(std::string_view base, std::string_view suffix) {
    return detail::cache::side_key(base, suffix);
  }

  void count(Counter State::*counter) const {
    (live().*counter).fetch_add(1, std::memory_order_relaxed);
  }

  std::chrono::milliseconds jittered(std::chrono::milliseconds ttl) const {
    if (options_.ttl_jitter <= 0.0) return ttl;
    const double cut = static_cast<double>(ttl.count()) * options_.ttl_jitter *
                       (1.0 - detail::cache::random_unit());  // u in [0, 1)
    return std::chrono::milliseconds(std::max<long long>(1, ttl.count() - static_cast<long long>(cut)));
  }

  /// Reads bytes with the serializer; anything it throws becomes a
  /// DecodeError naming the Redis key, head + tail (and counts in
  /// stats().errors). The key is only put together for the error.
  T decode(std::string_view head, std::string_view tail, std::string_view bytes) const {
    try {
      return Serializer::deserialize(bytes);
    } catch (...) {
      count(&State::errors);
      throw DecodeError(std::string(head).append(tail), detail::cache::current_exception_text());
    }
  }
  T decode(const std::string& full, std::string_view bytes) const { return decode(full, {}, bytes); }

  static void check_all(const std::vector<Reply>& replies) {
    for (const auto& r : replies) r.check();
  }

  // The commands of one set(): the value, the meta side key dropped (its
  // load time and any "absent" marker no longer apply), the stale copy. The
  // value's bytes are referenced, not copied (Command::arg_view): they must
  // stay alive until the commands have run.
  void append_set(std::vector<Command>& cmds, const std::string& full, std::string_view bytes,
                  std::chrono::milliseconds ttl) const {
    const std::string base = detail::cache::side_base(full);
    cmds.push_back(Command{"SET"}.key(full).arg_view(bytes).arg("PX").arg(static_cast<long long>(ttl.count())));
    cmds.push_back(Command{"UNLINK"}.key(side(base, detail::cache::kMetaSuffix)));
    if (options_.stale_ttl.count() > 0) {
      const std::string stale = side(base, detail::cache::kStaleSuffix);
      cmds.push_back(Command{"COPY"}.key(full).key(stale).arg("REPLACE"));
      cmds.push_back(Command{"PEXPIRE"}.key(stale).arg(
          static_cast<long long>(detail::saturating_add(ttl, options_.stale_ttl).count())));
    }
  }

  // Runs f, which stores `size` bytes at key; an error gets the key and the
  // size added to its message, keeping its type.
  template <class F>
  static void store_context(const std::string& full, std::size_t size, F&& f) {
    try {
      f();
    } catch (const Error& e) {
      rethrow_as(e, std::string(e.what()) + " (storing " + value_note(full, size) + ")");
    }
  }

  // "N bytes at cache key 'k'", and the proto-max-bulk-len hint for a big value.
  static std::string value_note(const std::string& full, std::size_t size) {
    std::string note = std::to_string(size) + " bytes at cache key '" + full + "'";
    if (size > (std::size_t{1} << 20)) {
      note += "; Redis refuses values longer than its proto-max-bulk-len (512 MB by default) and "
              "closes the connection";
    }
    return note;
  }

  [[noreturn]] static void rethrow_as(const Error& e, const std::string& what) {
    if (dynamic_cast<const ReplyError*>(&e)) throw ReplyError(what);
    if (dynamic_cast<const TimeoutError*>(&e)) throw TimeoutError(what);
    if (dynamic_cast<const ClosedError*>(&e)) throw ClosedError(what);
    if (dynamic_cast<const IoError*>(&e)) throw IoError(what);
    if (dynamic_cast<const ProtocolError*>(&e)) throw ProtocolError(what);
    throw Error(what);
  }

  // The one multi-key read; calls on_value(i, bytes or nullopt) for each
  // key, in order. On one server (Redis, also in sentinel mode): one MGET of
  // all keys, one round trip. On a Cluster: one MGET per hash slot, all in
  // one pipeline (one round per node).
  template <class F>
  void fetch_many(const std::vector<std::string_view>& keys, F&& on_value) {
    if (keys.empty()) return;
    if constexpr (Client::shards_keys) {
      std::vector<std::string> full;
      full.reserve(keys.size());
      for (std::string_view k : keys) full.push_back(full_key(k));
      const auto groups = group_by_slot(full);
      std::vector<Command> mgets;
      for (const auto& group : groups) {
        Command mget{"MGET"};
        for (std::size_t i : group) mget.key(full[i]);
        mgets.push_back(std::move(mget));
      }
      const std::vector<Reply> replies = client_.pipeline(mgets);
      for (std::size_t g = 0; g < groups.size(); ++g) {
        replies[g].check();
        for (std::size_t j = 0; j < groups[g].size(); ++j) on_value(groups[g][j], replies[g][j].optional_string());
      }
    } else {
      Command mget{"MGET"};
      std::string full;
      for (std::string_view k : keys) {
        full.assign(prefix_).append(k);
        mget.key(full);
      }
      Reply r = client_.command(mget);
      if (r.size() != keys.size()) throw ProtocolError("redkit: MGET returned the wrong number of values");
      for (std::size_t i = 0; i < keys.size(); ++i) on_value(i, r[i].optional_string());
    }
  }

  // SCANs every master for pattern and UNLINKs the keys keep() accepts, one
  // pipeline of single-key UNLINKs per batch. Returns how many were removed.
  template <class Keep>
  std::size_t scan_and_unlink(const std::string& pattern, Keep&& keep) {
    std::size_t removed = 0;
    for (Redis& node : client_.masters()) {
      std::string cursor = "0";
      do {
        Reply r = node.command(Command{"SCAN"}.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000));
        cursor = std::string(r[0].string());
        std::vector<Command> unlinks;
        const ReplyView batch = r[1];
        for (std::size_t i = 0; i < batch.size(); ++i) {
          const std::string_view key = batch[i].string();
          if (keep(key)) unlinks.push_back(Command{"UNLINK"}.key(key));
        }
        for (const Reply& u : node.pipeline(unlinks)) removed += static_cast<std::size_t>(u.integer());
      } while (cursor != "0");
    }
    return removed;
  }

  // ---- get_or_set ----

  template <class Load>
  std::optional<T> read_or_load(const std::string& full, Load& load, std::chrono::milliseconds ttl,
                                bool optional_loader) {
    const std::string flight = (optional_loader ? "o" : "v") + full;
    Snapshot s = read_snapshot(full, optional_loader);
    bool replace = false;  // the stored bytes are unreadable: load over them
    if (s.value) {
      std::optional<T> value;
      try {
        value.emplace(decode(full, *s.value));
      } catch (const DecodeError&) {
        replace = true;
      }
      if (value) {
        count(&State::hits);
        if (!due_for_refresh(s)) return value;
        auto fresh = live().flights.run_unless_busy(flight, [&] { return refresh(full, load, ttl, value, s.pttl); });
        return fresh ? std::move(*fresh) : value;
      }
    } else if (optional_loader && s.meta == "absent") {
      count(&State::hits);
      return std::nullopt;
    }
    count(&State::misses);
    if (options_.stale_ttl.count() > 0 && !replace && live().flights.busy(flight)) {
      if (auto stale = read_stale(full)) return stale;
    }
    return live().flights.run(flight, [&] { return fill(full, load, ttl, replace, optional_loader); },
                               live().coalesced);
  }

  // GET, plus PTTL and the meta side key when early refresh or negative
  // caching may need them, in one round trip.
  Snapshot read_snapshot(const std::string& full, bool optional_loader) {
    Snapshot s;
    if (options_.xfetch_beta > 0.0 || optional_loader) {
      const std::string meta = side(detail::cache::side_base(full), detail::cache::kMetaSuffix);
      s.replies = client_.pipeline({Command{"GET"}.key(full), Command{"PTTL"}.key(full), Command{"GET"}.key(meta)});
      check_all(s.replies);
      s.value = s.replies[0].optional_string();
      s.pttl = s.replies[1].integer();
      s.meta = s.replies[2].optional_string().value_or(std::string_view());
    } else {
      s.replies.push_back(client_.command(Command{"GET"}.key(full)));
      s.value = s.replies[0].optional_string();
    }
    return s;
  }

  // XFetch: reload early when load_time * beta * -ln(u) >= time left.
  bool due_for_refresh(const Snapshot& s) const {
    if (options_.xfetch_beta <= 0.0 || s.pttl <= 0) return false;
    long long delta_ms = 0;
    const auto res = std::from_chars(s.meta.data(), s.meta.data() + s.meta.size(), delta_ms);
    if (res.ec != std::errc() || delta_ms <= 0) return false;  // no load time known
    const double gap = static_cast<double>(delta_ms) * options_.xfetch_beta * -std::log(detail::cache::random_unit());
    return gap >= static_cast<double>(s.pttl);
  }

  // An early refresh by this caller, who holds the value `current` read
  // with seen_pttl left. Gives up (returning current) if another caller is
  // loading or has rewritten the value since.
  template <class Load>
  std::optional<T> refresh(const std::string& full, Load& load, std::chrono::milliseconds ttl,
                           const std::optional<T>& current, long long seen_pttl) {
    const std::string token = detail::cache::fill_token();
    const Claim c = claim(full, token, false, false, std::to_string(seen_pttl), "keep");
    if (c.kind != Claim::Kind::Load) return current;
    count(&State::early_refreshes);
    return load_and_store(full, load, ttl, token);
  }

  // The load path of one flight: wait for another process's load, serve
  // the stale copy, or load.
  template <class Load>
  std::optional<T> fill(const std::string& full, Load& load, std::chrono::milliseconds ttl, bool replace,
                        bool optional_loader) {
    using Kind = Claim::Kind;
    const std::string token = detail::cache::fill_token();
    const auto deadline = detail::saturating_deadline(std::chrono::steady_clock::now(), options_.wait_timeout);
    bool check_present = !replace;
    bool allow_stale = options_.stale_ttl.count() > 0;
    for (;;) {
      const Claim c = claim(full, token, check_present, optional_loader, "", allow_stale ? "stale" : "wait");
      switch (c.kind) {
        case Kind::Present: {
          Reply r = client_.command(Command{"GET"}.key(full));
          if (r.is_nil()) break;  // gone again: claim again
          try {
            return decode(full, r.string());
          } catch (const DecodeError&) {
            check_present = false;
          }
          break;
        }
        case Kind::Absent:
          return std::nullopt;
        case Kind::Load:
          return load_and_store(full, load, ttl, token);
        case Kind::Stale:
          if (auto stale = read_stale(full)) return stale;
          allow_stale = false;  // vanished or unreadable: wait instead
          break;
        case Kind::Wait: {
          const auto now = std::chrono::steady_clock::now();
          if (now >= deadline) return load_and_store(full, load, ttl, std::string());
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
          // The lock's expiry bounds the wait: a crashed loader's lock runs out.
          wait_for_fill(full, c.fill_pttl.count() > 0 ? std::min(c.fill_pttl, left) : left);
          check_present = true;
          break;
        }
        case Kind::Fresh:
        case Kind::Busy:
          break;  // not asked for by fill
      }
    }
  }

  Claim claim(const std::string& full, const std::string& token, bool check_present, bool honour_negative,
              const std::string& seen_pttl, const char* on_busy) {
    using namespace detail::cache;
    const std::string base = side_base(full);
    const std::string keys[] = {full, side(base, kMetaSuffix), side(base, kFillSuffix),
                                side(base, kWaitersSuffix), side(base, kStaleSuffix)};
    const std::string args[] = {token,
                                decimal(options_.fill_lock_ttl.count()),
                                check_present ? "1" : "0",
                                honour_negative ? "1" : "0",
                                seen_pttl,
                                on_busy};
    Reply r = client_.eval(claim_script(), keys, args);
    return Claim{claim_kind(r[0].string()), std::chrono::milliseconds(r[1].integer())};
  }

  // Blocks on the wake list (detail::WaitList: BLPOP on a dedicated
  // connection, the policy the lock's waiters share) until a loader's finish
  // pushes to it or timeout passes. Woken, timed out or told to look again
  // (failover, moved slot, a closed wait connection): the caller looks again.
  void wait_for_fill(const std::string& full, std::chrono::milliseconds timeout) {
    detail::WaitList<Client> list(side(detail::cache::side_base(full), detail::cache::kWakeSuffix));
    (void)list.wait(client_, std::max(timeout, std::chrono::milliseconds(1)), false);
  }

  // Calls the loader (this caller holds the fill lock when token is not
  // empty) and stores its result: SET PX, then finish_script.
  template <class Load>
  std::optional<T> load_and_store(const std::string& full, Load& load, std::chrono::milliseconds ttl,
                                  const std::string& token) {
    count(&State::loads);
    const auto start = std::chrono::steady_clock::now();
    std::optional<T> result;
    try {
      result = load();
    } catch (...) {
      count(&State::load_failures);
      release_quietly(full, token);
      throw;
    }
    const auto took = std::chrono::steady_clock::now() - start;
    const long long delta_ms =
        std::max<long long>(1, std::chrono::ceil<std::chrono::milliseconds>(took).count());
    if (!result) {
      const long long negative = options_.negative_ttl ? options_.negative_ttl->count() : 0;
      finish(full, token, "absent", "", negative);
      return result;
    }
    const std::chrono::milliseconds stored_ttl = jittered(ttl);
    try {
      decltype(auto) bytes = Serializer::serialize(*result);
      const std::string_view view = bytes;
      store_context(full, view.size(), [&] {
        client_.command(Command{"SET"}.key(full).arg_view(view).arg("PX").arg(
            static_cast<long long>(stored_ttl.count())));
      });
    } catch (...) {
      release_quietly(full, token);
      throw;
    }
    finish(full, token, "stored", std::to_string(delta_ms), stored_ttl.count());
    return result;
  }

  void finish(const std::string& full, const std::string& token, const char* outcome, const std::string& meta,
              long long meta_ttl_ms) {
    using namespace detail::cache;
    const std::string base = side_base(full);
    const std::string keys[] = {full,
                                side(base, kMetaSuffix),
                                side(base, kFillSuffix),
                                side(base, kWaitersSuffix),
                                side(base, kWakeSuffix),
                                side(base, kStaleSuffix)};
    const std::string args[] = {token,
                                outcome,
                                meta,
                                decimal(meta_ttl_ms),
                                decimal(options_.stale_ttl.count()),
                                decimal(options_.fill_lock_ttl.count())};
    client_.eval(finish_script(), keys, args);
  }

  // A failed load still releases the lock and wakes the waiters (one of
  // them loads next). Best effort: the load's own exception is what the
  // caller gets.
  void release_quietly(const std::string& full, const std::string& token) noexcept {
    try {
      finish(full, token, "failed", "", 0);
    } catch (...) {
    }
  }

  std::optional<T> read_stale(const std::string& full) {
    const std::string stale = side(detail::cache::side_base(full), detail::cache::kStaleSuffix);
    Reply r = client_.command(Command{"GET"}.key(stale));
    if (r.is_nil()) return std::nullopt;
    try {
      std::optional<T> value(std::in_place, decode(full, r.string()));
      count(&State::stale_served);
      return value;
    } catch (const DecodeError&) {
      return std::nullopt;
    }
  }

  Client client_;
  std::string prefix_;
  CacheOptions options_;
  // This process's state. In a fork child the inherited one may show loads
  // in flight on threads that do not exist there (their waiters would wait
  // for ever) and a mutex a parent thread held: the child starts afresh
  // (PerProcess leaks the parent's).
  State& live() const {
    check_live();
    return state_->get();
  }

  std::unique_ptr<detail::PerProcess<State>> state_;
};

}  // namespace redkit
