// Range checks for duration options and saturating time arithmetic, so
// that an option of a thousand years is a ConfigError at construction and
// never an overflow later. Thread safety: pure functions.
#pragma once

#include <chrono>
#include <string>

#include "redkit/error.hpp"

namespace redkit::detail {

/// The longest duration any option or TTL argument may hold: 100 years.
/// Far beyond any real expiry, and small enough that sums of a few of them
/// (ttl + stale_ttl, now + wait_timeout in steady_clock's nanoseconds, a
/// Redis PX argument added to the server's clock) never overflow.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 36525);

/// @throws ConfigError, naming what, unless min <= d <= kMaxDuration.
inline void check_duration(std::chrono::milliseconds d, std::chrono::milliseconds min, const std::string& what) {
  if (d >= min && d <= kMaxDuration) return;
  const std::string range = min.count() == 0 ? "must not be negative" : "must be positive";
  throw ConfigError("redkit: " + what + " " + (d < min ? range : "must be at most 100 years") + " (got " +
                    std::to_string(d.count()) + " ms)");
}

/// a + b, or the largest (smallest) milliseconds value when the sum would
/// overflow.
inline std::chrono::milliseconds saturating_add(std::chrono::milliseconds a, std::chrono::milliseconds b) noexcept {
  using ms = std::chrono::milliseconds;
  if (b.count() > 0 && a > ms::max() - b) return ms::max();
  if (b.count() < 0 && a < ms::min() - b) return ms::min();
  return a + b;
}

/// from + d on a clock, or the clock's last time point when that would
/// overflow (d >= 0 assumed: a deadline).
template <class TimePoint, class Rep, class Period>
TimePoint saturating_deadline(TimePoint from, std::chrono::duration<Rep, Period> d) noexcept {
  using Duration = typename TimePoint::duration;
  const auto left = TimePoint::max() - from;  // a Duration
  if (d >= std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(left)) return TimePoint::max();
  return from + std::chrono::duration_cast<Duration>(d);
}

}  // namespace redkit::detail
