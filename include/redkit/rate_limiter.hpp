/// @file rate_limiter.hpp
/// redkit::RedisRateLimiter, a rate limit shared by every process that uses
/// the same Redis: GCRA (the generic cell rate algorithm) in one Lua script,
/// on the server's clock.
///
/// Thread safety: every member is thread-safe (the client is, and the
/// limiter's own settings never change after construction); one object may
/// be shared by any number of threads, and any number of processes may
/// limit the same key.
///
/// Exceptions: ConfigError for a limit or a cost out of range, DecodeError
/// (naming the Redis key) when the key holds something that is not a
/// limiter's state, ReplyError for other server errors, IoError on I/O
/// failure (a decision that timed out may or may not have been taken by the
/// server), Error on a moved-from limiter.
///
/// Clock: the client never reads its own clock to decide. The script reads
/// the server's `TIME`, so clients whose clocks disagree still share one
/// limit. Calling TIME before a write is safe because Redis replicates a
/// script's effects (the `SET`), not the script: the only way in Redis 7,
/// the default since 5 (the script also asks for it, for a 6.x server
/// configured otherwise).
///
/// Stored format: one key per limited key, `prefix + key`, a string holding
/// the theoretical arrival time (TAT) in microseconds since the Unix epoch
/// on the server's clock, as decimal text: `"1764590400123456"`. When the
/// emission interval `period / rate` is not a whole number of microseconds
/// the TAT may carry a fraction, written `"1764590400123456+1/3"` (numerator
/// and denominator, the latter the reduced denominator of the interval). Its
/// expiry (`PXAT`) is the TAT rounded up to the millisecond: the key lives
/// exactly as long as the bucket takes to drain, and a missing key is a full
/// bucket.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "redkit/command.hpp"
#include "redkit/detail/duration.hpp"
#include "redkit/detail/moved_from.hpp"
#include "redkit/detail/socket.hpp"
#include "redkit/detail/token.hpp"
#include "redkit/error.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"
#include "redkit/script.hpp"

namespace redkit {

/// A rate limit: `rate` requests per `period`, at most `burst` at once.
/// Over any interval of length t a limiter allows at most
/// `burst + rate * t / period` requests (counting a request of cost c as c).
struct RateLimit {
  std::int64_t rate = 0;                 ///< requests per period; at least 1
  std::chrono::milliseconds period{0};   ///< at least 1 ms
  std::int64_t burst = 0;                ///< requests allowed at once; at least 1
};

/// The answer to one RedisRateLimiter::allow().
struct RateLimitResult {
  bool allowed = false;                     ///< the request was admitted (and counted)
  std::int64_t remaining = 0;               ///< requests of cost 1 that would be allowed now, after this one
  std::chrono::milliseconds retry_after{0};  ///< when denied: time until this cost fits (rounded up); 0 when allowed
  std::chrono::milliseconds reset_after{0};  ///< time until the bucket is full again, i.e. the key's remaining life
};

namespace detail {

/// 2^52: every integer the script computes stays at or below 2^53, where
/// Lua's doubles stop holding integers exactly.
inline constexpr std::int64_t kRateExact = std::int64_t{1} << 52;
/// 2^50 µs (35.7 years): the longest drain time and period, so that the
/// server's clock in µs plus a drain time stays below 2^53 until 2219.
inline constexpr std::int64_t kRateLongestUs = std::int64_t{1} << 50;

/// A checked RateLimit in the script's terms: the emission interval
/// period/rate reduced to interval_num/interval_den µs, and the texts sent
/// as ARGV. Immutable; shared by copies of a limiter.
struct RateLimitPlan {
  std::string prefix;
  RateLimit limit;
  std::int64_t interval_num = 0;  // n: the interval is n/d µs
  std::int64_t interval_den = 0;  // d
  std::string num_text, den_text, burst_text;
};

/// Checks limit and reduces it. The script computes in units of 1/d µs,
/// so it stays exact while burst × n ≤ 2^52 and d ≤ 2^52; the drain time
/// burst × n / d µs and the period are at most 2^50 µs.
/// @throws ConfigError naming the bound that failed.
inline std::shared_ptr<const RateLimitPlan> plan_rate_limit(std::string prefix, const RateLimit& limit) {
  auto bad = [](const std::string& what) { return ConfigError("redkit: RateLimit: " + what); };
  if (limit.rate <= 0) throw bad("rate must be at least 1, not " + std::to_string(limit.rate));
  if (limit.burst <= 0) throw bad("burst must be at least 1, not " + std::to_string(limit.burst));
  check_duration(limit.period, std::chrono::milliseconds(1), "RateLimit: period");
  if (limit.period.count() > kRateLongestUs / 1000) throw bad("period must be at most 2^50 µs (35 years)");
  const std::int64_t period_us = limit.period.count() * 1000;
  const std::int64_t g = std::gcd(period_us, limit.rate);
  auto plan = std::make_shared<RateLimitPlan>();
  plan->interval_num = period_us / g;
  plan->interval_den = limit.rate / g;
  if (plan->interval_den > kRateExact) {
    throw bad("rate " + std::to_string(limit.rate) + " per " + std::to_string(limit.period.count()) +
              " ms is too fine to compute exactly (the interval's reduced denominator must be at most 2^52)");
  }
  if (limit.burst > kRateExact / plan->interval_num) {
    throw bad("burst " + std::to_string(limit.burst) + " times the interval " + std::to_string(plan->interval_num) +
              "/" + std::to_string(plan->interval_den) +
              " µs exceeds 2^52: the script could not compute it exactly (lower burst or period)");
  }
  const std::int64_t tolerance = limit.burst * plan->interval_num;
  const std::int64_t drain_us = tolerance / plan->interval_den + (tolerance % plan->interval_den ? 1 : 0);
  if (drain_us > kRateLongestUs) throw bad("burst × period / rate must be at most 2^50 µs (35 years)");
  plan->prefix = std::move(prefix);
  plan->limit = limit;
  plan->num_text = std::to_string(plan->interval_num);
  plan->den_text = std::to_string(plan->interval_den);
  plan->burst_text = std::to_string(limit.burst);
  return plan;
}

// GCRA. KEYS[1] the limited key; ARGV n, d (the emission interval is n/d µs),
// burst, cost. Time is counted in units of 1/d µs, so every quantity is an
// integer; the client's bounds keep each below 2^53 (exact in a double).
// The state is the TAT: "<µs>" or "<µs>+<num>/<d>". A request fits when
// max(TAT, now) + cost×T - now ≤ burst×T. A denial writes nothing.
// Returns {allowed (1|0), remaining, retry_after ms, reset_after ms},
// {-1, type} for a key of another type, {-2} for a value that is not a TAT.
inline const Script& rate_limiter_script() {
  static const Script s(R"lua(
redis.replicate_commands()
local n, d, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local limit, inc = tonumber(ARGV[3]) * n, cost * n
local function ceil_div(a, b) local q = math.floor(a / b) if q * b < a then q = q + 1 end return q end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then return {-1, redis.call('TYPE', KEYS[1]).ok} end
local late, frac = 0, 0
if v then
  local us, num, den = string.match(v, '^(%d+)%+(%d+)/(%d+)$')
  if not us then us, num, den = string.match(v, '^%d+$'), '0', ARGV[2] end
  if not us or #us > 16 or #num > 16 or #den > 16 then return {-2} end
  us, num, den = tonumber(us), tonumber(num), tonumber(den)
  if us >= 2^53 or den >= 2^53 or num >= den then return {-2} end
  if den ~= d and num > 0 then us, num = us + 1, 0 end
  if us >= now then late, frac = us - now, num end
end
if late * d + frac + inc > limit then
  local room = limit - late * d - frac
  return {0, room > 0 and math.floor(room / n) or 0, ceil_div(late + ceil_div(frac + inc - limit, d), 1000),
          ceil_div(late + ceil_div(frac, d), 1000)}
end
local after = late * d + frac + inc
local whole = math.floor(after / d)
local tat, rest = now + whole, after - whole * d
local value = string.format('%.0f', tat)
if rest > 0 then value = value .. string.format('+%.0f/%.0f', rest, d) end
redis.call('SET', KEYS[1], value, 'PXAT', string.format('%.0f', ceil_div(tat + (rest > 0 and 1 or 0), 1000)))
return {1, math.floor((limit - after) / n), 0, ceil_div(ceil_div(after, d), 1000)}
)lua");
  return s;
}

}  // namespace detail

/// A rate limit per key, shared through Redis by every client that uses
/// the same prefix and limit: GCRA on the server's clock, one round trip
/// per decision, one key per limited key (see the file comment).
///
///     redkit::RedisRateLimiter<> limiter(redis, "rl:api:", {100, std::chrono::seconds(1), 10});
///     if (!limiter.allow("client-42").allowed) { /* reject: 429 */ }
///
/// Copyable (copies share the immutable settings) and movable; a moved-from
/// limiter throws Error when used. Works unchanged over Redis, sentinel-mode
/// Redis and Cluster (each decision touches one key, in any slot).
template <class Client = Redis>
class RedisRateLimiter {
 public:
  /// A limiter for the keys `prefix + key`, verbatim (no separator added).
  /// Sends nothing. @throws ConfigError when rate, period or burst is not
  /// positive, or beyond the bounds that keep the script exact: with the
  /// emission interval period/rate reduced to n/d µs, burst × n ≤ 2^52,
  /// d ≤ 2^52, and period and burst × period / rate at most 2^50 µs
  /// (35 years).
  RedisRateLimiter(Client client, std::string prefix, RateLimit limit)
      : client_(std::move(client)), plan_(detail::plan_rate_limit(std::move(prefix), limit)) {}

  /// Decides one request of `cost` units for `key`: admitted and counted
  /// if it fits, otherwise denied and nothing is written. One round trip:
  /// EVALSHA of the GCRA script (EVAL when the server answers NOSCRIPT),
  /// which runs TIME, GET and, only when allowed, SET ... PXAT.
  /// @throws ConfigError if cost < 1 or cost > burst (it could never fit),
  /// DecodeError if the key holds something else, ReplyError, IoError,
  /// Error if moved from.
  RateLimitResult allow(std::string_view key, std::int64_t cost = 1) {
    const detail::RateLimitPlan& p = plan();
    check_cost(p, cost);
    const std::string redis_key = redis_key_of(p, key);
    char cost_buf[24];
    const std::string_view cost_text = format(cost, cost_buf, sizeof cost_buf);
    Reply r = client_.eval(detail::rate_limiter_script(), {std::string_view(redis_key)},
                           {std::string_view(p.num_text), std::string_view(p.den_text),
                            std::string_view(p.burst_text), cost_text});
    const long long code = r[0].integer();
    if (code == -1) {
      throw DecodeError(redis_key, "the key holds a " + r[1].string_copy() + ", not a rate limiter's state");
    }
    if (code == -2 || r.size() != 4) {
      throw DecodeError(redis_key, "not a rate limiter's state (a time in microseconds, as decimal text)");
    }
    RateLimitResult out;
    out.allowed = code == 1;
    out.remaining = r[1].integer();
    out.retry_after = std::chrono::milliseconds(r[2].integer());
    out.reset_after = std::chrono::milliseconds(r[3].integer());
    return out;
  }

  /// Blocks until a request of `cost` is allowed (true) or `timeout` has
  /// passed (false). Each denial sleeps its retry_after plus a random
  /// 0 to 1/8 of it (at least 1 ms, at most 100 ms; detail::random_between)
  /// so that waiters told the same time do not all retry at once, and
  /// allow() again. It never sleeps past the timeout, measured on the
  /// steady clock: the last attempt starts by then, so it returns within
  /// timeout plus one round trip. It returns false at once when retry_after
  /// already lies past the timeout (the bucket cannot drain sooner, unless
  /// someone calls reset()). A timeout of zero or less makes one attempt.
  /// Sends one EVALSHA per attempt. @throws as allow().
  bool wait(std::string_view key, std::chrono::milliseconds timeout, std::int64_t cost = 1) {
    using std::chrono::milliseconds;
    // A bad cost or a moved-from object: the first allow() throws before anything is sent.
    const detail::Deadline deadline = detail::Deadline::after(std::max(timeout, milliseconds(1)));
    for (;;) {
      const RateLimitResult r = allow(key, cost);
      if (r.allowed) return true;
      if (timeout.count() <= 0 || deadline.passed() || r.retry_after > deadline.remaining()) return false;
      const milliseconds retry = std::max(r.retry_after, milliseconds(1));
      const milliseconds jitter =
          detail::random_between(milliseconds(0), std::clamp(retry / 8, milliseconds(1), milliseconds(100)));
      const auto wake = detail::SteadyClock::now() + retry + jitter;
      std::this_thread::sleep_until(std::min(wake, deadline.when()));
    }
  }

  /// Forgets everything counted for `key`: the next request finds a full
  /// bucket. One DEL of `prefix + key`. @throws IoError, ReplyError, Error
  /// if moved from.
  void reset(std::string_view key) {
    const detail::RateLimitPlan& p = plan();
    client_.command(Command{"DEL"}.key(redis_key_of(p, key)));
  }

 private:
  const detail::RateLimitPlan& plan() const {
    detail::check_not_moved_from(plan_ != nullptr, "redkit::RedisRateLimiter");
    return *plan_;
  }

  // The Redis key of key: prefix + key.
  static std::string redis_key_of(const detail::RateLimitPlan& p, std::string_view key) {
    std::string k;
    k.reserve(p.prefix.size() + key.size());
    k.append(p.prefix).append(key);
    return k;
  }

  static void check_cost(const detail::RateLimitPlan& p, std::int64_t cost) {
    if (cost < 1 || cost > p.limit.burst) {
      throw ConfigError("redkit: rate limiter cost " + std::to_string(cost) + " is outside 1.." +
                        std::to_string(p.limit.burst) + " (the burst): it could never be allowed");
    }
  }

  static std::string_view format(std::int64_t v, char* buf, std::size_t size) {
    const auto res = std::to_chars(buf, buf + size, v);
    return std::string_view(buf, static_cast<std::size_t>(res.ptr - buf));
  }

  Client client_;
  std::shared_ptr<const detail::RateLimitPlan> plan_;  // null when moved from
};

}  // namespace redkit
