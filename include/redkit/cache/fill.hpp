/// @file cache/fill.hpp
/// One get_or_set call: single flight in the process, the fill lock across
/// processes (claim, wait, load, finish), stale serving and XFetch early
/// refresh. Part of <redkit/cache.hpp>; RedisCache::get_or_set documents
/// the behaviour.
///
/// Thread safety: a GetOrSet object belongs to one call on one thread; what
/// it shares (counters, flights, client) is thread-safe.
/// Exceptions: whatever the loader or serialize throws; IoError, ReplyError.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "redkit/cache/entry_keys.hpp"
#include "redkit/cache/errors.hpp"
#include "redkit/cache/near.hpp"
#include "redkit/cache/options.hpp"
#include "redkit/cache/scripts.hpp"
#include "redkit/cache/waiter.hpp"
#include "redkit/command.hpp"
#include "redkit/detail/duration.hpp"
#include "redkit/detail/single_flight.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/reply.hpp"

namespace redkit::detail::cache {

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

/// In-process single flight of a cache: one load per key at a time.
template <class T>
using Flights = detail::SingleFlight<std::optional<T>>;

/// What one get_or_set read saw. value points into replies.
struct Snapshot {
  std::vector<Reply> replies;
  std::optional<std::string_view> value;
  long long pttl = -1;  // -1: not read (or no expiry)
  std::string_view meta;
};

/// What a near cache's get_or_set found in memory: nothing, or a copy that
/// XFetch says to reload now (the read then goes to Redis and the reload
/// is decided: no second draw).
enum class NearPrecheck { None, DueForRefresh };

inline std::string decimal(long long v) { return std::to_string(v); }

/// The load time stored in the meta side key, or 0 when there is none.
inline long long load_time_ms(std::string_view meta) noexcept {
  long long delta_ms = 0;
  const auto res = std::from_chars(meta.data(), meta.data() + meta.size(), delta_ms);
  return res.ec == std::errc() && res.ptr == meta.data() + meta.size() && delta_ms > 0 ? delta_ms : 0;
}

/// XFetch: reload early when load_time * beta * -ln(u) >= time left, u
/// uniform in (0, 1]. Never without a known load time and time left.
inline bool xfetch_due(long long delta_ms, long long left_ms, double beta) {
  if (beta <= 0.0 || delta_ms <= 0 || left_ms <= 0) return false;
  const double gap = static_cast<double>(delta_ms) * beta * -std::log(detail::random_unit());
  return gap >= static_cast<double>(left_ms);
}

/// One get_or_set call on the entry `keys` (of the cache's key `key`),
/// storing for ttl. The loader (a callable returning std::optional<T>) is
/// passed to run(). near: the cache's near cache in this process, if on:
/// the value read is kept there, and a load drops the old copy.
template <class T, class Serializer, class Client>
class GetOrSet {
 public:
  GetOrSet(Client& client, const CacheOptions& options, Counters& counters, Flights<T>& flights,
           std::string_view key, EntryKeys keys, std::chrono::milliseconds ttl, bool optional_loader,
           Near<T, Client>* near = nullptr, NearPrecheck precheck = NearPrecheck::None)
      : client_(client),
        options_(options),
        counters_(counters),
        flights_(flights),
        key_(key),
        keys_(std::move(keys)),
        ttl_(ttl),
        optional_loader_(optional_loader),
        near_(near),
        due_(precheck == NearPrecheck::DueForRefresh),
        flight_((optional_loader ? "o" : "v") + keys_.value) {}

  /// The value, read or loaded (nullopt: an "absent" result).
  template <class Load>
  std::optional<T> run(Load& load) {
    std::optional<typename Near<T, Client>::Reads> reads;
    if (near_) reads.emplace(*near_, 1).add(key_);
    Snapshot s = read_snapshot(reads && reads->any());
    bool replace = false;  // the stored bytes are unreadable: load over them
    if (s.value) {
      std::optional<T> value;
      try {
        value.emplace(decode(*s.value));
      } catch (const DecodeError&) {
        replace = true;
      }
      if (reads) reads->settle(0, &*s.value, value ? &*value : nullptr, s.pttl, load_time_ms(s.meta));
      if (value) {
        Counters::bump(counters_.hits);
        if (!due_for_refresh(s)) return value;
        return refresh_or_keep(load, std::move(value), s.pttl);
      }
    } else if (reads) {
      reads->settle(0, nullptr, nullptr, -2);
    }
    reads.reset();
    if (!s.value && optional_loader_ && s.meta == "absent") {
      Counters::bump(counters_.hits);
      return std::nullopt;
    }
    Counters::bump(counters_.misses);
    if (options_.stale_ttl.count() > 0 && !replace && flights_.busy(flight_)) {
      if (auto stale = read_stale()) return stale;
    }
    return flights_.run(flight_, [&] { return fill(load, replace); }, counters_.coalesced);
  }

 private:
  using Kind = Claim::Kind;

  T decode(std::string_view bytes) { return cache::decode<T, Serializer>(counters_, keys_.value, {}, bytes); }

  // GET, plus PTTL when early refresh or the near cache reads it, and the
  // meta side key when early refresh or negative caching may need it, in
  // one round trip. with_pttl: the near cache keeps what is read, and
  // needs the PTTL.
  Snapshot read_snapshot(bool with_pttl) {
    Snapshot s;
    const bool xfetch = options_.xfetch_beta > 0.0;
    const bool pttl = xfetch || with_pttl;
    const bool meta = xfetch || optional_loader_;
    if (meta || pttl) {
      std::vector<Command> cmds;
      cmds.push_back(Command{"GET"}.key(keys_.value));
      if (pttl) cmds.push_back(Command{"PTTL"}.key(keys_.value));
      if (meta) cmds.push_back(Command{"GET"}.key(keys_.meta));
      s.replies = client_.pipeline(cmds);
      for (const auto& r : s.replies) r.check();
      s.value = s.replies[0].optional_string();
      if (pttl) s.pttl = s.replies[1].integer();
      if (meta) s.meta = s.replies[pttl ? 2 : 1].optional_string().value_or(std::string_view());
    } else {
      s.replies.push_back(client_.command(Command{"GET"}.key(keys_.value)));
      s.value = s.replies[0].optional_string();
    }
    return s;
  }

  // XFetch: reload early when load_time * beta * -ln(u) >= time left (or
  // when the near cache's copy already drew that, and the value still has
  // a load time and time left).
  bool due_for_refresh(const Snapshot& s) const {
    if (options_.xfetch_beta <= 0.0 || s.pttl <= 0 || load_time_ms(s.meta) == 0) return false;
    return due_ || xfetch_due(load_time_ms(s.meta), s.pttl, options_.xfetch_beta);
  }

  // XFetch decided to reload a value that still has time to live: this
  // caller reloads it unless another is loading it already. A refresh that
  // fails (the loader throws, the store fails) costs nothing but the
  // attempt: the caller gets the current value. (Threads that missed the
  // key and joined this flight get the exception, as for any failed load.)
  template <class Load>
  std::optional<T> refresh_or_keep(Load& load, std::optional<T> current, long long seen_pttl) {
    try {
      auto fresh = flights_.run_unless_busy(flight_, [&] { return refresh(load, current, seen_pttl); });
      return fresh ? std::move(*fresh) : std::move(current);
    } catch (...) {
      return current;
    }
  }

  // An early refresh by this caller, who holds the value `current` read
  // with seen_pttl left. Gives up (returning current) if another caller is
  // loading or has rewritten the value since.
  template <class Load>
  std::optional<T> refresh(Load& load, const std::optional<T>& current, long long seen_pttl) {
    const std::string token = detail::unique_token();
    const Claim c = claim(token, false, false, std::to_string(seen_pttl), "keep");
    if (c.kind != Kind::Load) return current;
    Counters::bump(counters_.early_refreshes);
    return load_and_store(load, token);
  }

  // The load path of one flight: wait for another process's load, serve
  // the stale copy, or load.
  template <class Load>
  std::optional<T> fill(Load& load, bool replace) {
    const std::string token = detail::unique_token();
    const auto deadline = detail::saturating_deadline(std::chrono::steady_clock::now(), options_.wait_timeout);
    bool check_present = !replace;
    bool allow_stale = options_.stale_ttl.count() > 0;
    for (;;) {
      Claim c;
      try {
        c = claim(token, check_present, optional_loader_, "", allow_stale ? "stale" : "wait");
      } catch (const ReplyError& e) {
        // Out of memory: the fill lock cannot be taken (and the value will
        // most likely not be stored either). Load without the lock, as
        // after wait_timeout, rather than fail a request the loader can
        // answer.
        if (e.prefix() != "OOM") throw;
        return load_and_store(load, std::string());
      }
      switch (c.kind) {
        case Kind::Present: {
          Reply r = client_.command(Command{"GET"}.key(keys_.value));
          if (r.is_nil()) break;  // gone again: claim again
          try {
            return decode(r.string());
          } catch (const DecodeError&) {
            check_present = false;
          }
          break;
        }
        case Kind::Absent:
          return std::nullopt;
        case Kind::Load:
          return load_and_store(load, token);
        case Kind::Stale:
          if (auto stale = read_stale()) return stale;
          allow_stale = false;  // vanished or unreadable: wait instead
          break;
        case Kind::Wait: {
          const auto now = std::chrono::steady_clock::now();
          if (now >= deadline) return load_and_store(load, std::string());
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
          // The lock's expiry bounds the wait: a crashed loader's lock runs out.
          wait_for_fill(client_, keys_.wake(), c.fill_pttl.count() > 0 ? std::min(c.fill_pttl, left) : left);
          check_present = true;
          break;
        }
        case Kind::Fresh:
        case Kind::Busy:
          break;  // not asked for by fill
      }
    }
  }

  Claim claim(const std::string& token, bool check_present, bool honour_negative, const std::string& seen_pttl,
              const char* on_busy) {
    const std::string fill = keys_.fill(), waiters = keys_.waiters(), stale = keys_.stale();
    const std::string_view keys[] = {keys_.value, keys_.meta, fill, waiters, stale};
    const std::string args[] = {token,
                                decimal(options_.fill_lock_ttl.count()),
                                check_present ? "1" : "0",
                                honour_negative ? "1" : "0",
                                seen_pttl,
                                on_busy};
    Reply r = client_.eval(claim_script(), keys, args);
    return Claim{claim_kind(r[0].string()), std::chrono::milliseconds(r[1].integer())};
  }

  // Calls the loader (this caller holds the fill lock when token is not
  // empty) and stores its result: SET PX, then finish_script.
  // A load replaces the value (or its absence): the near cache's copy of
  // the old one goes, whatever the outcome.
  template <class Load>
  std::optional<T> load_and_store(Load& load, const std::string& token) {
    const typename Near<T, Client>::DropOnExit forget(near_, key_);
    Counters::bump(counters_.loads);
    const auto start = std::chrono::steady_clock::now();
    std::optional<T> result;
    try {
      result = load();
    } catch (...) {
      Counters::bump(counters_.load_failures);
      release_quietly(token);
      throw;
    }
    const auto took = std::chrono::steady_clock::now() - start;
    const long long delta_ms = std::max<long long>(1, std::chrono::ceil<std::chrono::milliseconds>(took).count());
    if (!result) {
      const long long negative = options_.negative_ttl ? options_.negative_ttl->count() : 0;
      finish(token, "absent", "", negative);
      return result;
    }
    const std::chrono::milliseconds stored_ttl = jittered(options_, ttl_);
    try {
      decltype(auto) bytes = Serializer::serialize(*result);
      const std::string_view view = bytes;
      store_context(keys_.value, view.size(), [&] {
        client_.command(Command{"SET"}.key(keys_.value).arg_view(view).arg("PX").arg(
            static_cast<long long>(stored_ttl.count())));
      });
    } catch (const ReplyError&) {
      // The server refused the value (OOM under maxmemory, NOPERM, ...): the
      // load succeeded, so its caller gets the value; the failed store is
      // counted, and the next miss loads again.
      Counters::bump(counters_.store_failures);
      release_quietly(token);
      return result;
    } catch (...) {
      release_quietly(token);
      throw;
    }
    finish(token, "stored", std::to_string(delta_ms), stored_ttl.count());
    return result;
  }

  void finish(const std::string& token, const char* outcome, const std::string& meta, long long meta_ttl_ms) {
    const std::string fill = keys_.fill(), waiters = keys_.waiters(), wake = keys_.wake(), stale = keys_.stale();
    const std::string_view keys[] = {keys_.value, keys_.meta, fill, waiters, wake, stale};
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
  void release_quietly(const std::string& token) noexcept {
    try {
      finish(token, "failed", "", 0);
    } catch (...) {
    }
  }

  std::optional<T> read_stale() {
    Reply r = client_.command(Command{"GET"}.key(keys_.stale()));
    if (r.is_nil()) return std::nullopt;
    try {
      std::optional<T> value(std::in_place, decode(r.string()));
      Counters::bump(counters_.stale_served);
      return value;
    } catch (const DecodeError&) {
      return std::nullopt;
    }
  }

  Client& client_;
  const CacheOptions& options_;
  Counters& counters_;
  Flights<T>& flights_;
  const std::string_view key_;
  const EntryKeys keys_;
  const std::chrono::milliseconds ttl_;
  const bool optional_loader_;
  Near<T, Client>* const near_;
  const bool due_;
  const std::string flight_;
};

}  // namespace redkit::detail::cache
