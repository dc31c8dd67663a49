// The connection layer: redkit's own socket (deadlines that signals cannot
// stretch, every address tried, IPv6, unix), fork safety, the one checkout
// (pool refusals, leases that come back dirty, cluster pipelines that never
// hold one node's connection while waiting for another's), events and
// stats. Against real redis-server processes.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <redkit/redkit.hpp>

#include "support/cluster.hpp"
#include "support/fork.hpp"
#include "support/server.hpp"
#include "support/socket_util.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::Options;
using redkit::Redis;
using redkit::Reply;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;
using redkit::test::shared_server;
using redkit::test::fork_child;
using redkit::test::unique_prefix;
using redkit::test::wait_child;
using redkit::test::wait_until;
using redkit::test::with_alarms_every_100ms;
using Clock = std::chrono::steady_clock;

namespace {

Options shared_options() { return Options::from_uri(shared_server().uri()); }

std::chrono::milliseconds since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
}

}  // namespace

// ---------------------------------------------------------------- deadlines

class SignalDuringRead : public ::testing::TestWithParam<bool> {};

// hiredis restarted a read after EINTR with a fresh SO_RCVTIMEO, so a 10 Hz
// signal kept a read from a stopped server blocked for as long as it was
// stopped. redkit's deadline is on the steady clock.
TEST_P(SignalDuringRead, TenHertzSignalsDuringAReadFromAStoppedServerEndInTimeoutWithinTheDeadline) {
  RedisServer server;
  Options o = Options::from_uri(server.uri());
  o.command_timeout = 500ms;
  Redis r(o);
  ASSERT_EQ(r.command({"PING"}).string_copy(), "PONG");

  ASSERT_EQ(::kill(server.pid(), SIGSTOP), 0);
  std::chrono::milliseconds took{0};
  const int alarms = with_alarms_every_100ms(GetParam(), [&] {  // at the reading thread itself
    const auto t0 = Clock::now();
    EXPECT_THROW(r.command({"GET", "k"}), redkit::TimeoutError);
    took = since(t0);
  });
  ::kill(server.pid(), SIGCONT);

  EXPECT_GE(took, 490ms);
  EXPECT_LE(took, 600ms);  // command_timeout + 100 ms
  EXPECT_GE(alarms, 3);     // the signals did arrive during the read
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");  // a fresh connection after the timeout
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutSaRestart, SignalDuringRead, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "SaRestart" : "NoSaRestart"; });

// A listening socket whose accept queue is full drops SYNs: a black hole on
// loopback (support/socket_util.hpp's FullBacklog). connect_timeout must end
// the connect.
TEST(Transport, ConnectToABlackHoleTimesOutWithinConnectTimeout) {
  const redkit::test::FullBacklog listener;

  Options o;
  o.host = "127.0.0.1";
  o.port = listener.port();
  o.connect_timeout = 300ms;
  Redis r(o);
  const auto t0 = Clock::now();
  try {
    r.command({"PING"});
    ADD_FAILURE() << "expected TimeoutError";
  } catch (const redkit::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("connect"), std::string::npos) << e.what();
  }
  EXPECT_LE(since(t0), 450ms);
}

TEST(Transport, ConnectsOverIpv6LoopbackAndByHostName) {
  ServerOptions so;
  so.extra_args = {"--bind", "127.0.0.1", "::1"};
  RedisServer server(so);
  Redis v6("redis://[::1]:" + std::to_string(server.port()) + "/0");
  EXPECT_EQ(v6.command({"PING"}).string_copy(), "PONG");
  // CLIENT INFO shows the peer address the server saw.
  EXPECT_NE(std::string(v6.command({"CLIENT", "INFO"}).string_copy()).find("addr=[::1]"), std::string::npos);
  Redis named("redis://localhost:" + std::to_string(server.port()) + "/0");
  EXPECT_EQ(named.command({"PING"}).string_copy(), "PONG");
}

TEST(Transport, HostNameTriesEveryAddressUntilOneAnswers) {
  // The server listens on 127.0.0.1 only; "localhost" resolves to ::1 as
  // well, which refuses: the next address must be tried within the timeout.
  RedisServer server;
  Options o;
  o.host = "localhost";
  o.port = server.port();
  Redis r(o);
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Transport, UnixSocketPathLongerThanTheKernelTakesIsConfigError) {
  Options o;
  o.unix_socket = "/tmp/" + std::string(131, 'x') + ".sock";  // 141 bytes
  try {
    Redis r(o);
    ADD_FAILURE() << "expected ConfigError";
  } catch (const redkit::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("141"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Redis("unix:///tmp/" + std::string(131, 'x') + ".sock"), redkit::ConfigError);
}

TEST(Transport, TlsWithoutTheTlsHeaderIsAConfigErrorThatSaysWhatToInclude) {
  // This program does not include <redkit/tls.hpp>.
  try {
    Redis r("rediss://127.0.0.1:6380/0");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const redkit::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("redkit/tls.hpp"), std::string::npos) << what;
    EXPECT_NE(what.find("redkit::tls"), std::string::npos) << what;
  }
}

TEST(Transport, MovedFromClientsThrowInsteadOfCrashing) {
  Redis a(shared_options());
  Redis b(std::move(a));
  EXPECT_EQ(b.command({"PING"}).string_copy(), "PONG");
  EXPECT_THROW(a.command({"PING"}), redkit::Error);  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW(a.lease(), redkit::Error);
  EXPECT_THROW(a.options(), redkit::Error);
  redkit::Lease l = b.lease();
  redkit::Lease m(std::move(l));
  EXPECT_THROW(l.command(Command{"PING"}), redkit::Error);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(m.command(Command{"PING"}).string_copy(), "PONG");
}

// ---------------------------------------------------------------- big writes

// A 100 MiB SET goes out from where the value lies: the client's peak
// memory grows by far less than the value (it was ~3x before). Each way
// runs in a process of its own (ru_maxrss is a high-water mark).
TEST(Transport, AHundredMebibyteSetCostsNoCopyOfTheValue) {
  auto extra_mib = [](const std::string& mode) {
    redkit::test::ChildProcess child(redkit::test::helper_path("big_set"), {shared_server().uri(), mode});
    EXPECT_EQ(child.wait(120s), 0) << child.output();
    const std::string out = child.output();
    std::printf("[memory] 100 MiB SET: %s", out.c_str());
    const auto at = out.find("=");
    return at == std::string::npos ? 1e9 : std::stod(out.substr(at + 1));
  };
  EXPECT_LT(extra_mib("arg_view"), 10.0);   // Command::arg_view: not copied at all
  EXPECT_LT(extra_mib("cache_set"), 10.0);  // RedisCache::set references the serializer's bytes
  // The control: Command::arg copies the value into the command once, and
  // the measurement sees it (sanitizers' shadow memory makes it larger).
  EXPECT_GT(extra_mib("arg_copy"), 90.0);
}

// ---------------------------------------------------------------- the pool and leases

TEST(Checkout, PoolRefusesStateChangingCommandsAndPointsToLease) {
  Redis r(shared_options());
  const std::vector<std::vector<std::string_view>> refused = {
      {"SELECT", "1"},        {"MULTI"},          {"EXEC"},          {"WATCH", "k"},
      {"SUBSCRIBE", "ch"},    {"PSUBSCRIBE", "c*"}, {"MONITOR"},     {"CLIENT", "REPLY", "OFF"},
      {"client", "tracking", "on"}, {"READONLY"}, {"RESET"},         {"AUTH", "x"},
      {"HELLO", "3"},         {"QUIT"},           {"select", "2"},   {"CLIENT", "SETNAME", "x"}};
  for (const auto& argv : refused) {
    Command cmd;
    for (auto a : argv) cmd.arg(a);
    try {
      r.command(cmd);
      ADD_FAILURE() << "not refused: " << argv[0];
    } catch (const redkit::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("lease()"), std::string::npos) << e.what();
    }
  }
  // The pooled connection is untouched: still db 0.
  EXPECT_EQ(r.command({"CLIENT", "INFO"}).string_copy().find("db=0") != std::string::npos, true);
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Checkout, PipelineRunsATransactionThatClosesWithinIt) {
  Redis r(shared_options());
  const std::string k = unique_prefix() + "tx";
  auto replies = r.pipeline({Command{"MULTI"}, Command{"SET"}.key(k).arg("1"), Command{"INCR"}.key(k),
                             Command{"EXEC"}});
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_TRUE(replies[0].ok());
  EXPECT_EQ(replies[1].string(), "QUEUED");
  ASSERT_EQ(replies[3].size(), 2u);
  EXPECT_EQ(replies[3][1].integer(), 2);
  auto watched = r.pipeline({Command{"WATCH"}.key(k), Command{"MULTI"}, Command{"GET"}.key(k), Command{"EXEC"}});
  EXPECT_EQ(watched[3][0].string(), "2");
  EXPECT_THROW(r.pipeline({Command{"MULTI"}, Command{"SET"}.key(k).arg("1")}), redkit::ConfigError);
  EXPECT_THROW(r.pipeline({Command{"EXEC"}}), redkit::ConfigError);
  EXPECT_THROW(r.pipeline({Command{"WATCH"}.key(k)}), redkit::ConfigError);
  // Nothing was left open on the pooled connection.
  EXPECT_EQ(r.command(Command{"GET"}.key(k)).string_copy(), "2");
}

namespace {
long long client_id(redkit::Lease& l) { return l.command(Command{"CLIENT", "ID"}).integer(); }
}  // namespace

TEST(Checkout, ALeaseLeftInMultiIsDiscardedNotReused) {
  Options o = shared_options();
  o.dedicated_pool_size = 1;
  Redis r(o);
  long long first = 0;
  {
    redkit::Lease l = r.lease();
    first = client_id(l);
    EXPECT_TRUE(l.command(Command{"MULTI"}).ok());
    EXPECT_EQ(l.command(Command{"GET", "x"}).string_copy(), "QUEUED");
  }  // left in MULTI
  redkit::Lease next = r.lease();
  EXPECT_NE(client_id(next), first);
  // A blocking pop reads its own nil, not a QUEUED left over.
  EXPECT_TRUE(next.command(Command{"BLPOP"}.key(unique_prefix() + "l").arg("0.05"), 1000ms).is_nil());
}

TEST(Checkout, ALeaseThatClosedItsTransactionIsReused) {
  Options o = shared_options();
  o.dedicated_pool_size = 1;
  Redis r(o);
  long long first = 0;
  {
    redkit::Lease l = r.lease();
    first = client_id(l);
    l.command(Command{"MULTI"});
    l.command(Command{"EXEC"});
  }
  redkit::Lease next = r.lease();
  EXPECT_EQ(client_id(next), first);
}

TEST(Checkout, LeasesLeftSubscribedInMonitorAfterSelectOrWithRepliesOwedAreDiscarded) {
  Options o = shared_options();
  o.dedicated_pool_size = 1;
  Redis r(o);
  auto leave = [&](auto how) {
    long long id = 0;
    {
      redkit::Lease l = r.lease();
      id = client_id(l);
      how(l);
    }
    redkit::Lease next = r.lease();
    EXPECT_NE(client_id(next), id);
    EXPECT_EQ(next.command(Command{"PING"}).string_copy(), "PONG");
  };
  leave([](redkit::Lease& l) { l.command(Command{"SUBSCRIBE", "ch"}); });
  leave([](redkit::Lease& l) { l.command(Command{"MONITOR"}); });
  leave([](redkit::Lease& l) { l.command(Command{"SELECT", "3"}); });
  leave([](redkit::Lease& l) { l.send(Command{"PING"}); });  // reply never read
  leave([](redkit::Lease& l) {
    EXPECT_THROW(l.command(Command{"BLPOP", unique_prefix() + "l", "1"}, 100ms), redkit::TimeoutError);
  });
}

TEST(Checkout, ALeaseKeepsItsPoolAliveAfterTheClientIsGone) {
  redkit::Lease l = Redis(shared_options()).lease();  // the Redis is a temporary
  EXPECT_EQ(l.command(Command{"PING"}).string_copy(), "PONG");
  EXPECT_EQ(l.command(Command{"ECHO", "still here"}).string_copy(), "still here");
}

TEST(Checkout, DedicatedConnectionsAreLimitedByAnOptionAndTheWaitIsBounded) {
  Options o = shared_options();
  o.dedicated_pool_size = 2;
  o.pool_wait_timeout = 200ms;
  std::vector<redkit::Event> events;
  std::mutex m;
  o.on_event = [&](const redkit::Event& e) {
    std::lock_guard<std::mutex> lk(m);
    events.push_back(redkit::Event{e.type, {}, {}});
  };
  Redis r(o);
  auto a = r.lease();
  auto b = r.lease();
  const auto t0 = Clock::now();
  EXPECT_THROW(r.lease(), redkit::TimeoutError);
  EXPECT_GE(since(t0), 190ms);
  EXPECT_LE(since(t0), 400ms);
  {
    std::lock_guard<std::mutex> lk(m);
    EXPECT_TRUE(std::any_of(events.begin(), events.end(),
                            [](const redkit::Event& e) { return e.type == redkit::EventType::PoolWaitExhausted; }));
  }
  b.release();
  auto c = r.lease();
  EXPECT_EQ(c.command(Command{"PING"}).string_copy(), "PONG");
}

TEST(Checkout, MoreThanTwoHundredFiftySixLeasesWhenTheOptionAllowsThem) {
  Options o = shared_options();
  o.dedicated_pool_size = 300;
  Redis r(o);
  std::vector<redkit::Lease> leases;
  for (int i = 0; i < 260; ++i) leases.push_back(r.lease());
  EXPECT_EQ(leases.back().command(Command{"PING"}).string_copy(), "PONG");
  EXPECT_GE(r.stats().connections_open, 260u);
}

// ---------------------------------------------------------------- events and stats

TEST(Events, ReportOpenedClosedBrokenAndConnectFailedWithCounters) {
  RedisServer server;
  std::mutex m;
  std::vector<std::pair<redkit::EventType, std::string>> seen;
  Options o = Options::from_uri(server.uri());
  o.on_event = [&](const redkit::Event& e) {
    std::lock_guard<std::mutex> lk(m);
    seen.emplace_back(e.type, std::string(e.endpoint));
  };
  o.connect_timeout = 300ms;
  Redis r(o);
  r.command({"PING"});
  r.command({"SET", "a", "1"});
  const auto count = [&](redkit::EventType t) {
    std::lock_guard<std::mutex> lk(m);
    return std::count_if(seen.begin(), seen.end(), [&](const auto& e) { return e.first == t; });
  };
  EXPECT_EQ(count(redkit::EventType::ConnectionOpened), 1);
  {
    std::lock_guard<std::mutex> lk(m);
    EXPECT_EQ(seen.front().second, "127.0.0.1:" + std::to_string(server.port()));
  }
  // A connection in use when the server dies breaks: a lease blocked in BLPOP.
  std::thread blocked([&] {
    redkit::Lease l = r.lease();
    EXPECT_THROW(l.command(Command{"BLPOP", "never", "5"}, 6000ms), redkit::IoError);
  });
  ASSERT_TRUE(wait_until(
      [&] { return server.cli("INFO", "clients").find("blocked_clients:1") != std::string::npos; }, 2000ms));
  server.kill();
  blocked.join();
  EXPECT_EQ(count(redkit::EventType::ConnectionBroken), 1);
  // The idle pooled connection is found dead and closed; the new connect is refused.
  EXPECT_THROW(r.command({"PING"}), redkit::IoError);
  EXPECT_GE(count(redkit::EventType::ConnectFailed), 1);
  EXPECT_EQ(count(redkit::EventType::ConnectionClosed), 1);
  const redkit::ClientStats s = r.stats();
  EXPECT_EQ(s.connections_created, 2u);  // the pooled one and the lease
  EXPECT_EQ(s.connections_open, 0u);
  EXPECT_GE(s.connect_failures, 1u);
  EXPECT_EQ(s.commands_sent, 3u);  // PING, SET, BLPOP
  EXPECT_GE(s.io_errors, 1u);
}

TEST(Events, AThrowingHandlerChangesNothing) {
  Options o = shared_options();
  o.on_event = [](const redkit::Event&) { throw std::runtime_error("handler failed"); };
  Redis r(o);
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Events, ClusterReportsSlotMapReloadsAndRedirects) {
  redkit::test::RedisCluster cluster(redkit::test::ClusterOptions{3, 0, {}, std::chrono::milliseconds(60000)});
  std::mutex m;
  std::vector<redkit::EventType> seen;
  Options o = Options::from_uri(cluster.seed_uri());
  o.on_event = [&](const redkit::Event& e) {
    std::lock_guard<std::mutex> lk(m);
    seen.push_back(e.type);
  };
  redkit::Cluster c(o);
  c.command(Command{"SET"}.key("a").arg("1"));
  // A keyless argv naming a key lands on any master: MOVED sends it on.
  for (int i = 0; i < 6; ++i) c.command({"GET", "b" + std::to_string(i)});
  std::lock_guard<std::mutex> lk(m);
  EXPECT_GE(std::count(seen.begin(), seen.end(), redkit::EventType::SlotMapReloaded), 1);
  EXPECT_GE(std::count(seen.begin(), seen.end(), redkit::EventType::RedirectFollowed), 1);
  EXPECT_GE(c.stats().redirects, 1u);
  EXPECT_GE(c.stats().slot_map_reloads, 1u);
}

// ---------------------------------------------------------------- Cluster pipelines

TEST(ClusterCheckout, PipelinesWithOppositeKeyOrdersNeverStallOnOnePooledConnectionPerNode) {
  redkit::test::RedisCluster cluster(redkit::test::ClusterOptions{3, 0, {}, std::chrono::milliseconds(60000)});
  Options o = Options::from_uri(cluster.seed_uri());
  o.pool_size = 1;
  o.pool_wait_timeout = 1000ms;
  redkit::Cluster c(o);
  // Two keys on different masters (the three masters split the slots in thirds).
  std::string low, high;
  for (int i = 0; low.empty() || high.empty(); ++i) {
    const std::string k = "k" + std::to_string(i);
    if (redkit::hash_slot(k) < 5000 && low.empty()) low = k;
    if (redkit::hash_slot(k) > 11500 && high.empty()) high = k;
  }
  c.command(Command{"SET"}.key(low).arg("L"));
  c.command(Command{"SET"}.key(high).arg("H"));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const std::string& first = t % 2 ? low : high;
      const std::string& second = t % 2 ? high : low;
      for (int i = 0; i < 300; ++i) {
        try {
          auto r = c.pipeline({Command{"GET"}.key(first), Command{"GET"}.key(second)});
          if (r[0].string() != (t % 2 ? "L" : "H") || r[1].string() != (t % 2 ? "H" : "L")) ++failures;
        } catch (const redkit::Error& e) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LT(since(t0), 20s);
}

// ---------------------------------------------------------------- fork

TEST(Fork, FourChildrenAndTheParentOnOneInheritedHandleNeverCrossReplies) {
  Redis r(shared_options());
  const std::string p = unique_prefix();
  // Fill the pool: the children inherit idle connections they must not use.
  {
    std::vector<std::thread> warm;
    for (int i = 0; i < 4; ++i) warm.emplace_back([&] { r.command({"PING"}); });
    for (auto& t : warm) t.join();
  }
  auto work = [&r, p](const std::string& who) {
    int crossed = 0;
    for (int i = 0; i < 500; ++i) {
      const std::string key = p + who + ":" + std::to_string(i);
      r.command(Command{"SET"}.key(key).arg(who + std::to_string(i)));
      if (r.command(Command{"GET"}.key(key)).string_copy() != who + std::to_string(i)) ++crossed;
      if (r.command(Command{"INCR"}.key(p + who + ":n")).integer() != i + 1) ++crossed;
    }
    return crossed;
  };
  // A parent thread keeps using the handle while the children are forked,
  // so a connection (and the pool's mutex) may be busy at the fork.
  std::atomic<bool> stop{false};
  std::atomic<int> background_crossed{0};
  std::thread busy([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      if (r.command({"ECHO", "bg" + std::to_string(i)}).string_copy() != "bg" + std::to_string(i)) ++background_crossed;
    }
  });
  std::vector<pid_t> children;
  for (int c = 0; c < 4; ++c) {
    children.push_back(fork_child([&work, &r, c] {
      const int crossed = work("child" + std::to_string(c));
      // Its own connections: made in the child, counted from zero.
      return crossed == 0 && r.stats().connections_created >= 1 ? 0 : 1;
    }));
  }
  const int parent_crossed = work("parent");
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0);
  stop = true;
  busy.join();
  EXPECT_EQ(parent_crossed, 0);
  EXPECT_EQ(background_crossed.load(), 0);
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Fork, ALockHeldInTheParentSurvivesTheChildsUnlockDestructorAndExit) {
  Redis r(shared_options());
  redkit::LockOptions lo;
  lo.ttl = 600ms;
  const std::string name = unique_prefix() + "lock";
  redkit::RedisLock<> lock(r, name, lo);
  lock.lock();
  const std::string token = lock.token();
  const pid_t child = fork_child([&] {
    if (lock.owns_lock()) return 1;  // not the child's hold
    lock.unlock();
    { redkit::RedisLock<> taken = std::move(lock); }  // its destructor runs in the child
    redkit::RedisLock<> other(r, name, lo);
    if (other.try_lock()) return 2;  // the parent still holds it
    if (r.command(Command{"GET"}.key(name)).string_copy() != token) return 3;
    return 0;
  });
  EXPECT_EQ(wait_child(child), 0);
  EXPECT_EQ(shared_server().cli("GET", name), token);
  // Renewal in the parent goes on past the TTL.
  std::this_thread::sleep_for(1500ms);  // 2.5 TTLs must pass for renewal to matter
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(shared_server().cli("GET", name), token);
  lock.unlock();
  EXPECT_EQ(shared_server().cli("GET", name), "(nil)");
}

TEST(Fork, AChildStartsItsOwnSchedulerSoItsLocksAreRenewed) {
  Redis r(shared_options());
  r.command({"PING"});
  redkit::LockOptions lo;
  lo.ttl = 300ms;
  const std::string name = unique_prefix() + "lock";
  {
    redkit::RedisLock<> warm(r, unique_prefix() + "warm", lo);  // the parent's scheduler thread runs
    warm.lock();
    warm.unlock();
  }
  const pid_t child = fork_child([&] {
    redkit::RedisLock<> lock(r, name, lo);
    lock.lock();
    std::this_thread::sleep_for(1200ms);  // 4 TTLs: only renewal keeps it
    if (!lock.owns_lock()) return 1;
    if (r.command(Command{"GET"}.key(name)).string_copy() != lock.token()) return 2;
    lock.unlock();
    return 0;
  });
  EXPECT_EQ(wait_child(child), 0);
  EXPECT_EQ(shared_server().cli("GET", name), "(nil)");
}

TEST(Fork, ParentAndChildDrawDifferentRandomness) {
  (void)redkit::detail::unique_token();  // the parent's generator is seeded
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = fork_child([&] {
    const std::string t = redkit::detail::unique_token() + redkit::detail::random_token();
    return ::write(fds[1], t.data(), t.size()) == static_cast<ssize_t>(t.size()) ? 0 : 1;
  });
  const std::string mine = redkit::detail::unique_token() + redkit::detail::random_token();
  EXPECT_EQ(wait_child(child), 0);
  char buf[128] = {};
  const ssize_t n = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_EQ(n, static_cast<ssize_t>(mine.size()));
  EXPECT_NE(std::string(buf, static_cast<std::size_t>(n)), mine);
}

TEST(Fork, AChildIsNotStuckBehindALoadInFlightOnAParentThread) {
  Redis r(shared_options());
  redkit::RedisCache<std::string> cache(r, unique_prefix());
  std::atomic<bool> loading{false};
  std::thread parent_load([&] {
    cache.get_or_set("k", [&] {
      loading = true;
      std::this_thread::sleep_for(800ms);  // a slow load, in flight across the fork
      return std::string("parent");
    });
  });
  ASSERT_TRUE(wait_until([&] { return loading.load(); }, 2000ms));
  const pid_t child = fork_child([&] {
    // The parent's in-process flight does not exist here; the child waits
    // for the parent's fill (across processes) or loads itself.
    const std::string v = cache.get_or_set("k", [] { return std::string("child"); });
    return v == "parent" || v == "child" ? 0 : 1;
  });
  const auto t0 = Clock::now();
  EXPECT_EQ(wait_child(child), 0);
  EXPECT_LT(since(t0), 5s);
  parent_load.join();
}
