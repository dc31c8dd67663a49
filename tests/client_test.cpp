// The client layer against real redis-server processes: errors, replies,
// options/URIs, connections, the pooled Redis handle and scripts.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <redkit/redkit.hpp>

#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::Command;
using redkit::Options;
using redkit::Redis;
using redkit::Reply;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;
using redkit::test::shared_server;
using redkit::test::unique_prefix;

namespace {

Redis shared_client(std::size_t pool = 4) {
  Options o = Options::from_uri(shared_server().uri());
  o.pool_size = pool;
  return Redis(o);
}

template <class F>
std::chrono::milliseconds time_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

}  // namespace

// ---------------------------------------------------------------- URIs

TEST(Options, ParsesRedisUriWithUserPasswordDbAndQuery) {
  auto o = Options::from_uri("redis://alice:p%40ss@example.com:6380/3?command_timeout=250&pool_size=8");
  EXPECT_EQ(o.host, "example.com");
  EXPECT_EQ(o.port, 6380);
  EXPECT_EQ(o.username, "alice");
  EXPECT_EQ(o.password, "p@ss");
  EXPECT_EQ(o.db, 3);
  EXPECT_EQ(o.command_timeout, 250ms);
  EXPECT_EQ(o.pool_size, 8u);
}

TEST(Options, ParsesPasswordOnlyIpv6AndDefaults) {
  auto o = Options::from_uri("redis://secret@[::1]");
  EXPECT_EQ(o.host, "::1");
  EXPECT_EQ(o.port, 6379);
  EXPECT_EQ(o.username, "");
  EXPECT_EQ(o.password, "secret");
  EXPECT_EQ(o.db, 0);
}

TEST(Options, ParsesUnixUri) {
  auto o = Options::from_uri("unix:///run/redis/redis.sock?db=1&password=x");
  EXPECT_EQ(o.unix_socket, "/run/redis/redis.sock");
  EXPECT_EQ(o.db, 1);
  EXPECT_EQ(o.password, "x");
}

TEST(Options, ParsesSentinelUri) {
  auto o = Options::from_uri("redis-sentinel://h1:26379,h2:26380/2#mymaster");
  ASSERT_EQ(o.sentinels.size(), 2u);
  EXPECT_EQ(o.sentinels[0].host, "h1");
  EXPECT_EQ(o.sentinels[1].port, 26380);
  EXPECT_EQ(o.db, 2);
  EXPECT_EQ(o.master_name, "mymaster");
}

TEST(Options, MalformedUrisGiveConfigError) {
  const char* bad[] = {
      "",                                // no scheme
      "localhost:6379",                  // no scheme
      "http://localhost",                // bad scheme
      "redis://",                        // empty host
      "redis://:6379",                   // empty host
      "redis://user:pw@/0",              // empty host
      "redis://localhost:0",             // port out of range
      "redis://localhost:65536",         // port out of range
      "redis://localhost:63a9",          // port not a number
      "redis://localhost:",              // empty port
      "redis://localhost/x",             // db not a number
      "redis://localhost/-1",            // db negative
      "redis://localhost/0?pool_size=0",  // bad option value
      "redis://localhost/0?bogus=1",     // unknown option
      "redis://localhost/0#frag",        // fragment on redis://
      "redis://[::1",                    // unclosed bracket
      "unix://relative.sock",            // not absolute
      "redis-sentinel://h1:26379/0",     // no master name
      "redis://u:%zz@host",              // bad percent encoding
  };
  for (const char* uri : bad) {
    EXPECT_THROW(Options::from_uri(uri), redkit::ConfigError) << uri;
  }
}

TEST(Options, RedissUriTurnsOnTlsWithItsOptions) {
  auto o = Options::from_uri(
      "rediss://u:p@cache.example.com:6380/1?tls_ca_file=%2Fetc%2Fca.pem&tls_server_name=redis.internal"
      "&tls_cert_file=/c.pem&tls_key_file=/k.pem&tls_verify=1");
  EXPECT_TRUE(o.tls.enabled);
  EXPECT_EQ(o.host, "cache.example.com");
  EXPECT_EQ(o.port, 6380);
  EXPECT_EQ(o.db, 1);
  EXPECT_EQ(o.tls.ca_file, "/etc/ca.pem");
  EXPECT_EQ(o.tls.server_name, "redis.internal");
  EXPECT_EQ(o.tls.cert_file, "/c.pem");
  EXPECT_EQ(o.tls.key_file, "/k.pem");
  EXPECT_TRUE(o.tls.verify);
  EXPECT_FALSE(Options::from_uri("redis://h/0").tls.enabled);
  EXPECT_FALSE(Options::from_uri("rediss://h?tls_verify=0").tls.verify);
  auto s = Options::from_uri("rediss-sentinel://h1:26379,h2/0#m");
  EXPECT_TRUE(s.tls.enabled);
  EXPECT_EQ(s.sentinels.size(), 2u);
}

TEST(Options, PasswordMayHoldUriDelimitersUnencoded) {
  auto o = Options::from_uri("redis://user:a/b?c#d&e@127.0.0.1:6601/3");
  EXPECT_EQ(o.username, "user");
  EXPECT_EQ(o.password, "a/b?c#d&e");
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 6601);
  EXPECT_EQ(o.db, 3);
}

TEST(Options, ConfigErrorNeverContainsThePassword) {
  // The first three are the cases an outside torture run found quoting
  // pieces of the password; the rest probe every error the parser has.
  const char* uris[] = {
      "redis://user:PWxyzA/PWabcB@127.0.0.1:66010",
      "redis://user:PWxyzA?PWabcB@127.0.0.1:x",
      "redis://127.0.0.1:6601/0?password=PWxyzA&PWabcB",
      "redis://127.0.0.1:6601/0?password=PWxyzA&PWabcB=1",
      "redis://127.0.0.1:6601/0?PWabcB=1&password=PWxyzA",
      "redis://127.0.0.1:6601/0?db=PWabcB&password=PWxyzA",
      "redis://bob:PWxyzA@localhost:99999",
      "redis://PWxyzA@localhost:0",
      "redis://bob:PWxyzA%zz@localhost",
      "redis://bob:PWxyzA@/0",
      "redis-sentinel://bob:PWxyzA@h1:26379/0",
      "redis://127.0.0.1/0?sentinel_password=PWxyzA&PWabcB",
  };
  for (const char* uri : uris) {
    try {
      Options::from_uri(uri);
      ADD_FAILURE() << "expected ConfigError for " << uri;
    } catch (const redkit::ConfigError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find("PWxyzA"), std::string::npos) << what;
      EXPECT_EQ(what.find("PWabcB"), std::string::npos) << what;
      EXPECT_EQ(what.find("PW"), std::string::npos) << what;
    }
  }
}

// ---------------------------------------------------------------- replies

TEST(Reply, TypedAccessorsCheckTheType) {
  Redis r = shared_client();
  const auto p = unique_prefix();
  r.command({"SET", p + "s", "text"});
  Reply s = r.command({"GET", p + "s"});
  EXPECT_EQ(s.string(), "text");
  EXPECT_THROW(s.integer(), redkit::ProtocolError);
  EXPECT_THROW(s.size(), redkit::ProtocolError);
  Reply nil = r.command({"GET", p + "missing"});
  EXPECT_TRUE(nil.is_nil());
  EXPECT_FALSE(nil.optional_string().has_value());
  EXPECT_THROW(nil.string(), redkit::ProtocolError);
  Reply arr = r.command({"MGET", p + "s", p + "missing"});
  ASSERT_EQ(arr.size(), 2u);
  EXPECT_EQ(arr[0].string(), "text");
  EXPECT_TRUE(arr[1].is_nil());
  EXPECT_THROW(arr[2], redkit::ProtocolError);
}

TEST(Reply, ErrorReplyThrowsReplyErrorWithPrefix) {
  Redis r = shared_client();
  const auto p = unique_prefix();
  r.command({"SET", p + "s", "text"});
  try {
    r.command({"LPUSH", p + "s", "x"});
    FAIL();
  } catch (const redkit::ReplyError& e) {
    EXPECT_EQ(e.prefix(), "WRONGTYPE");
  }
  EXPECT_THROW(r.command({"NOSUCHCOMMAND"}), redkit::ReplyError);
}

// ---------------------------------------------------------------- commands

TEST(Redis, KeysAndValuesAreBinarySafe) {
  Redis r = shared_client();
  const std::string key = unique_prefix() + std::string("k\0ey\r\n*3\r\n", 11);
  const std::string value = std::string("v\0al\r\n$5\r\nue", 12);
  r.command(Command{"SET"}.key(key).arg(value));
  EXPECT_EQ(r.command(Command{"GET"}.key(key)).string_copy(), value);
  EXPECT_EQ(r.command(Command{"STRLEN"}.key(key)).integer(), static_cast<long long>(value.size()));
}

TEST(Redis, OneMebibyteValueRoundTrips) {
  Redis r = shared_client();
  std::string value(1 << 20, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 131 % 251);
  const std::string key = unique_prefix() + "big";
  r.command(Command{"SET"}.key(key).arg(value));
  EXPECT_EQ(r.command(Command{"GET"}.key(key)).string_copy(), value);
}

TEST(Redis, EightThreadsShareOneHandleWithoutCrossedReplies) {
  Redis r = shared_client(4);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10000;
  std::atomic<int> mismatches{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string msg = std::to_string(t) + ":" + std::to_string(i);
        if (r.command({"ECHO", msg}).string_copy() != msg) ++mismatches;
        ++done;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(done.load(), kThreads * kPerThread);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(Redis, PipelineKeepsAnErrorInTheMiddleInPlace) {
  Redis r = shared_client();
  const auto p = unique_prefix();
  std::vector<Command> cmds;
  cmds.push_back(Command{"SET"}.key(p + "a").arg("1"));
  cmds.push_back(Command{"SET"}.key(p + "s").arg("text"));
  cmds.push_back(Command{"INCR"}.key(p + "s"));  // error: not an integer
  cmds.push_back(Command{"INCR"}.key(p + "a"));
  cmds.push_back(Command{"GET"}.key(p + "missing"));
  auto replies = r.pipeline(cmds);
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_TRUE(replies[0].ok());
  EXPECT_TRUE(replies[1].ok());
  EXPECT_TRUE(replies[2].is_error());
  EXPECT_THROW(replies[2].check(), redkit::ReplyError);
  EXPECT_EQ(replies[3].integer(), 2);
  EXPECT_TRUE(replies[4].is_nil());
  // The connection is still in step: the next command gets its own reply.
  EXPECT_EQ(r.command({"ECHO", "after"}).string_copy(), "after");
}

TEST(Redis, EmptyPipelineIsNoRoundTrip) {
  Redis r = shared_client();
  EXPECT_TRUE(r.pipeline({}).empty());
}

TEST(Redis, ConnectsOverUnixSocketAndSelectsDbAndName) {
  ServerOptions so;
  so.unix_socket = true;
  RedisServer server(so);
  Redis r(Options::from_uri("unix://" + server.unix_path() + "?db=3&client_name=redkit-test"));
  const std::string info(r.command({"CLIENT", "INFO"}).string_copy());
  EXPECT_NE(info.find(" db=3 "), std::string::npos) << info;
  EXPECT_EQ(r.command({"CLIENT", "GETNAME"}).string_copy(), "redkit-test");
}

TEST(Redis, PoolWaitTimeoutWhenEveryConnectionIsBusy) {
  Options o = Options::from_uri(shared_server().uri());
  o.pool_size = 1;
  o.pool_wait_timeout = 100ms;
  o.command_timeout = 5000ms;
  Redis r(o);
  const std::string list = unique_prefix() + "list";
  std::atomic<bool> started{false};
  std::thread blocker([&] {
    started = true;
    r.command({"BLPOP", list, "1"});  // holds the only connection for ~1 s
  });
  ASSERT_TRUE(redkit::test::wait_until([&] { return started.load(); }, 2000ms));
  // Wait until the server sees the blocked client, then ask for the connection.
  ASSERT_TRUE(redkit::test::wait_until(
      [&] { return shared_server().cli("INFO", "clients").find("blocked_clients:0") == std::string::npos; },
      2000ms));
  std::chrono::milliseconds took{};
  took = time_of([&] { EXPECT_THROW(r.command({"PING"}), redkit::TimeoutError); });
  EXPECT_LT(took, 600ms);
  blocker.join();
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

// ---------------------------------------------------------------- failures

TEST(Redis, CommandTimeoutRaisesWithinTimeoutPlus100ms) {
  RedisServer server;  // of its own: the test stalls it
  Options o = Options::from_uri(server.uri());
  o.command_timeout = 300ms;
  Redis r(o);
  ASSERT_EQ(r.command({"PING"}).string_copy(), "PONG");
  // CLIENT PAUSE stalls every normal client's commands for 1 s.
  ASSERT_EQ(server.cli("CLIENT", "PAUSE", "1000", "ALL"), "OK");
  std::chrono::milliseconds took{};
  took = time_of([&] { EXPECT_THROW(r.command({"PING"}), redkit::TimeoutError); });
  EXPECT_GE(took, 290ms);
  EXPECT_LE(took, 400ms);
  server.cli("CLIENT", "UNPAUSE");
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");  // the timed-out connection was replaced
}

TEST(Redis, DebugSleepTimesOutToo) {
  RedisServer server;
  Options o = Options::from_uri(server.uri());
  o.command_timeout = 200ms;
  Redis r(o);
  std::chrono::milliseconds took{};
  took = time_of([&] { EXPECT_THROW(r.command({"DEBUG", "SLEEP", "1"}), redkit::TimeoutError); });
  EXPECT_LE(took, 300ms);
}

TEST(Redis, ServerKilledGivesIoErrorAndRestartedServerWorksAgain) {
  RedisServer server;
  Options o = Options::from_uri(server.uri());
  o.connect_timeout = 500ms;
  Redis r(o);
  ASSERT_EQ(r.command({"SET", "k", "v"}).string_copy(), "OK");
  server.kill();
  EXPECT_THROW(r.command({"GET", "k"}), redkit::IoError);
  EXPECT_THROW(r.command({"GET", "k"}), redkit::IoError);  // connect refused
  server.restart();
  EXPECT_TRUE(r.command({"GET", "k"}).is_nil());  // same handle, no user action
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Redis, RestartWhileIdleIsPickedUpWithoutAnError) {
  RedisServer server;
  Options o = Options::from_uri(server.uri());
  Redis r(o);
  // Fill the pool with idle connections, then restart under them.
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) ts.emplace_back([&] { r.command({"PING"}); });
  for (auto& t : ts) t.join();
  server.restart();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Redis, ConnectionRefusedIsIoError) {
  int port = 0;
  {
    RedisServer server;
    port = server.port();
  }
  Options o;
  o.port = port;
  Redis r(o);
  try {
    r.command({"PING"});
    FAIL();
  } catch (const redkit::IoError& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
  }
}

TEST(Redis, WriteToSocketTheServerClosedDoesNotRaiseSigpipe) {
  struct sigaction old {};
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, &old);  // the default action would kill the process

  Redis r = shared_client();
  {
    redkit::Lease lease = r.lease();
    const long long id = lease.command(Command{"CLIENT", "ID"}, 1000ms).integer();
    ASSERT_EQ(shared_server().cli("CLIENT", "KILL", "ID", std::to_string(id)), "1");
    // The first write may still be accepted by the kernel; the peer's RST
    // turns a later one into EPIPE.
    std::string big(256 * 1024, 'x');
    int failures = 0;
    for (int i = 0; i < 3; ++i) {
      try {
        lease.command(Command{"SET", "k", big}, 1000ms);
      } catch (const redkit::IoError&) {
        ++failures;
      }
    }
    EXPECT_GE(failures, 1);
  }
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
  sigaction(SIGPIPE, &old, nullptr);
}

// ---------------------------------------------------------------- AUTH

TEST(Auth, PasswordAndAclUserWork) {
  ServerOptions so;
  so.extra_args = {"--requirepass", "s3cret-pw"};
  RedisServer server(so);
  server.cli("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+@all");

  Redis with_password(Options::from_uri("redis://:s3cret-pw@127.0.0.1:" + std::to_string(server.port())));
  EXPECT_EQ(with_password.command({"PING"}).string_copy(), "PONG");

  Redis with_user(Options::from_uri("redis://app:app-pw@127.0.0.1:" + std::to_string(server.port())));
  EXPECT_EQ(with_user.command({"ACL", "WHOAMI"}).string_copy(), "app");

  Redis none(Options::from_uri(server.uri()));
  try {
    none.command({"GET", "k"});
    FAIL();
  } catch (const redkit::ReplyError& e) {
    EXPECT_EQ(e.prefix(), "NOAUTH");
  }
}

TEST(Auth, WrongPasswordErrorDoesNotContainThePassword) {
  ServerOptions so;
  so.extra_args = {"--requirepass", "right-password"};
  RedisServer server(so);
  for (const std::string user : {"", "default"}) {
    Options o = Options::from_uri(server.uri());
    o.username = user;
    o.password = "Wr0ngPassw0rd";
    Redis r(o);
    try {
      r.command({"PING"});
      FAIL();
    } catch (const redkit::ReplyError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find("Wr0ngPassw0rd"), std::string::npos) << what;
      EXPECT_EQ(what.find("right-password"), std::string::npos) << what;
      EXPECT_NE(what.find("AUTH"), std::string::npos) << what;
      EXPECT_EQ(e.prefix(), "WRONGPASS");
    }
  }
}

// ---------------------------------------------------------------- scripts

TEST(Script, ShaMatchesTheServers) {
  Redis r = shared_client();
  redkit::Script s("return redis.call('PING')");
  EXPECT_EQ(r.command({"SCRIPT", "LOAD", s.source()}).string_copy(), s.sha());
  EXPECT_EQ(redkit::Script("").sha(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

TEST(Script, NoscriptAfterScriptFlushIsRecoveredTransparently) {
  RedisServer server;  // SCRIPT FLUSH is server-wide
  Redis r(Options::from_uri(server.uri()));
  redkit::Script s("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}");
  Reply first = r.eval(s, {"ctr"}, {"hello"});
  EXPECT_EQ(first[2].integer(), 1);
  ASSERT_EQ(server.cli("SCRIPT", "FLUSH"), "OK");
  Reply second = r.eval(s, {"ctr"}, {"hello"});
  EXPECT_EQ(second[0].string(), "ctr");
  EXPECT_EQ(second[1].string(), "hello");
  EXPECT_EQ(second[2].integer(), 2);  // ran exactly once more
  // And EVALSHA works again afterwards (the fallback's EVAL cached it).
  EXPECT_EQ(server.cli("SCRIPT", "EXISTS", s.sha()), "1");
}

TEST(Script, ScriptErrorIsReplyError) {
  Redis r = shared_client();
  redkit::Script s("return redis.error_reply('MYERR bad thing')");
  try {
    r.eval(s, {}, {});
    FAIL();
  } catch (const redkit::ReplyError& e) {
    EXPECT_EQ(e.prefix(), "MYERR");
  }
}

TEST(Script, TakesKeysAndArgsFromContainers) {
  Redis r = shared_client();
  redkit::Script s("return #KEYS + #ARGV");
  std::vector<std::string> keys{"a", "b"};
  std::vector<std::string> args{"1", "2", "3"};
  EXPECT_EQ(r.eval(s, keys, args).integer(), 5);
}
