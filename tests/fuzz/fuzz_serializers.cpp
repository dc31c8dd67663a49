// Every built-in serializer of serializer.hpp on hostile stored bytes:
// std::string, std::vector<char>, std::vector<unsigned char>, bool and every
// arithmetic type. deserialize either returns a value or throws
// std::invalid_argument (what RedisCache turns into DecodeError); a value it
// returns survives serialize -> deserialize unchanged, and the byte types
// give back exactly the input.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <redkit/serializer.hpp>

namespace {

[[noreturn]] void fail(const char* type, const char* what, std::string_view bytes) {
  std::fprintf(stderr, "fuzz_serializers: %s: %s (input of %zu bytes)\n", type, what, bytes.size());
  std::abort();
}

template <class T>
bool same(const T& a, const T& b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::memcmp(&a, &b, sizeof(T)) == 0 || a == b;  // -0.0 == 0.0 reads back as itself
  } else {
    return a == b;
  }
}

template <class T>
void number(const char* type, std::string_view bytes) {
  using S = redkit::Serializer<T>;
  T value{};
  try {
    value = S::deserialize(bytes);
  } catch (const std::invalid_argument&) {
    return;
  }
  const std::string text = S::serialize(value);
  T again{};
  try {
    again = S::deserialize(text);
  } catch (const std::invalid_argument&) {
    fail(type, "its own text does not read back", bytes);
  }
  if (!same(value, again)) fail(type, "the value changed in a round trip", bytes);
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isnan(value) && std::signbit(value) != std::signbit(again)) fail(type, "sign lost", bytes);
  }
}

template <class T>
void bytes_type(const char* type, std::string_view bytes) {
  using S = redkit::Serializer<T>;
  const T value = S::deserialize(bytes);  // any bytes are a value
  const std::string_view text = S::serialize(value);
  if (text != bytes) fail(type, "bytes changed", bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  bytes_type<std::string>("string", bytes);
  bytes_type<std::vector<char>>("vector<char>", bytes);
  bytes_type<std::vector<unsigned char>>("vector<unsigned char>", bytes);
  try {
    const bool b = redkit::Serializer<bool>::deserialize(bytes);
    if (redkit::Serializer<bool>::serialize(b) != bytes) fail("bool", "not exactly \"0\" or \"1\"", bytes);
  } catch (const std::invalid_argument&) {
  }
  number<char>("char", bytes);
  number<signed char>("signed char", bytes);
  number<unsigned char>("unsigned char", bytes);
  number<short>("short", bytes);
  number<unsigned short>("unsigned short", bytes);
  number<int>("int", bytes);
  number<unsigned>("unsigned", bytes);
  number<long>("long", bytes);
  number<unsigned long>("unsigned long", bytes);
  number<long long>("long long", bytes);
  number<unsigned long long>("unsigned long long", bytes);
  number<std::int8_t>("int8_t", bytes);
  number<std::uint64_t>("uint64_t", bytes);
  number<float>("float", bytes);
  number<double>("double", bytes);
  number<long double>("long double", bytes);
  return 0;
}
