// Pins the behaviour of tests/support: real servers, real processes.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "support/fault_proxy.hpp"
#include "support/resp_framer.hpp"
#include "support/scripted_server.hpp"
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

// ---- RespFramer, FaultProxy, ScriptedServer ---------------------------------

namespace {

using redkit::test::FaultProxy;
using redkit::test::Flow;
using redkit::test::RespFramer;
using redkit::test::ScriptedServer;
using redkit::test::ServerScript;

// A plain blocking TCP client, so the fixtures are tested without redkit.
class RawClient {
 public:
  enum class End { Open, Eof, Reset };

  // A blocking connect: it returns once the handshake is done, even when
  // the server resets the connection right after accepting it.
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error(std::string("RawClient: cannot connect: ") + std::strerror(errno));
    }
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }

  // Reads until `want` bytes arrived, the peer closed, or `limit` passed.
  std::string read(std::size_t want, std::chrono::milliseconds limit) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (out.size() < want && end_ == End::Open) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, std::min(sizeof buf, want - out.size()), 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
      } else {
        end_ = (n < 0 && errno == ECONNRESET) ? End::Reset : End::Eof;
      }
    }
    return out;
  }
  End end() const { return end_; }

 private:
  int fd_ = -1;
  End end_ = End::Open;
};

std::string resp_command(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

}  // namespace

TEST(SupportRespFramer, FindsTheEndOfEachValueAcrossChunks) {
  RespFramer f;
  const std::string two = resp_command({"SET", "k", "v\r\nv"}) + resp_command({"GET", "k"});
  const std::size_t first = resp_command({"SET", "k", "v\r\nv"}).size();
  EXPECT_EQ(f.feed(std::string_view(two).substr(0, 7)), 7u);  // mid-frame
  EXPECT_FALSE(f.frame_ended());
  EXPECT_FALSE(f.at_frame_start());
  EXPECT_EQ(f.feed(std::string_view(two).substr(7)), first - 7);
  EXPECT_TRUE(f.frame_ended());
  EXPECT_TRUE(f.at_frame_start());
  EXPECT_EQ(f.feed(std::string_view(two).substr(first)), two.size() - first);
  EXPECT_TRUE(f.frame_ended());

  for (const std::string reply : {"+OK\r\n", "-ERR x\r\n", ":-12\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n", "$0\r\n\r\n",
                                  "*2\r\n*1\r\n:1\r\n$2\r\nab\r\n", "PING\r\n", "PING\n"}) {
    RespFramer g;
    EXPECT_EQ(g.feed(reply + "+next\r\n"), reply.size()) << reply;
    EXPECT_TRUE(g.frame_ended()) << reply;
  }
}

TEST(SupportRespFramer, BytesThatAreNotRespFailTheFramer) {
  RespFramer f;
  EXPECT_EQ(f.feed("*1\r\n!bad\r\n:1\r\n"), 14u);
  EXPECT_TRUE(f.failed());
  EXPECT_FALSE(f.frame_ended());
  RespFramer g;
  g.feed("$-7\r\n");
  EXPECT_TRUE(g.failed());
}

TEST(SupportFaultProxy, ForwardsBothWaysAndCountsCommandsAndReplies) {
  RedisServer server;
  FaultProxy proxy(server.port());
  EXPECT_NE(proxy.port(), server.port());
  RawClient c(proxy.port());
  c.send(resp_command({"SET", "k", "v"}) + resp_command({"GET", "k"}));
  EXPECT_EQ(c.read(12, 5s), "+OK\r\n$1\r\nv\r\n");
  EXPECT_EQ(proxy.accepted(), 1u);
  EXPECT_EQ(proxy.open_connections(), 1u);
  EXPECT_EQ(proxy.commands_forwarded(), 2u);
  EXPECT_EQ(proxy.replies_forwarded(), 2u);
  EXPECT_EQ(proxy.bytes_forwarded(Flow::ToClient), 12u);
  EXPECT_EQ(server.cli("GET", "k"), "v");
}

TEST(SupportFaultProxy, DelayHoldsEveryChunkForTheDelay) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.delay(300ms);
  const auto start = std::chrono::steady_clock::now();
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
  // Both directions are delayed: at least 2 x 300 ms.
  EXPECT_GE(std::chrono::steady_clock::now() - start, 600ms);
  proxy.forward();
  const auto again = std::chrono::steady_clock::now();
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
  EXPECT_LT(std::chrono::steady_clock::now() - again, 300ms);
}

TEST(SupportFaultProxy, DropNextReplyLosesExactlyOneReply) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.drop_next_reply();
  c.send(resp_command({"ECHO", "first"}));
  EXPECT_TRUE(redkit::test::wait_until([&] { return proxy.replies_dropped() == 1; }, 5s));
  c.send(resp_command({"ECHO", "second"}));
  EXPECT_EQ(c.read(12, 5s), "$6\r\nsecond\r\n");
  EXPECT_EQ(c.end(), RawClient::End::Open);
}

TEST(SupportFaultProxy, ResetAfterBytesToClientCutsTheReply) {
  RedisServer server;
  server.cli("SET", "big", std::string(1000, 'x'));
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.reset_after_bytes(Flow::ToClient, 10);
  c.send(resp_command({"GET", "big"}));
  EXPECT_EQ(c.read(2000, 5s), "$1000\r\nxxx");
  EXPECT_EQ(c.end(), RawClient::End::Reset);
  EXPECT_EQ(proxy.resets(), 1u);
  EXPECT_TRUE(redkit::test::wait_until([&] { return proxy.open_connections() == 0; }, 5s));
}

TEST(SupportFaultProxy, ResetAfterBytesToServerNeverDeliversTheWholeCommand) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.reset_after_bytes(Flow::ToServer, 5);
  c.send(resp_command({"SET", "k", "v"}));
  EXPECT_EQ(c.read(100, 5s), "");
  EXPECT_EQ(c.end(), RawClient::End::Reset);
  EXPECT_EQ(proxy.bytes_forwarded(Flow::ToServer), 5u);
  EXPECT_EQ(server.cli("EXISTS", "k"), "0");
}

TEST(SupportFaultProxy, ResetAfterNextCommandRunsItButTheClientNeverSeesTheReply) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
  proxy.reset_after_next_command();
  c.send(resp_command({"INCR", "n"}) + resp_command({"INCR", "n"}));  // the second is never forwarded
  EXPECT_EQ(c.read(100, 5s), "");
  EXPECT_EQ(c.end(), RawClient::End::Reset);
  EXPECT_TRUE(redkit::test::wait_until([&] { return proxy.open_connections() == 0; }, 5s));
  EXPECT_EQ(server.cli("GET", "n"), "1");
  EXPECT_EQ(proxy.commands_forwarded(), 2u);  // PING, first INCR
}

TEST(SupportFaultProxy, ResetAfterCommandContainingFiresOnTheFirstCommandWithEveryPart) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.reset_after_command_containing({"INCR", "b"});
  // "a" has INCR but not b: it flows; the first INCR of b fires; nothing after it is forwarded.
  c.send(resp_command({"INCR", "a"}) + resp_command({"GET", "b"}));
  EXPECT_EQ(c.read(9, 5s), ":1\r\n$-1\r\n");
  EXPECT_EQ(proxy.matched(), 0u);
  c.send(resp_command({"INCR", "b"}) + resp_command({"INCR", "b"}));
  EXPECT_EQ(c.read(100, 5s), "");
  EXPECT_EQ(c.end(), RawClient::End::Reset);
  EXPECT_EQ(proxy.matched(), 1u);
  EXPECT_TRUE(redkit::test::wait_until([&] { return proxy.open_connections() == 0; }, 5s));
  EXPECT_EQ(server.cli("GET", "b"), "1");  // it ran once, the second never reached the server
  EXPECT_EQ(server.cli("GET", "a"), "1");
  // Fired once: the next connection's INCR b flows.
  RawClient d(proxy.port());
  d.send(resp_command({"INCR", "b"}));
  EXPECT_EQ(d.read(4, 5s), ":2\r\n");
}

TEST(SupportFaultProxy, MuteAfterCommandContainingRunsItAndLosesEveryLaterReply) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.mute_after_command_containing({"SET", "k"});
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
  c.send(resp_command({"SET", "k", "v"}));
  EXPECT_EQ(c.read(5, 300ms), "");
  EXPECT_EQ(c.end(), RawClient::End::Open);
  EXPECT_EQ(proxy.matched(), 1u);
  EXPECT_EQ(server.cli("GET", "k"), "v");  // the command ran
  c.send(resp_command({"INCR", "n"}));      // later commands run too; their replies are lost
  EXPECT_TRUE(redkit::test::wait_until([&] { return server.cli("GET", "n") == "1"; }, 5s));
  EXPECT_EQ(c.read(4, 300ms), "");
  EXPECT_EQ(c.end(), RawClient::End::Open);
  // Another connection is not muted.
  RawClient d(proxy.port());
  d.send(resp_command({"GET", "k"}));
  EXPECT_EQ(d.read(7, 5s), "$1\r\nv\r\n");
}

TEST(SupportFaultProxy, StallKeepsTheSocketOpenAndForwardResumes) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  proxy.stall();
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 300ms), "");
  EXPECT_EQ(c.end(), RawClient::End::Open);
  EXPECT_EQ(proxy.commands_forwarded(), 0u);
  proxy.forward();
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
}

TEST(SupportFaultProxy, BlackHoleAcceptsAndNeverAnswers) {
  RedisServer server;
  FaultProxy proxy(server.port());
  proxy.black_hole();
  RawClient c(proxy.port());
  c.send(resp_command({"SET", "k", "v"}));
  EXPECT_EQ(c.read(5, 300ms), "");
  EXPECT_EQ(c.end(), RawClient::End::Open);
  EXPECT_EQ(proxy.accepted(), 1u);
  EXPECT_EQ(server.cli("EXISTS", "k"), "0");
  proxy.forward();  // later connections are forwarded again
  RawClient d(proxy.port());
  d.send(resp_command({"PING"}));
  EXPECT_EQ(d.read(7, 5s), "+PONG\r\n");
}

TEST(SupportFaultProxy, ResetAllAndAnUpstreamThatIsDownResetTheClient) {
  RedisServer server;
  FaultProxy proxy(server.port());
  RawClient c(proxy.port());
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
  proxy.reset_all();
  EXPECT_EQ(c.read(1, 5s), "");
  EXPECT_EQ(c.end(), RawClient::End::Reset);
  EXPECT_EQ(proxy.resets(), 1u);

  server.kill();
  RawClient d(proxy.port());
  EXPECT_EQ(d.read(1, 5s), "");
  EXPECT_EQ(d.end(), RawClient::End::Reset);
  EXPECT_EQ(proxy.resets(), 2u);
}

TEST(SupportFaultProxy, StopClosesEveryConnectionAndIsIdempotent) {
  RedisServer server;
  auto proxy = std::make_unique<FaultProxy>(server.port());
  RawClient c(proxy->port());
  c.send(resp_command({"PING"}));
  EXPECT_EQ(c.read(7, 5s), "+PONG\r\n");
  proxy->stop();
  EXPECT_EQ(c.read(1, 5s), "");
  EXPECT_NE(c.end(), RawClient::End::Open);
  proxy->stop();
  proxy.reset();
}

TEST(SupportScriptedServer, SendsOnlyAfterAWholeCommandArrived) {
  ScriptedServer server(ServerScript().read_command().send("+HI\r\n"));
  RawClient c(server.port());
  const std::string ping = resp_command({"PING"});
  c.send(ping.substr(0, 6));
  EXPECT_EQ(c.read(5, 200ms), "");
  c.send(ping.substr(6));
  EXPECT_EQ(c.read(5, 5s), "+HI\r\n");
  EXPECT_TRUE(redkit::test::wait_until([&] { return server.finished() == 1; }, 5s));
  EXPECT_EQ(c.read(1, 200ms), "");  // silent afterwards, still open
  EXPECT_EQ(c.end(), RawClient::End::Open);
  EXPECT_EQ(server.bytes_received(), ping.size());
}

TEST(SupportScriptedServer, ReadBytesWaitsForTheCount) {
  ScriptedServer server(ServerScript().read_bytes(4).send("go"));
  RawClient c(server.port());
  c.send("abc");
  EXPECT_EQ(c.read(2, 200ms), "");
  c.send("d");
  EXPECT_EQ(c.read(2, 5s), "go");
}

TEST(SupportScriptedServer, DribbleSpacesTheBytesAndPauseWaits) {
  ScriptedServer server(ServerScript().pause(100ms).dribble("abc", 150ms));
  const auto start = std::chrono::steady_clock::now();
  RawClient c(server.port());
  EXPECT_EQ(c.read(1, 5s), "a");
  const auto first = std::chrono::steady_clock::now();
  EXPECT_GE(first - start, 100ms);
  EXPECT_EQ(c.read(2, 5s), "bc");
  EXPECT_GE(std::chrono::steady_clock::now() - first, 300ms);
}

TEST(SupportScriptedServer, CloseGivesEofResetGivesAResetAndScriptsGoPerConnection) {
  ScriptedServer server(
      {ServerScript().send("x").close(), ServerScript().read_bytes(1).reset(), ServerScript().send("+OK\r\n")});
  RawClient a(server.port());
  EXPECT_EQ(a.read(10, 5s), "x");
  EXPECT_EQ(a.end(), RawClient::End::Eof);
  RawClient b(server.port());
  b.send("?");
  EXPECT_EQ(b.read(10, 5s), "");
  EXPECT_EQ(b.end(), RawClient::End::Reset);
  for (int i = 0; i < 2; ++i) {  // the last script plays for every later connection
    RawClient c(server.port());
    EXPECT_EQ(c.read(5, 5s), "+OK\r\n");
  }
  EXPECT_EQ(server.accepted(), 4u);
}

TEST(SupportScriptedServer, SeesTheClientClose) {
  ScriptedServer server(ServerScript().read_command());
  {
    RawClient c(server.port());
    c.send(resp_command({"PING"}));
    EXPECT_TRUE(redkit::test::wait_until([&] { return server.finished() == 1; }, 5s));
  }
  EXPECT_TRUE(redkit::test::wait_until([&] { return server.client_closed() == 1; }, 5s));
}
