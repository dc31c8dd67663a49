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
/// keeps lives in side keys `{T}prefix+key:rk-...` in the same hash slot (T
/// six digits chosen for the slot; see detail/cache_keys.hpp): `:rk-meta`
/// (the measured load time for early refresh, or the marker of a cached
/// "absent"), `:rk-fill` (the fill lock), `:rk-waiters` and `:rk-wake` (the
/// wake-up of waiting processes), `:rk-stale` (with stale serving on, a copy
/// of the value that outlives it by CacheOptions::stale_ttl). So `GET
/// prefix+key` from any language returns the value, and a value written
/// there by another program is read. ACL: a user needs the key patterns
/// `~prefix*` and `~{??????}prefix*`.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redkit/cache/entry_keys.hpp"
#include "redkit/cache/errors.hpp"
#include "redkit/cache/fanout.hpp"
#include "redkit/cache/fill.hpp"
#include "redkit/cache/near.hpp"
#include "redkit/cache/options.hpp"
#include "redkit/command.hpp"
#include "redkit/detail/duration.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/error.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"
#include "redkit/serializer.hpp"

namespace redkit {

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
        options_(detail::cache::checked(options)),
        state_(std::make_unique<detail::PerProcess<State>>(
            [client = client_, prefix = prefix_, near = options_.near_cache]() mutable {
              return new State(client, prefix, near);
            })) {}

  /// The value at `prefix + key`, or nullopt if there is none (GET).
  /// @throws DecodeError (naming the Redis key) if the serializer cannot
  /// read the stored bytes; IoError, ReplyError.
  std::optional<T> get(std::string_view key) {
    State& st = live();
    if (st.near) {
      if (std::optional<T> copy = st.near->get(key)) {
        count(&Counters::hits);
        return copy;
      }
    }
    const std::string full = detail::cache::full_key(prefix_, key);
    std::optional<T> value;
    if (st.near) {
      value = st.near->fetch(key, full, [&](std::string_view bytes) { return decode(full, {}, bytes); });
    } else {
      Reply r = client_.command(Command{"GET"}.key(full));
      if (!r.is_nil()) value.emplace(decode(full, {}, r.string()));
    }
    if (value) {
      count(&Counters::hits);
    } else {
      count(&Counters::misses);
    }
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
    State& st = live();
    detail::cache::check_ttl(ttl);
    const typename Near::DropOnExit forget(st.near.get(), key);
    const auto keys = entry(key);
    decltype(auto) bytes = Serializer::serialize(value);
    const std::string_view view = bytes;
    std::vector<Command> cmds;
    append_set(cmds, keys, view, detail::cache::jittered(options_, ttl));
    detail::cache::store_context(keys.value, view.size(), [&] { check_all(client_.pipeline(cmds)); });
  }

  /// Removes the value at `prefix + key` and its side keys (UNLINK).
  /// True if a value was there. @throws IoError, ReplyError.
  bool erase(std::string_view key) {
    const typename Near::DropOnExit forget(live().near.get(), key);
    const auto keys = entry(key);
    std::vector<Command> cmds;
    cmds.push_back(Command{"UNLINK"}.key(keys.value));
    cmds.push_back(Command{"UNLINK"}.key(keys.meta).key(keys.stale()));
    auto replies = client_.pipeline(cmds);
    check_all(replies);
    return replies[0].integer() > 0;
  }

  /// True if a value is stored at `prefix + key` (EXISTS).
  /// @throws IoError, ReplyError.
  bool contains(std::string_view key) {
    State& st = live();
    if (st.near && st.near->contains(key)) return true;
    return client_.command(Command{"EXISTS"}.key(detail::cache::full_key(prefix_, key))).integer() == 1;
  }

  /// The time the value at `prefix + key` has left (PTTL); nullopt when
  /// there is no value or it has no expiry. @throws IoError, ReplyError.
  std::optional<std::chrono::milliseconds> ttl(std::string_view key) {
    live();
    const long long ms = client_.command(Command{"PTTL"}.key(detail::cache::full_key(prefix_, key))).integer();
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
    std::vector<std::string_view> names;
    if constexpr (has_size<Keys>::value) names.reserve(std::size(keys));
    for (const auto& k : keys) names.emplace_back(k);
    std::vector<std::optional<T>> out(names.size());
    State& st = live();
    if (st.near) return near_get_many(*st.near, names, std::move(out));
    std::uint64_t found = 0;
    detail::cache::fetch_many(client_, prefix_, names, [&](std::size_t i, std::optional<std::string_view> bytes) {
      if (!bytes) return;
      out[i].emplace(detail::cache::decode<T, Serializer>(st.counters, prefix_, names[i], *bytes));
      ++found;
    });
    st.counters.hits.add(found);
    st.counters.misses.fetch_add(names.size() - found, std::memory_order_relaxed);
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
    State& st = live();
    detail::cache::check_ttl(ttl);
    std::vector<std::string_view> written;  // near copies to drop, whatever happens
    const typename Near::DropOnExit forget(st.near.get(), written);
    std::vector<Command> cmds;
    std::vector<std::pair<std::string, std::size_t>> stored;  // key and size, for errors
    std::vector<std::size_t> first_command;
    std::deque<std::string> owned;  // serialized bytes the commands reference (stable addresses)
    for (const auto& [key, value] : items) {
      auto keys = entry(key);
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
      if (st.near) written.emplace_back(key);
      first_command.push_back(cmds.size());
      append_set(cmds, keys, view, detail::cache::jittered(options_, ttl));
      stored.emplace_back(std::move(keys.value), view.size());
    }
    if (cmds.empty()) return;
    std::vector<Reply> replies;
    if (stored.size() == 1) {
      detail::cache::store_context(stored[0].first, stored[0].second, [&] { replies = client_.pipeline(cmds); });
    } else {
      try {
        replies = client_.pipeline(cmds);
      } catch (const Error& e) {
        // The pipeline fails as a whole when the server drops the
        // connection, as it does on a value beyond proto-max-bulk-len: name
        // the largest.
        std::size_t total = 0;
        for (const auto& s : stored) total += s.second;
        const auto largest = std::max_element(stored.begin(), stored.end(),
                                              [](const auto& a, const auto& b) { return a.second < b.second; });
        detail::cache::rethrow_as(e, std::string(e.what()) + " (storing " + std::to_string(stored.size()) +
                                         " values, " + std::to_string(total) +
                                         " bytes in all, in one pipeline; the largest is " +
                                         detail::cache::value_note(largest->first, largest->second) + ")");
      }
    }
    for (std::size_t i = 0; i < stored.size(); ++i) {
      const std::size_t end = i + 1 < stored.size() ? first_command[i + 1] : cmds.size();
      for (std::size_t c = first_command[i]; c < end; ++c) {
        if (replies[c].is_error()) {
          detail::cache::store_context(stored[i].first, stored[i].second, [&] { replies[c].check(); });
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
  /// - A loaded value the server refuses to store (an error reply to the
  ///   SET: OOM under maxmemory, NOPERM) is returned all the same; the failed
  ///   store counts in stats().store_failures, the fill lock is released and
  ///   the next miss loads again.
  /// - A stored value the serializer cannot read counts in stats().errors
  ///   and is treated as a miss: it is loaded again and overwritten.
  /// - With xfetch_beta > 0, a read that finds the value may reload it early
  ///   (see CacheOptions::xfetch_beta); meanwhile everyone else gets the
  ///   current value. An early reload that fails (the loader throws) returns
  ///   the current value to its caller instead of throwing.
  ///
  /// Commands: a hit is one round trip (GET, with PTTL when XFetch is on
  /// and GET of the meta side key when XFetch is on or the loader returns
  /// std::optional). A load
  /// adds one EVALSHA to claim the fill lock, a SET PX of the value, and one
  /// EVALSHA that records the load time, releases the lock and wakes waiters.
  /// @throws ConfigError if ttl is not positive; whatever the loader or
  /// serialize throws; IoError, ReplyError.
  template <class Loader>
  auto get_or_set(std::string_view key, Loader&& loader, std::chrono::milliseconds ttl) ->
      typename detail::cache::LoaderResult<T, typename detail::cache::LoaderReturn<Loader>::type>::type {
    using Result = detail::cache::LoaderResult<T, typename detail::cache::LoaderReturn<Loader>::type>;
    State& st = live();
    detail::cache::check_ttl(ttl);
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
    auto precheck = detail::cache::NearPrecheck::None;
    if (st.near) {
      if (auto copy = st.near->peek(key)) {
        if (!detail::cache::xfetch_due(copy->delta_ms, copy->left.count(), options_.xfetch_beta)) {
          st.near->count_hit();
          count(&Counters::hits);
          if constexpr (Result::optional) {
            return std::optional<T>(std::move(copy->value));
          } else {
            return std::move(copy->value);
          }
        }
        precheck = detail::cache::NearPrecheck::DueForRefresh;
      }
    }
    detail::cache::GetOrSet<T, Serializer, Client> call(client_, options_, st.counters, st.flights, key, entry(key),
                                                        ttl, Result::optional, st.near.get(), precheck);
    std::optional<T> result = call.run(load);
    if constexpr (Result::optional) {
      return result;
    } else {
      return std::move(*result);
    }
  }

  /// Removes every key that starts with the prefix, and redkit's side keys
  /// of those values, in batches: on every master, SCAN MATCH prefix* COUNT
  /// 1000 (glob characters in the prefix escaped) and a second SCAN MATCH
  /// {??????}prefix* for the side keys, each batch followed by one pipeline of
  /// UNLINKs; never KEYS. Returns how many keys were removed, side keys
  /// included. Not atomic: values written meanwhile may survive. An empty
  /// prefix clears the whole database. @throws IoError, ReplyError.
  std::size_t clear() {
    State& st = live();
    const typename Near::DropOnExit forget(st.near.get(), typename Near::DropOnExit::All{});
    return detail::cache::clear_prefix(client_, prefix_);
  }

  /// A snapshot of this object's counters (see CacheStats); zeros for a
  /// moved-from cache. Never throws.
  CacheStats stats() const noexcept {
    if (!state_) return CacheStats{};  // moved from
    const State& st = state_->get();
    CacheStats s = st.counters.snapshot();
    if (st.near) st.near->add_stats(s);
    return s;
  }

  /// The prefix every key is stored under (`prefix + key`).
  const std::string& prefix() const noexcept { return prefix_; }
  /// The options given at construction.
  const CacheOptions& options() const noexcept { return options_; }
  /// The client this cache sends its commands through.
  Client& client() noexcept { return client_; }

 private:
  using Counters = detail::cache::Counters;
  using EntryKeys = detail::cache::EntryKeys;

  using Near = detail::cache::Near<T, Client>;

  template <class R, class = void>
  struct has_size : std::false_type {};
  template <class R>
  struct has_size<R, std::void_t<decltype(std::size(std::declval<const R&>()))>> : std::true_type {};

  // What this object keeps per process, behind a pointer so the cache stays
  // movable: single flight, counters, and the near cache (a fork child
  // gets its own, empty, attached to the child's tracker).
  struct State {
    State(const Client& client, const std::string& prefix, const NearCacheOptions& near_options)
        : near(near_options.max_entries > 0 ? std::make_unique<Near>(client, prefix, near_options) : nullptr) {}
    detail::cache::Flights<T> flights;
    Counters counters;
    std::unique_ptr<Near> near;
  };

  // get_many through the near cache: copies from memory, the rest read
  // (MGET and PTTLs in one round trip) and kept.
  std::vector<std::optional<T>> near_get_many(Near& near, const std::vector<std::string_view>& names,
                                              std::vector<std::optional<T>> out) {
    std::vector<std::size_t> missing;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if ((out[i] = near.get(names[i]))) {
        count(&Counters::hits);
      } else {
        missing.push_back(i);
      }
    }
    if (missing.empty()) return out;
    std::vector<std::string_view> wanted;
    wanted.reserve(missing.size());
    typename Near::Reads reads(near, missing.size());
    for (std::size_t i : missing) {
      wanted.push_back(names[i]);
      reads.add(names[i]);
    }
    auto on_value = [&](std::size_t j, std::optional<std::string_view> bytes, long long pttl) {
      const std::size_t i = missing[j];
      if (!bytes) {
        reads.settle(j, nullptr, nullptr, -2);
        count(&Counters::misses);
        return;
      }
      out[i].emplace(decode(prefix_, names[i], *bytes));
      reads.settle(j, &*bytes, &*out[i], pttl);
      count(&Counters::hits);
    };
    if (reads.any()) {
      detail::cache::fetch_many_with_ttl(client_, prefix_, wanted, on_value);
    } else {
      detail::cache::fetch_many(client_, prefix_, wanted, [&](std::size_t j, std::optional<std::string_view> b) {
        on_value(j, b, -2);
      });
    }
    return out;
  }

  EntryKeys entry(std::string_view key) const { return EntryKeys::of(detail::cache::full_key(prefix_, key)); }

  template <class C>
  void count(C Counters::*counter) const {
    Counters::bump(live().counters.*counter);
  }

  T decode(std::string_view head, std::string_view tail, std::string_view bytes) const {
    return detail::cache::decode<T, Serializer>(live().counters, head, tail, bytes);
  }

  static void check_all(const std::vector<Reply>& replies) {
    for (const auto& r : replies) r.check();
  }

  // The commands of one set(): the value, the meta side key dropped (its
  // load time and any "absent" marker no longer apply), the stale copy. The
  // value's bytes are referenced, not copied (Command::arg_view): they must
  // stay alive until the commands have run.
  void append_set(std::vector<Command>& cmds, const EntryKeys& keys, std::string_view bytes,
                  std::chrono::milliseconds ttl) const {
    cmds.push_back(
        Command{"SET"}.key(keys.value).arg_view(bytes).arg("PX").arg(static_cast<long long>(ttl.count())));
    cmds.push_back(Command{"UNLINK"}.key(keys.meta));
    if (options_.stale_ttl.count() > 0) {
      const std::string stale = keys.stale();
      cmds.push_back(Command{"COPY"}.key(keys.value).key(stale).arg("REPLACE"));
      cmds.push_back(Command{"PEXPIRE"}.key(stale).arg(
          static_cast<long long>(detail::saturating_add(ttl, options_.stale_ttl).count())));
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
    detail::check_not_moved_from(state_ != nullptr, "RedisCache");
    return state_->get();
  }

  std::unique_ptr<detail::PerProcess<State>> state_;
};

}  // namespace redkit
