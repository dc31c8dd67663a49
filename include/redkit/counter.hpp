/// @file counter.hpp
/// redkit::RedisCounter, an atomic counter at one Redis key.
///
/// Thread safety: every member is thread-safe (the client is); many
/// processes may share one key, and no increment is ever lost or applied
/// twice by redkit (a command that times out may or may not have been
/// applied by the server: that is an IoError, never a silent retry).
///
/// Exceptions: OverflowError when a result, a step or a value to store would
/// not fit T or what Redis can count with (signed 64-bit integers, finite
/// doubles; the stored value is left unchanged), DecodeError when the key
/// holds something that is not a number of T (naming the key), ReplyError
/// for other server errors (WRONGTYPE, NOPERM, OOM), IoError on I/O
/// failure, ConfigError for bad options or arguments.
///
/// Moved-from state: a moved-from RedisCounter may only be destroyed or
/// assigned to; any other member throws redkit::Error saying so.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/detail/duration.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/error.hpp"
#include "redkit/redis.hpp"
#include "redkit/script.hpp"

namespace redkit {

/// Options of a RedisCounter; plain values, checked when the counter is built.
struct CounterOptions {
  /// Fixed window: when set, every increment that finds the key without an
  /// expiry (the first of each window) sets this expiry in the same atomic
  /// script, so a crash can never leave a window counter without a TTL.
  /// Positive and at most 100 years.
  std::optional<std::chrono::milliseconds> window;
};

/// The result of a bounded increment.
template <class T>
struct Bounded {
  bool applied;  ///< false when the result would have left [floor, ceiling]
  T value;       ///< the stored value after the call
};

namespace detail {

// The checked increment: applies INCRBY/INCRBYFLOAT, and undoes it exactly
// (restoring the old text, or deleting a key that did not exist) when the
// result leaves [lo, hi]. Integers are compared as decimal strings because
// Lua numbers are doubles and lose precision past 2^53. When a window is
// given, a key left without an expiry gets it in the same script.
// KEYS[1] counter; ARGV: op, by, lo, hi, kind ('i'|'f'), window_ms ('0' = none)
// Returns {applied (0|1), value text}.
inline const Script& counter_script() {
  static const Script s(R"lua(
local k = KEYS[1]
local function icmp(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  local r
  if a == b then return 0 end
  if #a ~= #b then r = (#a < #b) and -1 or 1 else r = (a < b) and -1 or 1 end
  if na then r = -r end
  return r
end
local function outside(v)
  if ARGV[5] == 'i' then return icmp(v, ARGV[3]) < 0 or icmp(v, ARGV[4]) > 0 end
  local n = tonumber(v)
  return n < tonumber(ARGV[3]) or n > tonumber(ARGV[4])
end
local old = redis.call('GET', k)
redis.call(ARGV[1], k, ARGV[2])
local v = redis.call('GET', k)
if outside(v) then
  if old then redis.call('SET', k, old, 'KEEPTTL') else redis.call('DEL', k) end
  return {0, old or '0'}
end
if ARGV[6] ~= '0' and redis.call('PTTL', k) == -1 then redis.call('PEXPIRE', k, ARGV[6]) end
return {1, v}
)lua");
  return s;
}

template <class T>
std::string number_text(T v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, static_cast<std::size_t>(res.ptr - buf));
}

/// Parses a stored counter value into T. @throws DecodeError, OverflowError.
template <class T>
T parse_number(std::string_view text, const std::string& key) {
  T v{};
  auto res = std::from_chars(text.data(), text.data() + text.size(), v);
  if (res.ec == std::errc::result_out_of_range) {
    throw OverflowError("redkit: value '" + std::string(text.substr(0, 64)) + "' at key '" + key +
                        "' does not fit the counter's type");
  }
  if (res.ec != std::errc() || res.ptr != text.data() + text.size()) {
    throw DecodeError(key, "not a number: '" + std::string(text.substr(0, 64)) + "'");
  }
  return v;
}

/// Turns the server's own overflow errors into OverflowError, and its
/// refusal to increment what the key holds ("value is not an integer or out
/// of range", "value is not a valid float") into DecodeError naming the key.
[[noreturn]] inline void rethrow_counter_error(const ReplyError& e, const std::string& key) {
  const std::string_view m = e.what();
  if (m.find("would overflow") != std::string_view::npos ||
      m.find("NaN or Infinity") != std::string_view::npos) {
    throw OverflowError("redkit: counter '" + key + "': " + std::string(m));
  }
  if (m.find("value is not an integer") != std::string_view::npos ||
      m.find("value is not a valid float") != std::string_view::npos) {
    throw DecodeError(key, "the stored value is not a number the counter can increment (" +
                               std::string(m.substr(0, 200)) + ")");
  }
  throw e;
}

}  // namespace detail

/// A counter of T at one key. Integral T uses INCRBY/DECRBY, floating T
/// INCRBYFLOAT. Values are stored as decimal text, so redis-cli and other
/// languages read and change them too.
template <class T = long long, class Client = Redis>
class RedisCounter {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>,
                "RedisCounter<T>: T must be an integral or floating-point type other than bool");
  static_assert(!std::is_integral_v<T> || sizeof(T) <= 8, "RedisCounter<T>: at most 64-bit integers");

 public:
  /// Sends nothing. @throws ConfigError for a window that is not positive
  /// or longer than 100 years.
  RedisCounter(Client client, std::string key, CounterOptions options = {})
      : client_(std::move(client)), key_(std::move(key)), options_(options) {
    if (options_.window) detail::check_duration(*options_.window, std::chrono::milliseconds(1), "counter window");
  }

  /// Adds by and returns the new value. One round trip: INCRBY for signed
  /// 64-bit T without a window; otherwise one EVALSHA of a script that runs
  /// INCRBY/INCRBYFLOAT, checks T's range and sets the window's expiry.
  /// @throws OverflowError (value unchanged; also for a step Redis cannot
  /// add: an unsigned one above 2^63-1, or a float that is not finite),
  /// DecodeError (the key holds no number), ReplyError, IoError.
  T incr(T by = 1) { return add(by, false); }

  /// Subtracts by and returns the new value (DECRBY, or the checked script).
  /// For signed 64-bit T the server refuses DECRBY of the type's minimum.
  /// @throws OverflowError (value unchanged), ReplyError, IoError.
  T decr(T by = 1) { return add(by, true); }

  /// Adds by only if the result stays within [floor, ceiling], atomically
  /// (one EVALSHA). @throws ConfigError if floor > ceiling (or either is
  /// NaN), OverflowError for a step Redis cannot add (as incr), DecodeError,
  /// ReplyError, IoError.
  Bounded<T> incr_bounded(T by, T floor, T ceiling) {
    if (!(floor <= ceiling)) throw ConfigError("redkit: incr_bounded floor is above ceiling");
    check_countable(by, "step");
    auto r = run_script(detail::number_text(by), floor, ceiling);
    return {r.first, r.second};
  }

  /// The current value; 0 when the key does not exist (GET).
  /// @throws DecodeError if it is not a number of T, OverflowError if it is
  /// a number outside T's range, IoError.
  T get() {
    Reply r = live_client().command(Command{"GET"}.key(key_));
    if (r.is_nil()) return T{};
    return detail::parse_number<T>(r.string(), key_);
  }

  /// Stores value (SET; removes any expiry).
  /// @throws OverflowError (nothing sent) for a value Redis could not
  /// increment afterwards: an unsigned one above 2^63-1 or a float that is
  /// not finite; IoError, ReplyError.
  void set(T value) {
    check_countable(value, "value");
    live_client().command(Command{"SET"}.key(key_).arg(detail::number_text(value)));
  }

  /// Stores 0 and returns the previous value in one atomic command
  /// (SET key 0 GET; removes any expiry). @throws DecodeError if the old
  /// value was not a number of T (0 is stored all the same), IoError.
  T reset() {
    Reply r = live_client().command(Command{"SET"}.key(key_).arg("0").arg("GET"));
    if (r.is_nil()) return T{};
    return detail::parse_number<T>(r.string(), key_);
  }

  /// Sets the key's expiry (PEXPIRE). False if the key does not exist.
  /// @throws ConfigError for a ttl that is not positive (PEXPIRE would
  /// delete the key) or longer than 100 years; IoError, ReplyError.
  bool expire(std::chrono::milliseconds ttl) {
    detail::check_duration(ttl, std::chrono::milliseconds(1), "counter expire ttl");
    return live_client().command(Command{"PEXPIRE"}.key(key_).arg(static_cast<long long>(ttl.count())))
               .integer() == 1;
  }

  /// Remaining time to live (PTTL); nullopt when the key does not exist or
  /// has no expiry.
  std::optional<std::chrono::milliseconds> ttl() {
    const long long ms = live_client().command(Command{"PTTL"}.key(key_)).integer();
    if (ms < 0) return std::nullopt;
    return std::chrono::milliseconds(ms);
  }

  /// The Redis key that holds the counter.
  const std::string& key() const noexcept { return key_; }
  /// The client this counter sends its commands through.
  Client& client() noexcept { return client_; }

 private:
  // Only signed 64-bit integers can use INCRBY directly: the server's own
  // overflow check is exactly T's range. INCRBYFLOAT computes in long double
  // and would store a result beyond double's range, so doubles are checked
  // by the script too.
  static constexpr bool kNative = std::is_integral_v<T> && std::is_signed_v<T> && sizeof(T) == 8;

  // Bounds as the script compares them: floats widened exactly to double;
  // unsigned 64-bit capped at the server's int64 maximum.
  static std::string bound_text(T v) {
    if constexpr (std::is_same_v<T, float>) {
      return detail::number_text(static_cast<double>(v));
    } else if constexpr (std::is_unsigned_v<T> && sizeof(T) == 8) {
      return detail::number_text(std::min<T>(v, std::numeric_limits<long long>::max()));
    } else {
      return detail::number_text(v);
    }
  }

  Client& live_client() {
    detail::check_not_moved_from(live_.live(), "RedisCounter");
    return client_;
  }

  // A step or value Redis cannot count with: an unsigned one beyond its
  // signed 64-bit integers, a float that is not finite (INCRBYFLOAT refuses
  // those). Nothing is sent.
  void check_countable(T v, const char* what) const {
    detail::check_not_moved_from(live_.live(), "RedisCounter");
    if constexpr (std::is_unsigned_v<T> && sizeof(T) == 8) {
      if (v > static_cast<T>(std::numeric_limits<long long>::max())) {
        throw OverflowError("redkit: counter '" + key_ + "': " + what + " " + detail::number_text(v) +
                            " is beyond what Redis integers hold (at most 9223372036854775807); nothing sent");
      }
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(v)) {
        throw OverflowError("redkit: counter '" + key_ + "': " + what + " " + detail::number_text(v) +
                            " is not a finite number; nothing sent");
      }
    }
  }

  T add(T by, bool negate) {
    check_countable(by, "step");
    if constexpr (kNative) {
      if (!options_.window) return native(by, negate);
    }
    std::string delta;
    if constexpr (std::is_floating_point_v<T>) {
      delta = detail::number_text(negate ? -by : by);
    } else if (!negate) {
      delta = detail::number_text(by);
    } else if constexpr (std::is_unsigned_v<T>) {
      delta = by == 0 ? "0" : "-" + detail::number_text(by);
    } else if (by == std::numeric_limits<T>::min()) {
      delta = detail::number_text(by);
      delta.erase(0, 1);  // -(min) does not fit T, but fits the text
    } else {
      delta = detail::number_text(static_cast<T>(-by));
    }
    auto r = run_script(delta, std::numeric_limits<T>::lowest(), std::numeric_limits<T>::max());
    if (!r.first) {
      throw OverflowError("redkit: counter '" + key_ + "': " + (negate ? "decrement" : "increment") +
                          " by " + detail::number_text(by) + " would leave the range of its type; value " +
                          detail::number_text(r.second) + " left unchanged");
    }
    return r.second;
  }

  T native(T by, bool negate) {
    try {
      Reply r = live_client().command(Command{negate ? "DECRBY" : "INCRBY"}.key(key_).arg(by));
      return static_cast<T>(r.integer());
    } catch (const ReplyError& e) {
      detail::rethrow_counter_error(e, key_);
    }
  }

  std::pair<bool, T> run_script(const std::string& delta, T lo, T hi) {
    const std::string window = options_.window ? detail::number_text(options_.window->count()) : "0";
    const char* op = std::is_floating_point_v<T> ? "INCRBYFLOAT" : "INCRBY";
    const char* kind = std::is_floating_point_v<T> ? "f" : "i";
    const std::string lo_text = bound_text(lo);
    const std::string hi_text = bound_text(hi);
    try {
      Reply r = live_client().eval(detail::counter_script(), {std::string_view(key_)},
                             {std::string_view(op), std::string_view(delta),
                              std::string_view(lo_text), std::string_view(hi_text),
                              std::string_view(kind), std::string_view(window)});
      return {r[0].integer() == 1, detail::parse_number<T>(r[1].string(), key_)};
    } catch (const ReplyError& e) {
      detail::rethrow_counter_error(e, key_);
    }
  }

  Client client_;
  std::string key_;
  CounterOptions options_;
  detail::MovedFromFlag live_;
};

}  // namespace redkit
