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

    // Each call below prints how long it took and what the cache did, from
    // the change in products.stats() (this object's hits, misses, loads).
    auto timed = [&](const std::string& what, auto&& f) {
      const redkit::CacheStats before = products.stats();
      const auto t0 = std::chrono::steady_clock::now();
      auto result = f();
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      const redkit::CacheStats after = products.stats();
      std::cout << what << ": " << ms.count() << " ms, "
                << (after.loads > before.loads ? "a miss: the query ran and its result is now in Redis"
                                               : "a hit: served from Redis, no query")
                << "\n";
      return result;
    };

    // Cache-aside: the first call runs the query and stores the JSON, the
    // second is served from Redis.
    for (int i = 0; i < 2; ++i) {
      auto p = timed("get_or_set(\"7\")", [&] { return products.get_or_set("7", [] { return shop::query_product(7); }); });
      std::cout << "  " << p->name << " costs " << p->price << "\n";
    }
    std::cout << "  stored at example:product:7, readable by any client: "
              << redis.command({"GET", "example:product:7"}).string_copy() << "\n";

    // An absent product is cached as absent (negative_ttl), not queried again.
    for (int i = 0; i < 2; ++i) {
      auto p = timed("get_or_set(\"404\")", [&] { return products.get_or_set("404", [] { return shop::query_product(404); }); });
      std::cout << "  " << (p ? p->name : "no such product (remembered for 30 s)") << "\n";
    }

    // Sixteen threads asking for a missing key at once cause one query: one
    // thread loads, the others wait for its result (single flight).
    const redkit::CacheStats before = products.stats();
    std::vector<std::thread> threads;
    for (int i = 0; i < 16; ++i) {
      threads.emplace_back([&] { products.get_or_set("42", [] { return shop::query_product(42); }); });
    }
    for (auto& t : threads) t.join();
    const redkit::CacheStats after = products.stats();
    std::cout << "16 threads missed product 42 at once: " << after.loads - before.loads << " query, "
              << after.coalesced - before.coalesced << " threads shared its result instead of querying\n";

    // After a write to the source of truth, drop the cached copy.
    products.erase("7");
    std::cout << "erase(\"7\") after an update: contains(\"7\") is now " << std::boolalpha
              << products.contains("7") << "; the next get_or_set queries again\n";

    const redkit::CacheStats s = products.stats();
    std::cout << "in all: " << s.misses << " misses answered by " << s.loads << " queries ("
              << s.coalesced << " waited for another thread's query), " << s.hits << " hits\n";
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
