// The cache's side-key naming (detail/cache_keys.hpp) on hostile prefixes
// and keys: every side key of a value key K is in K's hash slot, is
// recognised as a side key of K's prefix by is_side_key (so clear() removes
// it) and decodes back to K alone (the naming is injective: two caches never
// share a side key unless they share the value key); is_side_key only
// accepts keys that decode to a value key of the prefix whose side keys
// include them; glob_escape is undone by reading its escapes.
//
// The first input byte splits the rest into prefix and key.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <redkit/detail/cache_keys.hpp>
#include <redkit/slot.hpp>

namespace {

namespace keys = redkit::detail::cache;

[[noreturn]] void fail(const char* what, std::string_view prefix, std::string_view key) {
  std::fprintf(stderr, "fuzz_cache_keys: %s (prefix of %zu bytes, key of %zu bytes)\n", what, prefix.size(),
               key.size());
  std::abort();
}

std::string unescape(std::string_view pattern) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) ++i;
    out.push_back(pattern[i]);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t split = data[0] % (rest.size() + 1);
  const std::string_view prefix = rest.substr(0, split);
  const std::string_view key = rest.substr(split);
  const std::string full = std::string(prefix) + std::string(key);

  const std::string base = keys::side_base(full);
  for (std::string_view suffix : keys::kSideSuffixes) {
    const std::string side = keys::side_key(base, suffix);
    if (redkit::hash_slot(side) != redkit::hash_slot(full)) fail("a side key is in another slot", prefix, key);
    if (!keys::is_side_key(side, prefix)) fail("a side key is not recognised", prefix, key);
    // Injective: the side key names its value key and nothing else.
    const auto back = keys::value_key_of_side_key(side);
    if (!back || *back != full) fail("a side key does not decode to its value key", prefix, key);
  }

  // Any key the check accepts decodes to a value key of the prefix in the
  // same slot, whose side keys include it.
  for (std::string_view candidate : {std::string_view(full), rest, key}) {
    if (!keys::is_side_key(candidate, prefix)) continue;
    const auto value = keys::value_key_of_side_key(candidate);
    if (!value || value->rfind(prefix, 0) != 0) fail("accepted a key that is no side key", prefix, key);
    if (redkit::hash_slot(candidate) != redkit::hash_slot(*value)) fail("a side key outside its value's slot", prefix, key);
    bool found = false;
    for (std::string_view suffix : keys::kSideSuffixes) {
      found = found || keys::side_key(keys::side_base(*value), suffix) == candidate;
    }
    if (!found) fail("accepted a key its value key does not name", prefix, key);
  }

  if (unescape(keys::glob_escape(full)) != full) fail("glob_escape is not undone by its escapes", prefix, key);
  return 0;
}
