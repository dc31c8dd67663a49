// TLS (<redkit/tls.hpp>) against real redis-server processes with TLS ports
// and certificates made at test time (support/tls.hpp). Every bad input is
// a typed error within its timeout, with a message that says what failed;
// mutual TLS, verify=false, rediss:// URIs, a 20 MiB value, signals during a
// read, fork; sentinel mode and Cluster over TLS. The typed lock, cache and
// counter suites run over TLS in redkit_{lock,cache,counter}_tls_test.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <redkit/redkit.hpp>
#include <redkit/tls.hpp>

#include "support/clients.hpp"
#include "support/fork.hpp"
#include "support/nodes.hpp"
#include "support/tls.hpp"

using namespace std::chrono_literals;
using redkit::Cluster;
using redkit::Command;
using redkit::ConfigError;
using redkit::EventType;
using redkit::IoError;
using redkit::Options;
using redkit::Redis;
using redkit::TimeoutError;
using redkit::test::RedisServer;
using redkit::test::ServerOptions;
using redkit::test::ServerTls;
using redkit::test::shared_certificates;
using redkit::test::shared_tls_server;
using redkit::test::fork_child;
using redkit::test::unique_prefix;
using redkit::test::wait_child;
using redkit::test::wait_until;
using redkit::test::with_alarms_every_100ms;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kPassword = "Pa55-never-in-a-message";

std::chrono::milliseconds since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
}

redkit::test::TestCertificates& certs() { return shared_certificates(); }

// A server of its own with these TLS settings (and its plain port).
RedisServer tls_server(ServerTls tls) {
  ServerOptions o;
  o.tls = std::move(tls);
  return RedisServer(o);
}

// Options for the server's TLS port, trusting the test CA, 1 s timeouts.
Options options_for(const RedisServer& s, const std::string& host = "127.0.0.1") {
  Options o = Options::from_uri(s.tls_uri());
  o.host = host;
  o.connect_timeout = 1000ms;
  o.command_timeout = 1000ms;
  return o;
}

// What a call threw (of type E) and how long it took; thrown == false if
// it returned. Any other exception escapes and fails the test.
struct Failure {
  bool thrown = false;
  std::string what;
  std::chrono::milliseconds took{0};
};

template <class E, class F>
Failure failure_of(F&& f) {
  Failure out;
  const auto t0 = Clock::now();
  try {
    f();
  } catch (const E& e) {
    out.thrown = true;
    out.what = e.what();
  }
  out.took = since(t0);
  return out;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The events a client reported, for checking.
struct EventLog {
  std::mutex m;
  std::vector<std::pair<EventType, std::string>> events;
  redkit::EventHandler handler() {
    return [this](const redkit::Event& e) {
      std::lock_guard<std::mutex> lk(m);
      events.emplace_back(e.type, std::string(e.detail));
    };
  }
  std::string detail_of(EventType t) {
    std::lock_guard<std::mutex> lk(m);
    for (const auto& [type, detail] : events) {
      if (type == t) return detail;
    }
    return "(none)";
  }
};

// The laddr port of the client named `name` in a CLIENT LIST, or -1.
int local_port_of_client(const std::string& client_list, const std::string& name) {
  std::istringstream lines(client_list);
  for (std::string line; std::getline(lines, line);) {
    if (!has(line, " name=" + name + " ")) continue;
    const auto at = line.find(" laddr=");
    if (at == std::string::npos) return -1;
    const auto colon = line.find_last_of(':', line.find(' ', at + 1));
    return std::stoi(line.substr(colon + 1));
  }
  return -1;
}


}  // namespace

// ---------------------------------------------------------------- bad input: the server's certificate

TEST(TlsErrors, UnknownCaFailsTheHandshakeNamingTheVerifyReasonWithTheEvent) {
  RedisServer& s = shared_tls_server();
  EventLog log;
  Options o = options_for(s);
  o.tls.ca_file = certs().other_ca_file();
  o.password = kPassword;
  o.on_event = log.handler();
  Redis r(o);
  const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
  ASSERT_TRUE(f.thrown);
  EXPECT_LT(f.took, 1000ms);
  EXPECT_TRUE(has(f.what, "TLS handshake with 127.0.0.1:" + std::to_string(s.tls_port()))) << f.what;
  // OpenSSL's words depend on whether the server sends its CA along
  // (redis-server does: it builds the chain from tls-ca-cert-file).
  EXPECT_TRUE(has(f.what, "certificate verify failed: self-signed certificate in certificate chain") ||
              has(f.what, "certificate verify failed: unable to get local issuer certificate"))
      << f.what;
  EXPECT_TRUE(has(f.what, "not signed by a CA in TlsOptions::ca_file")) << f.what;
  EXPECT_FALSE(has(f.what, kPassword));
  EXPECT_TRUE(has(log.detail_of(EventType::TlsHandshakeFailed), "certificate verify failed"))
      << log.detail_of(EventType::TlsHandshakeFailed);
  EXPECT_TRUE(has(log.detail_of(EventType::ConnectFailed), "certificate verify failed"));
  EXPECT_GE(r.stats().connect_failures, 1u);
}

TEST(TlsErrors, WithoutACaFileTheSystemStoreIsUsedAndATestCaIsUnknownToIt) {
  RedisServer& s = shared_tls_server();
  Options o = options_for(s);
  o.tls.ca_file.clear();
  Redis r(o);
  const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
  ASSERT_TRUE(f.thrown);
  EXPECT_TRUE(has(f.what, "certificate verify failed")) << f.what;
  EXPECT_TRUE(has(f.what, "system store")) << f.what;
}

TEST(TlsErrors, ExpiredServerCertificateFailsTheHandshake) {
  RedisServer s = tls_server(certs().server("optional", certs().expired_cert()));
  EventLog log;
  Options o = options_for(s);
  o.on_event = log.handler();
  Redis r(o);
  const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
  ASSERT_TRUE(f.thrown);
  EXPECT_LT(f.took, 1000ms);
  EXPECT_TRUE(has(f.what, "certificate verify failed: certificate has expired")) << f.what;
  EXPECT_TRUE(has(f.what, std::to_string(s.tls_port()))) << f.what;
  EXPECT_TRUE(has(log.detail_of(EventType::TlsHandshakeFailed), "certificate has expired"));
}

TEST(TlsErrors, CertificateForAnotherHostFailsByIpAndByNameAndServerNameSelectsTheName) {
  RedisServer s = tls_server(certs().server("optional", certs().wrong_host_cert()));
  {
    Redis r(options_for(s, "127.0.0.1"));
    const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
    ASSERT_TRUE(f.thrown);
    EXPECT_TRUE(has(f.what, "certificate verify failed: IP address mismatch")) << f.what;
    EXPECT_TRUE(has(f.what, "'127.0.0.1'")) << f.what;
    EXPECT_TRUE(has(f.what, "server_name")) << f.what;
  }
  {
    Redis r(options_for(s, "localhost"));
    const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
    ASSERT_TRUE(f.thrown);
    EXPECT_TRUE(has(f.what, "certificate verify failed: hostname mismatch")) << f.what;
    EXPECT_TRUE(has(f.what, "'localhost'")) << f.what;
  }
  {
    // The name the certificate carries, while connecting to the address.
    Options o = options_for(s, "127.0.0.1");
    o.tls.server_name = "wrong.example";
    EXPECT_EQ(Redis(o).command({"PING"}).string_copy(), "PONG");
  }
  {
    // And the reverse: a server_name the good certificate does not carry.
    Options o = options_for(shared_tls_server(), "127.0.0.1");
    o.tls.server_name = "wrong.example";
    const Failure f = failure_of<IoError>([&] { Redis(o).command({"PING"}); });
    ASSERT_TRUE(f.thrown);
    EXPECT_TRUE(has(f.what, "hostname mismatch")) << f.what;
  }
}

// ---------------------------------------------------------------- bad input: the client's side

TEST(TlsErrors, ClientCertificateRequiredButNotGivenIsAnIoErrorThatSaysSo) {
  RedisServer s = tls_server(certs().server("yes"));
  for (const bool with_setup : {false, true}) {
    SCOPED_TRACE(with_setup ? "with AUTH in the setup round trip" : "first command");
    Options o = options_for(s);
    // A password makes the refusal arrive during connect (the setup round
    // trip); it is wrong anyway, and must never be quoted.
    if (with_setup) o.password = kPassword;
    Redis r(o);
    const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
    ASSERT_TRUE(f.thrown);
    EXPECT_LT(f.took, 1000ms);
    EXPECT_TRUE(has(f.what, "certificate required")) << f.what;
    EXPECT_TRUE(has(f.what, "cert_file")) << f.what;
    EXPECT_TRUE(has(f.what, std::to_string(s.tls_port()))) << f.what;
    EXPECT_FALSE(has(f.what, kPassword));
  }
}

TEST(TlsErrors, PlainClientOnATlsPortFailsWithinTheCommandTimeoutAndSaysTls) {
  RedisServer& s = shared_tls_server();
  Options o = Options::from_uri("redis://127.0.0.1:" + std::to_string(s.tls_port()) + "/0");
  o.command_timeout = 1000ms;
  Redis r(o);
  const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
  ASSERT_TRUE(f.thrown);
  EXPECT_LT(f.took, 1100ms);
  EXPECT_TRUE(has(f.what, "if this port speaks TLS, use rediss://")) << f.what;
}

TEST(TlsErrors, TlsClientOnAPlainPortEndsWithinConnectTimeout) {
  RedisServer& s = shared_tls_server();
  Options o = options_for(s);
  o.port = s.port();  // the plain port
  o.connect_timeout = 300ms;
  EventLog log;
  o.on_event = log.handler();
  Redis r(o);
  // A plain server waits for the end of a line the TLS hello may never
  // contain (then the handshake times out), or answers an error in plain
  // text (then it is not TLS): either way a typed error, in time.
  const Failure f = failure_of<IoError>([&] { r.command({"PING"}); });
  ASSERT_TRUE(f.thrown);
  EXPECT_LT(f.took, 400ms);
  EXPECT_TRUE(has(f.what, "plain-text port")) << f.what;
  EXPECT_TRUE(has(log.detail_of(EventType::TlsHandshakeFailed), "plain-text port"));
}

TEST(TlsErrors, UnreadableOrUnusableFilesAreConfigErrorsWhenTheClientIsBuilt) {
  namespace fs = std::filesystem;
  const std::string dir = redkit::test::make_temp_dir("badtls");
  const std::string garbage = dir + "/garbage.pem";
  std::ofstream(garbage) << "this is not PEM\n";
  const std::string missing = dir + "/missing.pem";
  const auto& c = certs();

  struct Case {
    const char* what;
    std::function<void(redkit::TlsOptions&)> set;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"missing CA file", [&](auto& t) { t.ca_file = missing; }, {"ca_file", missing, "No such file"}},
      {"CA file that is not PEM", [&](auto& t) { t.ca_file = garbage; }, {"ca_file", garbage, "no usable CA"}},
      {"CA file that is a directory", [&](auto& t) { t.ca_file = dir; }, {"ca_file", "is a directory"}},
      {"missing CA directory", [&](auto& t) { t.ca_dir = missing; }, {"ca_dir", missing}},
      {"missing certificate",
       [&](auto& t) {
         t.cert_file = missing;
         t.key_file = c.client_key();
       },
       {"cert_file", missing, "No such file"}},
      {"certificate that is not PEM",
       [&](auto& t) {
         t.cert_file = garbage;
         t.key_file = c.client_key();
       },
       {"cert_file", garbage, "no usable PEM certificate"}},
      {"missing key",
       [&](auto& t) {
         t.cert_file = c.client_cert();
         t.key_file = missing;
       },
       {"key_file", missing, "No such file"}},
      {"key that is not PEM",
       [&](auto& t) {
         t.cert_file = c.client_cert();
         t.key_file = garbage;
       },
       {"key_file", garbage, "no usable PEM private key"}},
      {"key of another certificate",
       [&](auto& t) {
         t.cert_file = c.client_cert();
         t.key_file = c.server_key();
       },
       {"key_file", "does not match cert_file"}},
      {"certificate without key", [&](auto& t) { t.cert_file = c.client_cert(); }, {"cert_file is set without key_file"}},
      {"key without certificate", [&](auto& t) { t.key_file = c.client_key(); }, {"key_file is set without cert_file"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    Options o = options_for(shared_tls_server());
    o.password = kPassword;
    k.set(o.tls);
    for (const bool cluster : {false, true}) {
      const auto t0 = Clock::now();
      const Failure f = failure_of<ConfigError>([&] {
        if (cluster) {
          Cluster cl(o);
        } else {
          Redis r(o);
        }
      });
      ASSERT_TRUE(f.thrown) << (cluster ? "Cluster" : "Redis") << " was built";
      EXPECT_LT(since(t0), 100ms);  // no connection was tried
      for (const auto& part : k.says) EXPECT_TRUE(has(f.what, part)) << f.what << "\n  lacks: " << part;
      EXPECT_FALSE(has(f.what, kPassword));
    }
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

// ---------------------------------------------------------------- what works

TEST(Tls, MutualTlsWithAClientCertificateWorksWhereOneIsRequired) {
  RedisServer s = tls_server(certs().server("yes"));
  Options o = options_for(s);
  o.tls.cert_file = certs().client_cert();
  o.tls.key_file = certs().client_key();
  Redis r(o);
  const std::string k = unique_prefix() + "mtls";
  r.command(Command{"SET"}.key(k).arg("v"));
  EXPECT_EQ(r.command(Command{"GET"}.key(k)).string_copy(), "v");
  EXPECT_EQ(s.cli("GET", k), "v");  // the same server, read over its plain port
}

TEST(Tls, VerifyFalseConnectsDespiteAnUnknownCaOrNoCaAtAll) {
  RedisServer& s = shared_tls_server();
  for (const std::string& ca : {certs().other_ca_file(), std::string()}) {
    Options o = options_for(s);
    o.tls.ca_file = ca;
    o.tls.verify = false;
    EXPECT_EQ(Redis(o).command({"PING"}).string_copy(), "PONG") << "ca_file '" << ca << "'";
  }
  // The URI spelling.
  Redis r("rediss://127.0.0.1:" + std::to_string(s.tls_port()) + "/0?tls_verify=0");
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");
}

TEST(Tls, RedissUriWithTlsCaFileWorksByNameAndByAddress) {
  RedisServer& s = shared_tls_server();
  const std::string ca = redkit::test::uri_encode(certs().ca_file());
  for (const std::string host : {"localhost", "127.0.0.1"}) {
    Redis r("rediss://" + host + ":" + std::to_string(s.tls_port()) + "/0?tls_ca_file=" + ca);
    EXPECT_EQ(r.command({"ECHO", host}).string_copy(), host);
  }
  // db, client name and AUTH ride on the TLS connection like on a plain one.
  const std::string name = "redkit-tls-" + std::to_string(::getpid());
  Redis r("rediss://127.0.0.1:" + std::to_string(s.tls_port()) + "/3?tls_ca_file=" + ca + "&client_name=" + name);
  const std::string k = unique_prefix() + "db3";
  r.command(Command{"SET"}.key(k).arg("x"));
  EXPECT_EQ(s.cli("GET", k), "(nil)");  // not in db 0
  EXPECT_EQ(local_port_of_client(s.cli("CLIENT", "LIST"), name), s.tls_port());
}

TEST(Tls, ATwentyMebibyteValueAndTenThousandPipelinedCommandsRoundTrip) {
  Options o = options_for(shared_tls_server());
  o.command_timeout = 30s;
  Redis r(o);
  const std::string k = unique_prefix() + "big";
  std::string value(20u << 20, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>((i * 2654435761u) >> 13);
  r.command(Command{"SET"}.key(k).arg_view(value));
  EXPECT_EQ(r.command(Command{"STRLEN"}.key(k)).integer(), static_cast<long long>(value.size()));
  const redkit::Reply got = r.command(Command{"GET"}.key(k));
  EXPECT_TRUE(got.string() == value);  // not EXPECT_EQ: no 20 MiB diff on failure
  r.command(Command{"DEL"}.key(k));

  // Small commands gathered into records, replies read across records.
  std::vector<Command> batch;
  for (int i = 0; i < 10000; ++i) batch.push_back(Command{"ECHO"}.arg("value-" + std::to_string(i)));
  const auto replies = r.pipeline(batch);
  ASSERT_EQ(replies.size(), batch.size());
  int wrong = 0;
  for (int i = 0; i < 10000; ++i) wrong += replies[static_cast<std::size_t>(i)].string() != "value-" + std::to_string(i);
  EXPECT_EQ(wrong, 0);
}

// A 100 MiB SET over TLS goes out from where the value lies: records are
// encrypted from the caller's memory, not from a copy of the value.
TEST(Tls, AHundredMebibyteSetOverTlsCostsNoCopyOfTheValue) {
  redkit::test::ChildProcess child(redkit::test::helper_path("big_set_tls"), {shared_tls_server().tls_uri(), "arg_view"});
  ASSERT_EQ(child.wait(120s), 0) << child.output();
  const std::string out = child.output();
  std::printf("[memory] 100 MiB SET over TLS: %s", out.c_str());
  const auto at = out.find('=');
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_LT(std::stod(out.substr(at + 1)), 10.0);
}

// The TLS socket BIO sends with MSG_NOSIGNAL: writing to a connection the
// server closed is an IoError, and SIGPIPE (whose default action would end
// this test program) is never raised.
TEST(Tls, WritingToATlsConnectionTheServerClosedIsAnIoErrorNotSigpipe) {
  struct sigaction dfl {};
  struct sigaction old {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &dfl, &old), 0);
  RedisServer& s = shared_tls_server();
  redkit::Connection c(options_for(s));
  const std::string id = std::to_string(c.command(Command{"CLIENT", "ID"}).integer());
  ASSERT_EQ(s.cli("CLIENT", "KILL", "ID", id), "1");
  const std::string value(1u << 20, 'x');
  const Failure f = failure_of<IoError>([&] {
    for (int i = 0; i < 64; ++i) c.command(Command{"SET"}.key(unique_prefix()).arg_view(value));
  });
  ::sigaction(SIGPIPE, &old, nullptr);
  ASSERT_TRUE(f.thrown);
  EXPECT_TRUE(has(f.what, std::to_string(s.tls_port()))) << f.what;
  EXPECT_TRUE(c.broken());
}

class TlsSignalDuringRead : public ::testing::TestWithParam<bool> {};

// The deadline of a TLS read is on the steady clock too: a 10 Hz signal
// during a read from a stopped server neither stretches nor breaks it.
TEST_P(TlsSignalDuringRead, TenHertzSignalsDuringATlsReadOfAStoppedServerEndInTimeoutWithinTheDeadline) {
  RedisServer s = tls_server(certs().server());
  Options o = options_for(s);
  o.command_timeout = 500ms;
  Redis r(o);
  ASSERT_EQ(r.command({"PING"}).string_copy(), "PONG");

  ASSERT_EQ(::kill(s.pid(), SIGSTOP), 0);
  std::chrono::milliseconds took{0};
  const int alarms = with_alarms_every_100ms(GetParam(), [&] {
    const auto t0 = Clock::now();
    EXPECT_THROW(r.command({"GET", "k"}), TimeoutError);
    took = since(t0);
  });
  ::kill(s.pid(), SIGCONT);

  EXPECT_GE(took, 490ms);
  EXPECT_LE(took, 600ms);  // command_timeout + 100 ms
  EXPECT_GE(alarms, 3);
  EXPECT_EQ(r.command({"PING"}).string_copy(), "PONG");  // a fresh TLS connection after the timeout
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutSaRestart, TlsSignalDuringRead, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "SaRestart" : "NoSaRestart"; });

TEST(Tls, OneContextPerDistinctOptionsSharedAndRebuiltWhenAFileChanges) {
  auto& contexts = redkit::detail::TlsContexts::instance();
  redkit::TlsOptions a;
  a.enabled = true;
  a.ca_file = certs().ca_file();
  redkit::TlsOptions b = a;
  b.verify = false;
  const auto a1 = contexts.get(a);
  const auto a2 = contexts.get(a);
  EXPECT_EQ(a1.get(), a2.get());  // the same options share one SSL_CTX
  EXPECT_NE(contexts.get(b).get(), a1.get());

  // A renewed client certificate (rewritten in place) is picked up.
  const std::string dir = redkit::test::make_temp_dir("rotate");
  redkit::TlsOptions m = a;
  m.cert_file = dir + "/client.crt";
  m.key_file = dir + "/client.key";
  std::filesystem::copy_file(certs().client_cert(), m.cert_file);
  std::filesystem::copy_file(certs().client_key(), m.key_file);
  const auto m1 = contexts.get(m);
  EXPECT_EQ(contexts.get(m).get(), m1.get());
  {
    std::ofstream(m.cert_file, std::ios::app) << "\n";  // new size and time: a new file as far as we can tell
  }
  const auto m2 = contexts.get(m);
  EXPECT_NE(m2.get(), m1.get());
  // And it still works for mutual TLS.
  RedisServer s = tls_server(certs().server("yes"));
  Options o = options_for(s);
  o.tls = m;
  EXPECT_EQ(Redis(o).command({"PING"}).string_copy(), "PONG");
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

// ---------------------------------------------------------------- fork

TEST(TlsFork, AChildsFirstUseOpensItsOwnTlsConnectionAndRepliesNeverCross) {
  RedisServer& s = shared_tls_server();
  Redis r(options_for(s));
  const std::string p = unique_prefix();
  {
    std::vector<std::thread> warm;
    for (int i = 0; i < 4; ++i) warm.emplace_back([&] { r.command({"PING"}); });
    for (auto& t : warm) t.join();
  }
  auto work = [&r, p](const std::string& who) {
    int crossed = 0;
    for (int i = 0; i < 200; ++i) {
      const std::string key = p + who + ":" + std::to_string(i);
      r.command(Command{"SET"}.key(key).arg(who + std::to_string(i)));
      if (r.command(Command{"GET"}.key(key)).string_copy() != who + std::to_string(i)) ++crossed;
      if (r.command(Command{"INCR"}.key(p + who + ":n")).integer() != i + 1) ++crossed;
    }
    return crossed;
  };
  // A parent thread keeps a TLS connection busy while the children fork.
  std::atomic<bool> stop{false};
  std::atomic<int> background_crossed{0};
  std::thread busy([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      if (r.command({"ECHO", "bg" + std::to_string(i)}).string_copy() != "bg" + std::to_string(i)) ++background_crossed;
    }
  });
  const int tls_port = s.tls_port();
  std::vector<pid_t> children;
  for (int c = 0; c < 2; ++c) {
    children.push_back(fork_child([&work, &r, c, tls_port] {
      const int crossed = work("child" + std::to_string(c));
      // Its own connection, over TLS: CLIENT INFO names the local TLS port.
      const std::string info(r.command({"CLIENT", "INFO"}).string_copy());
      const bool on_tls = has(info, "laddr=127.0.0.1:" + std::to_string(tls_port) + " ");
      if (crossed != 0) return 1;
      if (r.stats().connections_created < 1) return 2;
      return on_tls ? 0 : 3;
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

// SSL_shutdown writes a close_notify: a child must never do that on an
// inherited session. Its descriptor is closed at the fork, and the number
// may be reused; here it is, by a socket pair the child watches.
TEST(TlsFork, AChildDestroyingAnInheritedTlsConnectionWritesNothingAnywhere) {
  auto c = std::make_unique<redkit::Connection>(options_for(shared_tls_server()));
  ASSERT_TRUE(c->secure());
  ASSERT_EQ(c->command(Command{"PING"}).string_copy(), "PONG");
  const int inherited_fd = c->fd();
  const pid_t pid = fork_child([&] {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 3;
    if (::dup2(sv[0], inherited_fd) < 0) return 4;
    c.reset();  // ~Connection, ~TlsTransport in the child
    char byte = 0;
    const ssize_t n = ::recv(sv[1], &byte, 1, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : 1;
  });
  EXPECT_EQ(wait_child(pid), 0);
  EXPECT_EQ(c->command(Command{"PING"}).string_copy(), "PONG");  // the parent's session is intact
}

// ---------------------------------------------------------------- sentinel mode and Cluster

TEST(TlsSentinel, SentinelsAndTheMasterAreReachedOverTlsAndAFailoverIsFollowed) {
  redkit::test::SentinelSet& set = redkit::test::shared_tls_sentinel();
  Options o = Options::from_uri(set.tls_uri());
  o.client_name = "redkit-tls-sentinel-" + std::to_string(::getpid());
  Redis r(o);
  const std::string k = unique_prefix() + "sentinel";
  r.command(Command{"SET"}.key(k).arg("1"));
  RedisServer& first = set.current_master();
  EXPECT_EQ(local_port_of_client(first.cli("CLIENT", "LIST"), o.client_name), first.tls_port());

  set.wait_ready_for_failover();
  const auto reply = redkit::test::node_command(set.sentinel_ports()[0], {"SENTINEL", "FAILOVER", set.master_name()});
  ASSERT_FALSE(reply.is_error()) << reply.error();
  ASSERT_TRUE(wait_until([&] { return &set.current_master() != &first; }, 20s, 50ms));
  RedisServer& second = set.current_master();
  // The client follows to the new master, over TLS.
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          r.command(Command{"INCR"}.key(k));
          return local_port_of_client(second.cli("CLIENT", "LIST"), o.client_name) == second.tls_port();
        } catch (const redkit::Error&) {
          return false;
        }
      },
      20s, 50ms));
  EXPECT_GE(r.stats().failovers, 1u);
  set.wait_replica_synced();
}

TEST(TlsCluster, EveryMasterIsReachedOverTlsAndAMovedSlotIsFollowed) {
  redkit::test::RedisCluster& cluster = redkit::test::shared_tls_cluster();
  Options o = Options::from_uri(cluster.tls_seed_uri());
  o.client_name = "redkit-tls-cluster-" + std::to_string(::getpid());
  Cluster c(o);
  const std::string p = unique_prefix();
  std::vector<Command> sets;
  for (int i = 0; i < 300; ++i) sets.push_back(Command{"SET"}.key(p + std::to_string(i)).arg(std::to_string(i)));
  for (const auto& reply : c.pipeline(sets)) EXPECT_FALSE(reply.is_error());
  for (RedisServer* m : cluster.masters()) {
    EXPECT_EQ(local_port_of_client(m->cli("CLIENT", "LIST"), o.client_name), m->tls_port())
        << "master " << m->port();
  }
  // Move the slot of one key (MIGRATE over TLS too) and read it again.
  const std::string key = p + "7";
  const int slot = redkit::hash_slot(key);
  RedisServer& from = cluster.master_of(slot);
  RedisServer* to = nullptr;
  for (RedisServer* m : cluster.masters()) {
    if (m != &from) to = m;
  }
  ASSERT_NE(to, nullptr);
  cluster.move_slot(slot, *to);
  EXPECT_EQ(c.command(Command{"GET"}.key(key)).string_copy(), "7");
  EXPECT_GE(c.stats().redirects, 1u);
}
