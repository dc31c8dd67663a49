// The client kinds the primitive suites run over, as GoogleTest types. Each
// kind makes a client connected to servers the support code started:
//   using Client = ...;  static Client make();  static const char* name();
// Suites are TYPED_TESTs over ClientKinds, so one body runs against every
// kind (a single Redis now; sentinel-mode Redis and Cluster join with #5).
#pragma once

#include <gtest/gtest.h>

#include <redkit/redis.hpp>

#include "support/server.hpp"

namespace redkit::test {

struct SingleServer {
  using Client = redkit::Redis;
  static Client make() { return Client(Options::from_uri(shared_server().uri())); }
  static const char* name() { return "Redis"; }
};

using ClientKinds = ::testing::Types<SingleServer>;

struct ClientKindNames {
  template <class T>
  static std::string GetName(int) {
    return T::name();
  }
};

}  // namespace redkit::test
