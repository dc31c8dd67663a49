// A get_or_set loader of the wrong shape must not compile, and the compiler
// must say what a loader looks like. CTest builds one target per
// REDKIT_CASE_* on demand and passes only if the output has get_or_set's
// static_assert message (tests/compile_fail/CMakeLists.txt). The control
// target defines none of them and must compile.
#include <string>
#include <string_view>

#include <redkit/cache.hpp>

std::string load_page(std::string_view key) { return "page " + std::string(key); }

int main() {
  redkit::RedisCache<std::string> pages(redkit::Redis(), "page:");
  const std::string key = "/index";
#if defined(REDKIT_CASE_TAKES_KEY)
  // The natural mistake: a loader that takes the key.
  std::string html = pages.get_or_set(key, [](std::string_view k) { return load_page(k); });
#elif defined(REDKIT_CASE_RETURNS_VOID)
  std::string html = pages.get_or_set(key, [&] { load_page(key); });
#else
  std::string html = pages.get_or_set(key, [&] { return load_page(key); });
#endif
  (void)html;
  return 0;
}
