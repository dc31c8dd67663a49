// Links only redkit::json (or `pkg-config redkit-json`): <redkit/json.hpp>
// and nlohmann/json must come with it. Runs without a server.
#include <redkit/cache.hpp>
#include <redkit/json.hpp>

#include <iostream>
#include <string>

struct Order {
  int id = 0;
  std::string item;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, item)

int main() {
  const std::string stored = redkit::JsonSerializer<Order>::serialize(Order{7, "tea"});
  const Order back = redkit::JsonSerializer<Order>::deserialize(stored);
  std::cout << "redkit::json: " << stored << '\n';
  return stored == R"({"id":7,"item":"tea"})" && back.id == 7 && back.item == "tea" ? 0 : 1;
}
