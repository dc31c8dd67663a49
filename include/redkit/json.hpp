/// @file json.hpp
/// redkit::JsonSerializer<T>: cache values stored as JSON text through
/// nlohmann::json, readable by any language's JSON parser. Only compiled
/// where included; needs nlohmann/json 3 (Debian: nlohmann-json3-dev).
///
///     struct Order { int id; std::string item; };
///     NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, item)
///     redkit::RedisCache<Order, redkit::JsonSerializer<Order>> orders(redis, "order:");
///
/// Thread safety: stateless; call from any thread.
/// Exceptions: serialize throws nlohmann::json::exception when the value
/// cannot be written (a string that is not valid UTF-8); deserialize throws
/// nlohmann::json::exception for text that is not JSON or does not convert
/// to T (RedisCache reports that as DecodeError naming the key).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace redkit {

/// JSON through nlohmann::json: T needs the usual to_json / from_json (or
/// NLOHMANN_DEFINE_TYPE_*), or is a type nlohmann converts already
/// (numbers, strings, containers, nlohmann::json itself). The text is
/// compact (`dump()` with no indentation), UTF-8.
template <class T>
struct JsonSerializer {
  /// Compact JSON text of value. @throws nlohmann::json::exception (e.g. a
  /// string that is not valid UTF-8).
  static std::string serialize(const T& value) {
    const nlohmann::json j = value;
    return j.dump();
  }
  /// Parses bytes as JSON and converts it to T. @throws
  /// nlohmann::json::exception for text that is not JSON or not a T.
  static T deserialize(std::string_view bytes) {
    return nlohmann::json::parse(bytes.begin(), bytes.end()).template get<T>();
  }
};

}  // namespace redkit
