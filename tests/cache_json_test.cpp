// RedisCache with JsonSerializer: the stored bytes are plain JSON that
// Python's json module reads, and JSON that Python writes reads back here.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#ifdef REDKIT_HAVE_JSON
#include <redkit/cache.hpp>
#include <redkit/json.hpp>
#ifdef REDKIT_HAVE_ZSTD
#include <redkit/compressed.hpp>
#endif

#include "support/clients.hpp"
#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::JsonSerializer;
using redkit::RedisCache;
using redkit::Reply;
using redkit::test::ChildProcess;
using redkit::test::RedisServer;
using redkit::test::unique_prefix;

namespace shop {

struct Order {
  int id = 0;
  std::string item;
  double price = 0;
  std::vector<std::string> tags;
  bool operator==(const Order& o) const {
    return id == o.id && item == o.item && price == o.price && tags == o.tags;
  }
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, item, price, tags)

}  // namespace shop

namespace {

bool python_has_redis() {
  if (::access("/usr/bin/python3", X_OK) != 0) return false;
  ChildProcess py("/usr/bin/python3", {"-c", "import json, redis"});
  return py.wait(10s) == 0;
}

}  // namespace

template <class Kind>
class CacheJsonTest : public ::testing::Test {
 protected:
  using Client = typename Kind::Client;
  Client client = Kind::make();
  const std::string prefix = unique_prefix() + "json:";

  std::string raw_get(const std::string& key) {
    Reply r = client.command(Command{"GET"}.key(key));
    return r.is_nil() ? "(nil)" : std::string(r.string());
  }
};
TYPED_TEST_SUITE(CacheJsonTest, redkit::test::ClientKinds, redkit::test::ClientKindNames);

TYPED_TEST(CacheJsonTest, StoresCompactJsonAndRoundTripsAStruct) {
  RedisCache<shop::Order, JsonSerializer<shop::Order>, typename TestFixture::Client> orders(this->client,
                                                                                           this->prefix);
  const shop::Order order{42, "caf\xc3\xa9", 9.5, {"new", "gift"}};
  orders.set("42", order);
  EXPECT_EQ(this->raw_get(this->prefix + "42"),
            R"({"id":42,"item":"café","price":9.5,"tags":["new","gift"]})");
  EXPECT_EQ(orders.get("42"), order);
  EXPECT_EQ(orders.get_or_set("43", [] { return shop::Order{43, "tea", 2.0, {}}; }).item, "tea");
}

TYPED_TEST(CacheJsonTest, JsonThatDoesNotFitTheTypeIsADecodeErrorAndGetOrSetReloads) {
  RedisCache<shop::Order, JsonSerializer<shop::Order>, typename TestFixture::Client> orders(this->client,
                                                                                           this->prefix);
  this->client.command(Command{"SET"}.key(this->prefix + "1").arg(R"({"id":"one"})"));
  EXPECT_THROW(orders.get("1"), redkit::DecodeError);
  this->client.command(Command{"SET"}.key(this->prefix + "2").arg("{not json"));
  EXPECT_THROW(orders.get("2"), redkit::DecodeError);
  EXPECT_EQ(orders.get_or_set("2", [] { return shop::Order{2, "fixed", 1, {}}; }).item, "fixed");
  EXPECT_EQ(orders.stats().errors, 3u);
}

#ifdef REDKIT_HAVE_ZSTD
TYPED_TEST(CacheJsonTest, CompressedJsonRoundTripsAndReadsJsonStoredBeforeCompression) {
  using Zipped = redkit::Compressed<JsonSerializer<shop::Order>, 256>;
  using Kind = typename TestFixture::Client;
  RedisCache<shop::Order, JsonSerializer<shop::Order>, Kind> plain(this->client, this->prefix);
  RedisCache<shop::Order, Zipped, Kind> zipped(this->client, this->prefix);
  shop::Order big{1, std::string(4000, 'x'), 1, {}};
  plain.set("old", big);
  zipped.set("new", big);
  EXPECT_LT(this->raw_get(this->prefix + "new").size(), 1000u);
  EXPECT_EQ(zipped.get("old"), big);
  EXPECT_EQ(zipped.get("new"), big);
}
#endif

TEST(CacheJson, PythonReadsWhatRedkitWroteAndRedkitReadsWhatPythonWrote) {
  if (!python_has_redis()) GTEST_SKIP() << "/usr/bin/python3 with the redis module (python3-redis) is needed";
  RedisServer& server = redkit::test::shared_server();
  redkit::Redis client(server.uri());
  const std::string prefix = unique_prefix() + "json:";
  RedisCache<shop::Order, JsonSerializer<shop::Order>> orders(client, prefix);
  orders.set("from-cpp", shop::Order{7, "caf\xc3\xa9", 2.25, {"a", "b"}});

  const std::string script = R"py(
import json, sys, redis
r = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]))
order = json.loads(r.get(sys.argv[2]))
sys.stdout.write('%d|%s|%r|%s\n' % (order['id'], order['item'].encode('utf-8').hex(), order['price'],
                                     ','.join(order['tags'])))
r.set(sys.argv[3], json.dumps({'id': 8, 'item': 'th\u00e9', 'price': 0.1, 'tags': ['x']}))
)py";
  ChildProcess py("/usr/bin/python3", {"-c", script, std::to_string(server.port()), prefix + "from-cpp",
                                       prefix + "from-python"});
  ASSERT_EQ(py.wait(30s), 0) << py.output();
  EXPECT_EQ(py.output(), "7|636166c3a9|2.25|a,b\n");
  // Python's json.dumps escapes the é as \u00e9; nlohmann reads it back.
  EXPECT_EQ(orders.get("from-python"), (shop::Order{8, "th\xc3\xa9", 0.1, {"x"}}));
}

#else

TEST(CacheJson, NeedsNlohmannJson) { GTEST_SKIP() << "nlohmann/json was not found at configure time"; }

#endif
