// The client kinds the primitive suites run over, as GoogleTest types. Each
// kind makes a client connected to servers the support code started:
//   using Client = ...;  static Client make();  static const char* name();
//   static Client make(tweak): the same, after tweak(Options&) (a timeout, say).
// Suites are TYPED_TESTs over ClientKinds, so one body runs against every
// kind: a single Redis, sentinel-mode Redis (1 master, 1 replica, 3
// sentinels) and Cluster (3 masters, 3 replicas). Each kind's servers are
// started once per process, on first use, and stopped at exit.
#pragma once

#include <gtest/gtest.h>

#include <redkit/cluster.hpp>
#include <redkit/redis.hpp>

#include "support/cluster.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

namespace redkit::test {

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

using ClientKinds = ::testing::Types<SingleServer, SentinelMaster, ClusterNodes>;

struct ClientKindNames {
  template <class T>
  static std::string GetName(int) {
    return T::name();
  }
};

}  // namespace redkit::test
