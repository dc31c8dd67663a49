// The client kinds the primitive suites run over, as GoogleTest types. Each
// kind makes a client connected to servers the support code started:
//   using Client = ...;  static Client make();  static const char* name();
//   static Client make(tweak): the same, after tweak(Options&) (a timeout, say).
// Suites are TYPED_TESTs over ClientKinds, so one body runs against every
// kind: a single Redis, sentinel-mode Redis (1 master, 1 replica, 3
// sentinels) and Cluster (3 masters, 3 replicas). Each kind's servers are
// started once per process, on first use, and stopped at exit. With
// REDKIT_TEST_TLS, the TLS kinds below too.
#pragma once

#include <gtest/gtest.h>

#include <redkit/cluster.hpp>
#include <redkit/redis.hpp>

#include "support/cluster.hpp"
#include "support/nodes.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

#ifdef REDKIT_TEST_TLS
#include <redkit/tls.hpp>

#include "support/tls.hpp"
#endif

namespace redkit::test {

/// The number in `field` of INFO `section` (info_field) from the node that
/// serves route, through client (Redis, Cluster); -1 when the field is
/// absent. A commandstats field (`cmdstat_evalsha`) gives its calls.
template <class Client>
long long info_number(Client& client, const std::string& section, const std::string& field,
                      const std::string& route) {
  redkit::Reply r = client.command(redkit::Command{"INFO"}.arg(section).route(route));
  std::string value = info_field(r.string(), field);
  if (value.rfind("calls=", 0) == 0) value.erase(0, 6);
  return value.empty() ? -1 : std::stoll(value);
}

/// How many processes a lock's or semaphore's `waiting` key counts (0 when
/// the key is gone). Fails the test if the key is there without an expiry
/// or with more than kWaitingTtl (60 s) left.
template <class Client>
long long waiting_count(Client& client, const std::string& key) {
  redkit::Reply v = client.command(redkit::Command{"GET"}.key(key));
  if (v.is_nil()) return 0;
  const long long ttl = client.command(redkit::Command{"PTTL"}.key(key)).integer();
  EXPECT_GT(ttl, 0) << key << " has no expiry";
  EXPECT_LE(ttl, 60000) << key;
  return std::stoll(std::string(v.string()));
}

struct SingleServer {
  using Client = redkit::Redis;
  static Client make() { return Client(Options::from_uri(shared_server().uri())); }
  template <class Tweak>
  static Client make(Tweak tweak) {
    Options o = Options::from_uri(shared_server().uri());
    tweak(o);
    return Client(o);
  }
  static const char* name() { return "Redis"; }
};

struct SentinelMaster {
  using Client = redkit::Redis;
  static Client make() { return Client(Options::from_uri(shared_sentinel().uri())); }
  template <class Tweak>
  static Client make(Tweak tweak) {
    Options o = Options::from_uri(shared_sentinel().uri());
    tweak(o);
    return Client(o);
  }
  static const char* name() { return "Sentinel"; }
};

struct ClusterNodes {
  using Client = redkit::Cluster;
  static Client make() { return Client(Options::from_uri(shared_cluster().seed_uri())); }
  template <class Tweak>
  static Client make(Tweak tweak) {
    Options o = Options::from_uri(shared_cluster().seed_uri());
    tweak(o);
    return Client(o);
  }
  static const char* name() { return "Cluster"; }
};

#ifdef REDKIT_TEST_TLS
// The same three kinds over TLS (servers from support/tls.hpp), for programs
// built with REDKIT_TEST_TLS: those include <redkit/tls.hpp> here, so a
// program without TLS (tests/transport_test.cpp checks it refuses TLS)
// never gets it by accident.

/// A Client made from uri(), after tweak(Options&).
template <class Derived, class C>
struct UriKind {
  using Client = C;
  static Client make() { return Client(Options::from_uri(Derived::uri())); }
  template <class Tweak>
  static Client make(Tweak tweak) {
    Options o = Options::from_uri(Derived::uri());
    tweak(o);
    return Client(o);
  }
};

struct TlsSingleServer : UriKind<TlsSingleServer, redkit::Redis> {
  static std::string uri() { return shared_tls_server().tls_uri(); }
  static const char* name() { return "TlsRedis"; }
};

struct TlsSentinelMaster : UriKind<TlsSentinelMaster, redkit::Redis> {
  static std::string uri() { return shared_tls_sentinel().tls_uri(); }
  static const char* name() { return "TlsSentinel"; }
};

struct TlsClusterNodes : UriKind<TlsClusterNodes, redkit::Cluster> {
  static std::string uri() { return shared_tls_cluster().tls_seed_uri(); }
  static const char* name() { return "TlsCluster"; }
};

using TlsClientKinds = ::testing::Types<TlsSingleServer, TlsSentinelMaster, TlsClusterNodes>;
#endif

#ifdef REDKIT_TEST_TLS_KINDS
// The TLS build of a typed suite (tests/CMakeLists.txt: <suite>_tls_test)
// runs its body over the TLS kinds instead.
using ClientKinds = TlsClientKinds;
#else
using ClientKinds = ::testing::Types<SingleServer, SentinelMaster, ClusterNodes>;
#endif

struct ClientKindNames {
  template <class T>
  static std::string GetName(int) {
    return T::name();
  }
};

}  // namespace redkit::test
