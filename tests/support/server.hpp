// Test support: real redis-server processes and child processes for
// GoogleTest suites and benchmarks. Never a fake server.
//
// Thread safety: a RedisServer or ChildProcess belongs to one thread; cli(),
// port(), host(), uri() and unix_path() may be called from several threads
// as long as no thread calls running(), kill(), stop() or restart() meanwhile.
// Exceptions: std::runtime_error when a process cannot be started, does not
// become ready, or (cli) the server cannot be reached.
//
// Every spawned process runs in its own process group with stdin from
// /dev/null and gets PR_SET_PDEATHSIG(SIGKILL), so a crashed test never
// leaves servers behind. Linux delivers that signal when the *thread* that
// started the process exits: start servers from a thread that outlives them
// (the main thread, a fixture's SetUpTestSuite), not from a worker thread.
// A forked copy of the test process never stops or deletes servers it did
// not start itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace redkit::test {

/// A TLS port beside the plain one. The plain port stays, on 127.0.0.1 as
/// well: the support's own readiness check, cli() and SHUTDOWN use it (the
/// support library speaks no TLS), while clients under test use tls_port().
/// Certificates come from TestCertificates (support/tls.hpp).
struct ServerTls {
  std::string cert_file;                  // empty: no TLS port
  std::string key_file;
  std::string ca_file;                    // CA for client certificates; it signed cert_file too
  std::string auth_clients = "optional";  // --tls-auth-clients: yes, optional or no
  bool replication = false;               // --tls-replication yes: replicas and sentinels use TLS
  bool cluster = false;                   // --tls-cluster yes: the bus and MIGRATE use TLS
  bool enabled() const { return !cert_file.empty(); }
};

struct ServerOptions {
  bool unix_socket = false;             // also listen on <dir>/redis.sock (perm 700)
  std::vector<std::string> extra_args;  // appended last, e.g. {"--requirepass", "secret"}
  std::string cpu_list;                 // e.g. "1": run under `taskset -c 1`
  ServerTls tls;                        // a TLS port too, when tls.cert_file is set
  std::chrono::milliseconds start_timeout{10000};
};

/// A redis-server bound to 127.0.0.1 on a free port, in a fresh temporary
/// directory, with no persistence and DEBUG enabled. Ready when constructed.
class RedisServer {
 public:
  /// Starts the server and waits until it answers. Throws std::runtime_error
  /// (with the tail of redis.log) if it exits early or misses start_timeout.
  explicit RedisServer(ServerOptions options = {});
  /// Stops the server (as stop()) and removes its directory.
  ~RedisServer();
  RedisServer(RedisServer&& other) noexcept;
  RedisServer& operator=(RedisServer&& other) noexcept;
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  /// The TLS port; 0 unless ServerOptions::tls is enabled.
  int tls_port() const { return tls_port_; }
  /// The port other servers reach this one on: the TLS port when
  /// replication or the cluster bus use TLS, else port().
  int peer_port() const;
  /// "rediss://127.0.0.1:TLS_PORT/0?tls_ca_file=<the CA>"; throws
  /// std::runtime_error without a TLS port.
  std::string tls_uri() const;
  std::string host() const { return "127.0.0.1"; }
  /// Path of the unix socket; empty unless ServerOptions::unix_socket.
  std::string unix_path() const;
  /// "redis://127.0.0.1:PORT/0" (no credentials).
  std::string uri() const;
  /// The temporary directory holding redis.log (and redis.sock).
  const std::string& dir() const { return dir_; }
  /// Process id of the running server, -1 when it is not running.
  pid_t pid() const { return pid_; }
  /// True while the server process is alive (reaps it once it has exited).
  bool running() const;

  /// SIGKILL and reap; no shutdown, no ready check.
  void kill();
  /// SHUTDOWN NOSAVE (quick; best effort) and SIGTERM, then SIGKILL after
  /// 5 s; reaps. No-op when not running.
  void stop();
  /// Stops the server if running, then starts it again on the same port,
  /// directory and arguments and waits until it answers. Data is not kept.
  void restart();

  /// Credentials cli() sends with AUTH. Taken from `--requirepass` in
  /// extra_args by default; call this after CONFIG SET requirepass or ACL SETUSER.
  void set_password(std::string password, std::string user = {});

  /// Runs one command over a fresh hiredis connection (AUTH first when a
  /// password is known) and renders the reply: strings and status as is,
  /// integers in decimal, nil as "(nil)", errors as their text
  /// ("ERR ...", "WRONGTYPE ..."), arrays as elements joined by '\n'.
  /// Throws std::runtime_error if the server cannot be reached or AUTH fails.
  std::string cli(const std::vector<std::string>& args) const;

  /// cli("SET", "k", "v") is cli({"SET", "k", "v"}).
  template <class... Args,
            class = std::enable_if_t<(sizeof...(Args) > 0) &&
                                     (std::is_convertible_v<const Args&, std::string_view> && ...)>>
  std::string cli(const Args&... args) const {
    return cli(std::vector<std::string>{std::string(std::string_view(args))...});
  }

  /// The last `lines` lines of redis.log (the server's stderr goes there too).
  std::string log_tail(std::size_t lines = 30) const;

 private:
  bool start();  // false when the port was taken; throws on other failures
  void release() noexcept;

  ServerOptions options_;
  std::string dir_;
  std::string user_;
  std::string password_;
  int port_ = 0;
  int tls_port_ = 0;
  mutable pid_t pid_ = -1;
  pid_t owner_ = -1;  // process that started the server
};

/// One lazily started server per process, for suites that only need "a
/// server"; tests isolate themselves with unique_prefix(). First call it from
/// the main thread (see PR_SET_PDEATHSIG above).
RedisServer& shared_server();

/// s with every character but [A-Za-z0-9-_.~/] percent-encoded, for URIs.
std::string uri_encode(const std::string& s);

/// "t:<pid>:<n>:" — a key prefix unique per call, within and across processes.
std::string unique_prefix();

/// Path of the helper program tests/helpers/<name>.cpp, which the build puts
/// next to the test programs: "<directory of this program>/redkit_helper_<name>".
std::string helper_path(const std::string& name);

/// Milliseconds passed on the steady clock since t0.
inline long long ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

/// Calls pred every `step` until it returns true (true) or `deadline` has
/// passed (false). pred is called at least once, and once more at the deadline.
bool wait_until(std::function<bool()> pred, std::chrono::milliseconds deadline,
                std::chrono::milliseconds step = std::chrono::milliseconds{5});

/// A spawned executable whose stdout is captured (stderr is inherited).
class ChildProcess {
 public:
  /// Starts `program` (searched on PATH when it has no '/') with `args`.
  /// Throws std::runtime_error if it is not found or cannot be forked.
  ChildProcess(std::string program, std::vector<std::string> args = {});
  /// Kills (SIGKILL) and reaps the process if it is still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Waits for exit while collecting stdout; returns the exit code, or
  /// 128 + signal number if a signal ended it. On timeout kills the process
  /// and throws std::runtime_error. Later calls return the same code.
  int wait(std::chrono::milliseconds timeout);
  /// Sends `signal` (reap it with wait()).
  void kill(int signal = SIGKILL);
  /// Everything the process wrote to stdout so far (complete after wait()).
  const std::string& output() const { return output_; }
  pid_t pid() const { return pid_; }

 private:
  void read_output(int timeout_ms);

  std::string program_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string output_;
};

}  // namespace redkit::test
