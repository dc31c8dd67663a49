// RedisCache: cache-aside in front of a slow lookup, with JSON values.
//   REDIS_URL=redis://127.0.0.1:6379/0 ./redkit_example_cache
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#ifdef REDKIT_HAVE_JSON
#include <redkit/cache.hpp>
#include <redkit/json.hpp>

using namespace std::chrono_literals;

namespace shop {

struct Product {
  int id = 0;
  std::string name;
  double price = 0;
};

// nlohmann's customisation: what JsonSerializer<Product> stores.
void to_json(nlohmann::json& j, const Product& p) { j = {{"id", p.id}, {"name", p.name}, {"price", p.price}}; }
void from_json(const nlohmann::json& j, Product& p) {
  j.at("id").get_to(p.id);
  j.at("name").get_to(p.name);
  j.at("price").get_to(p.price);
}

// The slow source of truth: a database query, a remote call.
std::optional<Product> query_product(int id) {
  std::this_thread::sleep_for(200ms);
  if (id > 100) return std::nullopt;  // no such product
  return Product{id, "product " + std::to_string(id), 0.5 + 10 * id};
}

}  // namespace shop

int main() {
  const char* url = std::getenv("REDIS_URL");
  try {
    redkit::Redis redis(redkit::Options::from_uri(url ? url : "redis://127.0.0.1:6379/0"));

    redkit::CacheOptions options;
    options.ttl = 10min;
    options.ttl_jitter = 0.1;     // expire up to 10% early, spread out
    options.negative_ttl = 30s;   // remember "no such product" for 30 s
    redkit::RedisCache<shop::Product, redkit::JsonSerializer<shop::Product>> products(
        redis, "example:product:", options);
    products.clear();  // a clean start for the demonstration

    auto timed = [](const char* what, auto&& f) {
      const auto t0 = std::chrono::steady_clock::now();
      auto result = f();
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      std::cout << what << ": " << ms.count() << " ms\n";
      return result;
    };

    // Cache-aside: the first call runs the query and stores the JSON, the
    // second is served from Redis.
    for (int i = 0; i < 2; ++i) {
      auto p = timed("product 7", [&] { return products.get_or_set("7", [] { return shop::query_product(7); }); });
      std::cout << "  " << p->name << " costs " << p->price << "\n";
    }
    std::cout << "stored at example:product:7: "
              << redis.command({"GET", "example:product:7"}).string_copy() << "\n";

    // An absent product is cached as absent, not queried again.
    for (int i = 0; i < 2; ++i) {
      auto p = timed("product 404", [&] { return products.get_or_set("404", [] { return shop::query_product(404); }); });
      std::cout << "  " << (p ? p->name : "no such product") << "\n";
    }

    // Sixteen threads asking for a missing key cause one query.
    std::vector<std::thread> threads;
    for (int i = 0; i < 16; ++i) {
      threads.emplace_back([&] { products.get_or_set("42", [] { return shop::query_product(42); }); });
    }
    for (auto& t : threads) t.join();

    // After a write to the source of truth, drop the cached copy.
    products.erase("7");

    const redkit::CacheStats s = products.stats();
    std::cout << "hits " << s.hits << ", misses " << s.misses << ", loads " << s.loads
              << " (" << s.coalesced << " calls shared another thread's load)\n";
    products.clear();
    return 0;
  } catch (const redkit::Error& e) {
    std::cerr << "redis: " << e.what() << "\n";
    return 1;
  }
}

#else

int main() {
  std::cout << "examples/cache.cpp needs nlohmann/json (Debian: nlohmann-json3-dev)\n";
  return 0;
}

#endif
