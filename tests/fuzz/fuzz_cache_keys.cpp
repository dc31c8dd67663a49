// The cache's side-key naming (detail/cache_keys.hpp) on hostile prefixes
// and keys: every side key of a value key K is in K's hash slot; the side
// keys of a K without a hash tag are recognised as side keys of K's prefix
// by is_untagged_side_key (so clear() removes them), and those of a tagged
// K start with K; is_untagged_side_key only recognises keys that end in a
// side suffix and lie in the slot of the value key it decoded; glob_escape
// is undone by reading its escapes.
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

// The value key (starting with prefix) whose side keys have this base, as
// side_base builds them: "{K}", or "{T}K"; empty if none.
std::string value_key_of(std::string_view base, std::string_view prefix) {
  if (base.size() >= 2 && base.front() == '{' && base.back() == '}') {
    const std::string k(base.substr(1, base.size() - 2));
    if (k.rfind(prefix, 0) == 0 && keys::side_base(k) == base) return k;
  }
  const auto close = base.find('}');
  if (close != std::string_view::npos) {
    const std::string k(base.substr(close + 1));
    if (k.rfind(prefix, 0) == 0 && keys::side_base(k) == base) return k;
  }
  return {};
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
  const bool tagged = redkit::has_hash_tag(full);
  for (std::string_view suffix : keys::kSideSuffixes) {
    const std::string side = keys::side_key(base, suffix);
    if (redkit::hash_slot(side) != redkit::hash_slot(full)) fail("a side key is in another slot", prefix, key);
    if (tagged && side.rfind(full, 0) != 0) fail("a tagged key's side key does not start with it", prefix, key);
    if (!tagged && !keys::is_untagged_side_key(side, prefix)) fail("a side key is not recognised", prefix, key);
  }

  // Any key the check accepts ends in a suffix, and its base decodes to a
  // value key of the prefix in the same slot.
  for (std::string_view candidate : {std::string_view(full), rest, key}) {
    if (!keys::is_untagged_side_key(candidate, prefix)) continue;
    bool decoded = false;
    for (std::string_view suffix : keys::kSideSuffixes) {
      if (candidate.size() < suffix.size() || candidate.substr(candidate.size() - suffix.size()) != suffix) continue;
      const std::string_view base_of = candidate.substr(0, candidate.size() - suffix.size());
      const std::string value = value_key_of(base_of, prefix);
      if (value.empty() && keys::side_base("") != base_of) continue;
      if (redkit::hash_slot(candidate) != redkit::hash_slot(value)) fail("a side key outside its value's slot", prefix, key);
      decoded = true;
    }
    if (!decoded) fail("accepted a key that is no side key", prefix, key);
  }

  if (unescape(keys::glob_escape(full)) != full) fail("glob_escape is not undone by its escapes", prefix, key);
  return 0;
}
