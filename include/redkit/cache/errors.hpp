/// @file cache/errors.hpp
/// Error context for RedisCache: a value the serializer cannot read becomes
/// a DecodeError naming the Redis key, and a failed store gets the key and
/// the size added to its message, keeping its exception type. Part of
/// <redkit/cache.hpp>.
///
/// Thread safety: pure functions.
/// Exceptions: they exist to throw the redkit::Error subtypes said above.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include "redkit/cache/options.hpp"
#include "redkit/error.hpp"

namespace redkit::detail::cache {

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

/// Reads bytes with Serializer; anything it throws becomes a DecodeError
/// naming the Redis key head + tail (put together only for the error) and
/// counts in errors.
template <class T, class Serializer>
T decode(Counters& counters, std::string_view head, std::string_view tail, std::string_view bytes) {
  try {
    return Serializer::deserialize(bytes);
  } catch (...) {
    Counters::bump(counters.errors);
    throw DecodeError(std::string(head).append(tail), current_exception_text());
  }
}

/// Throws an exception of e's type (the most derived redkit type it is)
/// with the message what.
[[noreturn]] inline void rethrow_as(const Error& e, const std::string& what) {
  if (dynamic_cast<const ReplyError*>(&e)) throw ReplyError(what);
  if (dynamic_cast<const TimeoutError*>(&e)) throw TimeoutError(what);
  if (dynamic_cast<const ClosedError*>(&e)) throw ClosedError(what);
  if (dynamic_cast<const IoError*>(&e)) throw IoError(what);
  if (dynamic_cast<const ProtocolError*>(&e)) throw ProtocolError(what);
  throw Error(what);
}

/// "N bytes at cache key 'k'", and the proto-max-bulk-len hint for a big
/// value.
inline std::string value_note(const std::string& full, std::size_t size) {
  std::string note = std::to_string(size) + " bytes at cache key '" + full + "'";
  if (size > (std::size_t{1} << 20)) {
    note += "; Redis refuses values longer than its proto-max-bulk-len (512 MB by default) and "
            "closes the connection";
  }
  return note;
}

/// Runs f, which stores `size` bytes at key full; an error gets the key
/// and the size added to its message, keeping its type.
template <class F>
void store_context(const std::string& full, std::size_t size, F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    rethrow_as(e, std::string(e.what()) + " (storing " + value_note(full, size) + ")");
  }
}

}  // namespace redkit::detail::cache
