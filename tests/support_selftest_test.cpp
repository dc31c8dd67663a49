// Pins the behaviour of tests/support: real servers, real processes.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "support/server.hpp"

using namespace std::chrono_literals;
using redkit::test::ChildProcess;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;

namespace {

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

}  // namespace

TEST(SupportServer, CliSetThenGetReturnsTheValueAndRendersReplies) {
  RedisServer server;
  EXPECT_EQ(server.host(), "127.0.0.1");
  EXPECT_EQ(server.uri(), "redis://127.0.0.1:" + std::to_string(server.port()) + "/0");
  EXPECT_EQ(server.cli("SET", "k", "v"), "OK");
  EXPECT_EQ(server.cli("GET", "k"), "v");
  EXPECT_EQ(server.cli({"GET", "missing"}), "(nil)");
  EXPECT_EQ(server.cli("INCRBY", "n", "41"), "41");
  EXPECT_EQ(server.cli("RPUSH", "l", "a", "b"), "2");
  EXPECT_EQ(server.cli("LRANGE", "l", "0", "-1"), "a\nb");
  EXPECT_EQ(server.cli("INCR", "k").rfind("ERR ", 0), 0u);
  EXPECT_EQ(server.cli("LLEN", "k").rfind("WRONGTYPE", 0), 0u);
  EXPECT_EQ(server.cli("DEBUG", "SLEEP", "0"), "OK");
  EXPECT_EQ(server.cli("CONFIG", "GET", "bind"), "bind\n127.0.0.1");
  EXPECT_EQ(server.cli("CONFIG", "GET", "save"), "save\n");
  EXPECT_NE(server.log_tail(5).find("Ready to accept connections"), std::string::npos);
}

TEST(SupportServer, CliIsBinarySafe) {
  RedisServer server;
  const std::string value("a\0b\r\nc", 6);
  EXPECT_EQ(server.cli({"SET", "bin", value}), "OK");
  EXPECT_EQ(server.cli({"GET", "bin"}), value);
}

TEST(SupportServer, UnixSocketServerIsReachableByPath) {
  ServerOptions options;
  options.unix_socket = true;
  RedisServer server(options);
  ASSERT_EQ(server.unix_path(), server.dir() + "/redis.sock");
  timeval tv{1, 0};
  redisContext* c = redisConnectUnixWithTimeout(server.unix_path().c_str(), tv);
  ASSERT_TRUE(c != nullptr && c->err == 0) << (c ? c->errstr : "alloc");
  auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(std::string(reply->str, reply->len), "PONG");
  freeReplyObject(reply);
  redisFree(c);
}

TEST(SupportServer, KillRefusesConnectionsAndRestartReusesThePort) {
  RedisServer server;
  const int port = server.port();
  const pid_t first = server.pid();
  server.cli("SET", "k", "v");

  server.kill();
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.pid(), -1);
  EXPECT_FALSE(process_exists(first));
  try {
    server.cli("PING");
    FAIL() << "cli reached a killed server";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();
  }

  server.restart();
  EXPECT_TRUE(server.running());
  EXPECT_EQ(server.port(), port);
  EXPECT_NE(server.pid(), first);
  EXPECT_EQ(server.cli("PING"), "PONG");
  EXPECT_EQ(server.cli("GET", "k"), "(nil)");  // no persistence

  const pid_t second = server.pid();
  server.restart();  // while running: stops first
  EXPECT_FALSE(process_exists(second));
  EXPECT_EQ(server.cli("PING"), "PONG");
}

TEST(SupportServer, StopEndsTheProcess) {
  RedisServer server;
  const pid_t pid = server.pid();
  server.stop();
  EXPECT_FALSE(server.running());
  EXPECT_FALSE(process_exists(pid));
  EXPECT_THROW(server.cli("PING"), std::runtime_error);
}

TEST(SupportServer, RequirepassServerAcceptsCliWithKnownPassword) {
  ServerOptions options;
  options.extra_args = {"--requirepass", "secret"};
  RedisServer server(options);
  EXPECT_EQ(server.cli("SET", "k", "v"), "OK");
  EXPECT_EQ(server.cli("GET", "k"), "v");

  server.set_password("wrong");
  try {
    server.cli("PING");
    FAIL() << "AUTH with a wrong password succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).find("wrong"), std::string::npos) << "password leaked";
  }
  server.set_password("");
  EXPECT_EQ(server.cli("PING").rfind("NOAUTH", 0), 0u);
}

TEST(SupportServer, TwoServersGetDifferentPorts) {
  RedisServer a;
  RedisServer b;
  EXPECT_NE(a.port(), b.port());
  EXPECT_NE(a.dir(), b.dir());
  a.cli("SET", "k", "a");
  EXPECT_EQ(b.cli("GET", "k"), "(nil)");
}

TEST(SupportServer, DestructorStopsServerAndRemovesTempDir) {
  std::string dir;
  pid_t pid = -1;
  {
    RedisServer server;
    dir = server.dir();
    pid = server.pid();
    EXPECT_TRUE(std::filesystem::is_directory(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(process_exists(pid));
}

TEST(SupportServer, ForkedCopyDoesNotStopTheServer) {
  auto server = std::make_unique<RedisServer>();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    server.reset();  // as a death test or forked worker would at exit
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(server->cli("PING"), "PONG");
  EXPECT_TRUE(std::filesystem::is_directory(server->dir()));
}

TEST(SupportServer, MovedServerKeepsRunning) {
  RedisServer a;
  const int port = a.port();
  RedisServer b(std::move(a));
  EXPECT_EQ(b.port(), port);
  EXPECT_EQ(b.cli("PING"), "PONG");
}

TEST(SupportServer, BadArgumentThrowsWithLogTail) {
  ServerOptions options;
  options.extra_args = {"--no-such-directive", "x"};
  try {
    RedisServer server(options);
    FAIL() << "server started with a bad directive";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-directive"), std::string::npos) << e.what();
  }
}

TEST(SupportServer, CpuListPinsTheServer) {
  ServerOptions options;
  options.cpu_list = "0";
  RedisServer server(options);
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(server.pid(), sizeof set, &set), 0);
  EXPECT_EQ(CPU_COUNT(&set), 1);
  EXPECT_TRUE(CPU_ISSET(0, &set));
}

TEST(SupportServer, SharedServerIsStartedOnce) {
  RedisServer& a = redkit::test::shared_server();
  RedisServer& b = redkit::test::shared_server();
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.cli("PING"), "PONG");
}

TEST(SupportServer, UniquePrefixDiffersPerCall) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.insert(redkit::test::unique_prefix()).second);
  EXPECT_EQ(redkit::test::unique_prefix().rfind("t:" + std::to_string(::getpid()) + ":", 0), 0u);
}

TEST(SupportChildProcess, CapturesStdoutAndExitCode) {
  ChildProcess echo("/bin/echo", {"hi"});
  EXPECT_EQ(echo.wait(5s), 0);
  EXPECT_EQ(echo.output(), "hi\n");
  EXPECT_EQ(echo.wait(5s), 0);  // cached

  ChildProcess exit3("/bin/sh", {"-c", "exit 3"});
  EXPECT_EQ(exit3.wait(5s), 3);

  ChildProcess on_path("echo", {"-n", "x"});
  EXPECT_EQ(on_path.wait(5s), 0);
  EXPECT_EQ(on_path.output(), "x");
}

TEST(SupportChildProcess, LargeOutputDoesNotDeadlock) {
  ChildProcess big("/bin/sh", {"-c", "head -c 300000 /dev/zero"});
  EXPECT_EQ(big.wait(5s), 0);
  EXPECT_EQ(big.output().size(), 300000u);
}

TEST(SupportChildProcess, WaitKillsAndThrowsOnTimeout) {
  ChildProcess sleeper("/bin/sleep", {"10"});
  const pid_t pid = sleeper.pid();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(sleeper.wait(100ms), std::runtime_error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_FALSE(process_exists(pid));
}

TEST(SupportChildProcess, KillIsReportedAsSignalExitCode) {
  ChildProcess sleeper("/bin/sleep", {"10"});
  sleeper.kill(SIGTERM);
  EXPECT_EQ(sleeper.wait(5s), 128 + SIGTERM);
}

TEST(SupportChildProcess, MissingProgramThrows) {
  EXPECT_THROW(ChildProcess("no-such-program-redkit"), std::runtime_error);
}

TEST(SupportWaitUntil, ReturnsFalseAfterDeadlineAndTruePromptly) {
  auto start = std::chrono::steady_clock::now();
  int calls = 0;
  EXPECT_FALSE(redkit::test::wait_until(
      [&] {
        ++calls;
        return false;
      },
      50ms));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 50ms);
  EXPECT_LT(elapsed, 1s);
  EXPECT_GE(calls, 2);

  start = std::chrono::steady_clock::now();
  EXPECT_TRUE(redkit::test::wait_until([] { return true; }, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);

  int n = 0;
  EXPECT_TRUE(redkit::test::wait_until([&] { return ++n == 3; }, 10s, 1ms));
  EXPECT_EQ(n, 3);
}
