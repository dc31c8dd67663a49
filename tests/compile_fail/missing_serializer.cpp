// A RedisCache of a type that has no serializer must not compile, and the
// compiler must say what to write. CTest builds the first target on demand
// and passes only if the output has RedisCache's static_assert message
// (tests/compile_fail/CMakeLists.txt). The control target defines
// REDKIT_PROVIDE_SERIALIZER and must compile, so the failure is the missing
// serializer and nothing else.
#include <string>
#include <string_view>

#include <redkit/cache.hpp>

struct Invoice {
  int number = 0;
};

#ifdef REDKIT_PROVIDE_SERIALIZER
template <>
struct redkit::Serializer<Invoice> {
  static std::string serialize(const Invoice& i) { return std::to_string(i.number); }
  static Invoice deserialize(std::string_view s) { return Invoice{std::stoi(std::string(s))}; }
};
#endif

int main() {
  redkit::RedisCache<Invoice> invoices(redkit::Redis(), "invoice:");
  (void)&redkit::RedisCache<Invoice>::get;  // instantiates the class and get()
  return 0;
}
