/// @file json.hpp
/// redkit::JsonSerializer<T>: cache values stored as JSON text through
/// nlohmann::json, readable by any language's JSON parser. Only compiled
/// where included; needs nlohmann/json 3 (Debian: nlohmann-json3-dev).
///
///     struct Order { int id; std::string item; };
///     NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, item)
///     redkit::RedisCache<Order, redkit::JsonSerializer<Order>> orders(redis, "order:");
///
/// Stored text is untrusted: nlohmann::json parses any depth, but copying,
/// converting or printing a value recurses once per level, so a 2 MB text of
/// a million nested brackets would overflow the stack. deserialize refuses
/// text nested deeper than MaxDepth (512 by default, a template parameter)
/// before parsing it, with one pass over the bytes that counts '[' and '{'
/// outside strings.
///
/// One thing no serializer can check for you: nlohmann converts a JSON
/// number to an integer member with a plain cast, so a stored float out of
/// the member's range (`{"id": 1e30}` for an int) is undefined behaviour
/// inside nlohmann (a garbage value on x86). When other programs may write
/// the values, read such members as double (or nlohmann::json) in your
/// from_json and check the range.
///
/// Thread safety: stateless; call from any thread.
/// Exceptions: serialize throws nlohmann::json::exception when the value
/// cannot be written (a string that is not valid UTF-8); deserialize throws
/// std::invalid_argument for text nested deeper than MaxDepth or holding a
/// NUL byte (nlohmann would stop reading there), and
/// nlohmann::json::exception for text that is not JSON or does not convert
/// to T (RedisCache reports both as DecodeError naming the key).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace redkit {

namespace detail {

/// True if JSON text opens more than limit arrays or objects at once,
/// counting brackets outside strings only. Text that is not JSON gives some
/// answer; the parser rejects it afterwards either way.
inline bool json_deeper_than(std::string_view text, std::size_t limit) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, which may be a quote
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace detail

/// JSON through nlohmann::json: T needs the usual to_json / from_json (or
/// NLOHMANN_DEFINE_TYPE_*), or is a type nlohmann converts already
/// (numbers, strings, containers, nlohmann::json itself). The text is
/// compact (`dump()` with no indentation), UTF-8. Text nested deeper than
/// MaxDepth arrays and objects is refused when read.
template <class T, std::size_t MaxDepth = 512>
struct JsonSerializer {
  /// The deepest nesting deserialize accepts.
  static constexpr std::size_t max_depth = MaxDepth;

  /// value as compact JSON. @throws nlohmann::json::exception.
  static std::string serialize(const T& value) {
    const nlohmann::json j = value;
    return j.dump();
  }
  /// The T in JSON text. @throws std::invalid_argument (deeper than
  /// MaxDepth, or a NUL byte), nlohmann::json::exception (not JSON, or not
  /// a T).
  static T deserialize(std::string_view bytes) {
    // nlohmann takes a NUL byte for the end of the text and would ignore
    // what follows; JSON text never holds one (found by tests/fuzz/fuzz_json).
    if (const auto nul = bytes.find('\0'); nul != std::string_view::npos) {
      throw std::invalid_argument("not JSON: a NUL byte at offset " + std::to_string(nul));
    }
    if (detail::json_deeper_than(bytes, MaxDepth)) {
      throw std::invalid_argument("JSON nested deeper than " + std::to_string(MaxDepth) +
                                  " levels (redkit::JsonSerializer's MaxDepth)");
    }
    return nlohmann::json::parse(bytes.begin(), bytes.end()).template get<T>();
  }
};

}  // namespace redkit
