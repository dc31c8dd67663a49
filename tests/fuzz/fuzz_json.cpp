// JsonSerializer on hostile stored text: it returns a value or throws
// std::invalid_argument (nested deeper than MaxDepth) or
// nlohmann::json::exception, never overflows the stack; for valid JSON the
// depth check agrees exactly with the parsed value's depth; a value read
// back survives serialize -> deserialize; conversion to a struct type fails
// only with nlohmann's exceptions.
//
// The struct has no integer members: nlohmann converts a JSON float to an
// integer with a plain cast, and one out of range (1e30 for an int) is
// undefined behaviour inside nlohmann (UBSan: float-cast-overflow; found
// here, corpus/json/regress-float-into-int-member). That is documented in
// json.hpp; it is not redkit's to catch.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <redkit/json.hpp>

namespace {

struct Item {
  double id = 0;
  std::string name;
  std::vector<double> prices;
  std::map<std::string, bool> flags;
  std::vector<std::vector<std::string>> tags;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Item, id, name, prices, flags, tags)

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_json: %s\n", what);
  std::abort();
}

// The nesting depth of a parsed value, without recursion.
std::size_t depth_of(const nlohmann::json& root) {
  std::size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> todo{{&root, 0}};
  while (!todo.empty()) {
    auto [j, d] = todo.back();
    todo.pop_back();
    if (!j->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& child : *j) todo.emplace_back(&child, d + 1);
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using Json = redkit::JsonSerializer<nlohmann::json, 8>;  // a small limit, so inputs reach it

  // The parse itself is iterative, so it is safe on any depth: it tells the
  // truth the pre-scan must agree with.
  // (nlohmann stops at a NUL byte; JsonSerializer refuses text with one.)
  nlohmann::json truth;
  bool valid = text.find('\0') == std::string_view::npos;
  try {
    if (valid) truth = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception&) {
    valid = false;
  }
  const bool refused = redkit::detail::json_deeper_than(text, Json::max_depth);
  if (valid && refused != (depth_of(truth) > Json::max_depth)) fail("the depth check disagrees with the parser");

  try {
    const nlohmann::json value = Json::deserialize(text);
    if (!valid) fail("accepted text nlohmann rejects");
    if (Json::deserialize(Json::serialize(value)) != value) fail("a value changed in a round trip");
  } catch (const std::invalid_argument&) {
    if (!refused && text.find('\0') == std::string_view::npos) fail("invalid_argument for shallow text without NUL");
  } catch (const nlohmann::json::exception&) {
    if (valid) fail("nlohmann's exception for valid, shallow text");
  }

  try {
    (void)redkit::JsonSerializer<Item>::deserialize(text);
  } catch (const std::invalid_argument&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
