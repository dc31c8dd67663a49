/// @file serializer.hpp
/// redkit::Serializer<T>, the customisation point that turns cache values
/// into the bytes stored in Redis and back.
///
/// Thread safety: serializers are stateless (two static functions); they
/// are called concurrently from any thread.
/// Exceptions: deserialize throws std::invalid_argument for bytes that are
/// not a value of T; RedisCache reports that as DecodeError naming the key.
///
/// A serializer is any class with
///
///     static std::string serialize(const T& value);
///     static T deserialize(std::string_view bytes);
///
/// (serialize may also return `const std::string&` or anything else that
/// converts to std::string_view, which saves a copy). Either specialise
/// redkit::Serializer<T> for your type, or pass your class as RedisCache's
/// second template argument; `#include <redkit/json.hpp>` adds
/// redkit::JsonSerializer<T> for every type nlohmann::json converts.
///
/// Built in, so that redis-cli and other languages read the stored bytes:
///  - std::string, std::vector<char>, std::vector<unsigned char>: the bytes
///    themselves;
///  - integral and floating-point types: decimal text, exactly as a Redis
///    counter stores them ("42", "-7", "0.1"); floating-point values use the
///    shortest text that reads back to the same value (std::to_chars), so
///    every value round-trips exactly; `char` is a number too ("65");
///  - bool: "1" or "0".
#pragma once

#include <charconv>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace redkit {

/// The serializer for T. The primary template is deliberately empty: a type
/// without a specialisation has no serializer, and RedisCache<T> then stops
/// compilation with a static_assert that says what to write.
template <class T, class = void>
struct Serializer {};

/// Bytes as they are.
template <>
struct Serializer<std::string> {
  /// The string itself (no copy).
  static const std::string& serialize(const std::string& value) noexcept { return value; }
  /// The bytes, copied. Never fails.
  static std::string deserialize(std::string_view bytes) { return std::string(bytes); }
};

/// Bytes as they are, in a vector of char or unsigned char.
template <class Byte>
struct Serializer<std::vector<Byte>, std::enable_if_t<std::is_same_v<Byte, char> ||
                                                      std::is_same_v<Byte, unsigned char>>> {
  /// A view of the vector's bytes (no copy).
  static std::string_view serialize(const std::vector<Byte>& value) noexcept {
    return std::string_view(reinterpret_cast<const char*>(value.data()), value.size());
  }
  /// The bytes, copied into a vector. Never fails.
  static std::vector<Byte> deserialize(std::string_view bytes) {
    const auto* first = reinterpret_cast<const Byte*>(bytes.data());
    return std::vector<Byte>(first, first + bytes.size());
  }
};

/// Integral and floating-point types as decimal text (std::to_chars /
/// std::from_chars: no locale, exact round trip). deserialize accepts only
/// the whole text of one number of T: no spaces, no '+', nothing after it,
/// nothing out of T's range.
template <class T>
struct Serializer<T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>> {
  /// Shortest decimal text that reads back as exactly value ("42", "0.1").
  static std::string serialize(T value) {
    char buf[128];  // enough for any long double in shortest form
    const auto res = std::to_chars(buf, buf + sizeof buf, value);
    return std::string(buf, static_cast<std::size_t>(res.ptr - buf));
  }
  /// The number in bytes. @throws std::invalid_argument for anything but
  /// exactly one number of T in range.
  static T deserialize(std::string_view bytes) {
    if constexpr (std::is_floating_point_v<T>) {
      // libstdc++ 12 reads long double through strtold, which runs past the
      // end of bytes that are not NUL-terminated ("inf"; found by
      // tests/fuzz/fuzz_serializers): parse a terminated copy.
      const std::string terminated(bytes);
      return parse(terminated);
    } else {
      return parse(bytes);
    }
  }

 private:
  static T parse(std::string_view bytes) {
    T value{};
    const char* end = bytes.data() + bytes.size();
    const auto res = std::from_chars(bytes.data(), end, value);
    if (res.ec == std::errc::result_out_of_range) {
      throw std::invalid_argument("number out of range: '" + excerpt(bytes) + "'");
    }
    if (res.ec != std::errc() || res.ptr != end) {
      throw std::invalid_argument("not a number: '" + excerpt(bytes) + "'");
    }
    return value;
  }

  static std::string excerpt(std::string_view bytes) {
    return bytes.size() <= 40 ? std::string(bytes) : std::string(bytes.substr(0, 40)) + "...";
  }
};

/// bool as "1" / "0" (exactly those; anything else is a decode error).
template <>
struct Serializer<bool> {
  /// "1" or "0".
  static std::string serialize(bool value) { return value ? "1" : "0"; }
  /// true for "1", false for "0". @throws std::invalid_argument otherwise.
  static bool deserialize(std::string_view bytes) {
    if (bytes == "1") return true;
    if (bytes == "0") return false;
    throw std::invalid_argument("not a bool (\"1\" or \"0\")");
  }
};

namespace detail {

template <class S, class T, class = void>
struct has_serialize : std::false_type {};
template <class S, class T>
struct has_serialize<S, T, std::void_t<decltype(S::serialize(std::declval<const T&>()))>>
    : std::is_convertible<decltype(S::serialize(std::declval<const T&>())), std::string_view> {};

template <class S, class T, class = void>
struct has_deserialize : std::false_type {};
template <class S, class T>
struct has_deserialize<S, T, std::void_t<decltype(S::deserialize(std::declval<std::string_view>()))>>
    : std::is_convertible<decltype(S::deserialize(std::declval<std::string_view>())), T> {};

}  // namespace detail

/// True when S has `static serialize(const T&)` returning something that
/// converts to std::string_view (std::string, say) and `static
/// deserialize(std::string_view)` returning something that converts to T.
template <class S, class T>
inline constexpr bool is_serializer_v =
    detail::has_serialize<S, T>::value && detail::has_deserialize<S, T>::value;

/// True when redkit::Serializer<T> is usable (built in or specialised).
template <class T>
inline constexpr bool has_serializer_v = is_serializer_v<Serializer<T>, T>;

}  // namespace redkit
