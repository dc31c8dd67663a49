#include "support/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <climits>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace redkit::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kHost = "127.0.0.1";
constexpr int kPortAttempts = 5;     // fresh ports tried by the constructor
constexpr int kRebindAttempts = 50;  // restart() on the same port, 100 ms apart
constexpr milliseconds kStopGrace{5000};

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// An absolute path for `name`: itself if it contains '/', else its first
// executable match on PATH; empty if none.
std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// The build may name the redis-server it found (REDKIT_REDIS_SERVER);
// otherwise the first on PATH, else the Debian location.
std::string redis_server_path() {
#ifdef REDKIT_REDIS_SERVER
  if (::access(REDKIT_REDIS_SERVER, X_OK) == 0) return REDKIT_REDIS_SERVER;
#endif
  std::string path = find_executable("redis-server");
  return path.empty() ? "/usr/bin/redis-server" : path;
}

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/redkit-XXXXXX";
  if (!::mkdtemp(templ.data())) throw std::runtime_error(errno_text("mkdtemp " + templ));
  return templ;
}

// A port that was free a moment ago: bind 127.0.0.1:0 and read what we got.
int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc == 0) rc = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int saved = errno;
  ::close(fd);
  errno = saved;
  if (rc != 0) throw std::runtime_error(errno_text("bind 127.0.0.1:0"));
  return ntohs(addr.sin_port);
}

// Forks and execs argv (argv[0] an absolute path) in its own process group,
// stdin from /dev/null, stdout/stderr onto out_fd/err_fd (-1: inherited), no
// other descriptors, killed when the calling thread exits. Everything the
// child needs is prepared before fork, so it only makes async-signal-safe calls.
pid_t spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  std::vector<char*> c_argv;
  for (const auto& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
  c_argv.push_back(nullptr);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) throw std::runtime_error(errno_text("open /dev/null"));
  long max_fd = ::sysconf(_SC_OPEN_MAX);
  if (max_fd < 0) max_fd = 1024;
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // parent already gone
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, 0);
    if (out_fd >= 0) ::dup2(out_fd, 1);
    if (err_fd >= 0) ::dup2(err_fd, 2);
    // hiredis 0.14 opens sockets without CLOEXEC; a server holding a copy
    // of a test's client socket would hide that client's disconnects.
    if (::close_range(3, ~0U, 0) != 0) {
      for (long fd = 3; fd < max_fd; ++fd) ::close(static_cast<int>(fd));
    }
    ::execv(c_argv[0], c_argv.data());
    ::_exit(127);
  }
  int saved = errno;
  ::close(null_fd);
  if (pid < 0) {
    errno = saved;
    throw std::runtime_error(errno_text("fork"));
  }
  return pid;
}

// Non-blocking waitpid: true once `pid` has exited (and is reaped).
bool reap(pid_t pid, int* status = nullptr) {
  for (;;) {
    pid_t rc = ::waitpid(pid, status, WNOHANG);
    if (rc == pid) return true;
    if (rc < 0 && errno == EINTR) continue;
    return rc < 0;  // ECHILD: already reaped by someone else
  }
}

void reap_blocking(pid_t pid, int* status = nullptr) {
  while (::waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

// Blocks SIGPIPE in this thread while hiredis writes, so a server that closes
// the socket shows up as an I/O error rather than killing the test. Installs
// no handler; a SIGPIPE raised meanwhile is consumed before unblocking.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    was_pending_ = pending();
  }
  ~SigpipeBlock() {
    if (!was_pending_ && pending()) {
      timespec zero{0, 0};
      ::sigtimedwait(&pipe_, nullptr, &zero);
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  static bool pending() {
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, SIGPIPE) == 1;
  }
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextFree>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

timeval to_timeval(milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

// Connects over TCP; on failure returns the context (for its errstr) or null.
ContextPtr connect_tcp(int port, milliseconds connect_timeout, milliseconds io_timeout) {
  ContextPtr c(redisConnectWithTimeout(kHost, port, to_timeval(connect_timeout)));
  if (c && !c->err) redisSetTimeout(c.get(), to_timeval(io_timeout));
  return c;
}

ReplyPtr command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lens.push_back(arg.size());
  }
  return ReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

std::vector<std::string> auth_args(const std::string& user, const std::string& password) {
  if (user.empty()) return {"AUTH", password};
  return {"AUTH", user, password};
}

std::string render(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (size_t i = 0; i < r->elements; ++i) {
        if (i) out += '\n';
        out += render(r->element[i]);
      }
      return out;
    }
    default:
      return std::string(r->str, r->len);  // string, status, error
  }
}

// Any reply, even NOAUTH or LOADING, means the server is up.
bool answers_ping(int port) {
  SigpipeBlock block;
  ContextPtr c = connect_tcp(port, milliseconds{200}, milliseconds{1000});
  if (!c || c->err) return false;
  return command(c.get(), {"PING"}) != nullptr;
}

std::string read_file(const std::string& path, std::streamoff from = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(from);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::streamoff file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

}  // namespace

// Percent-encodes everything but unreserved characters and '/'.
std::string uri_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

namespace {

std::string arg_after(const std::vector<std::string>& args, const std::string& flag) {
  auto it = std::find(args.begin(), args.end(), flag);
  return it != args.end() && it + 1 != args.end() ? *(it + 1) : std::string();
}

}  // namespace

// ---- RedisServer ----------------------------------------------------------

RedisServer::RedisServer(ServerOptions options) : options_(std::move(options)), owner_(::getpid()) {
  password_ = arg_after(options_.extra_args, "--requirepass");
  dir_ = make_temp_dir();
  try {
    for (int attempt = 1;; ++attempt) {
      port_ = pick_free_port();
      if (options_.tls.enabled()) {
        do {
          tls_port_ = pick_free_port();
        } while (tls_port_ == port_);
      }
      if (start()) return;
      if (attempt == kPortAttempts) {
        throw std::runtime_error("redis-server: no free port after " + std::to_string(attempt) +
                                 " attempts\n" + log_tail());
      }
    }
  } catch (...) {
    release();
    throw;
  }
}

RedisServer::~RedisServer() { release(); }

RedisServer::RedisServer(RedisServer&& other) noexcept
    : options_(std::move(other.options_)),
      dir_(std::move(other.dir_)),
      user_(std::move(other.user_)),
      password_(std::move(other.password_)),
      port_(other.port_),
      tls_port_(other.tls_port_),
      pid_(other.pid_),
      owner_(other.owner_) {
  other.dir_.clear();
  other.pid_ = -1;
}

RedisServer& RedisServer::operator=(RedisServer&& other) noexcept {
  if (this != &other) {
    release();
    options_ = std::move(other.options_);
    dir_ = std::move(other.dir_);
    user_ = std::move(other.user_);
    password_ = std::move(other.password_);
    port_ = other.port_;
    tls_port_ = other.tls_port_;
    pid_ = other.pid_;
    owner_ = other.owner_;
    other.dir_.clear();
    other.pid_ = -1;
  }
  return *this;
}

void RedisServer::release() noexcept {
  if (::getpid() != owner_) return;  // a fork of the test: not ours to stop
  stop();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    dir_.clear();
  }
}

std::string RedisServer::unix_path() const {
  return options_.unix_socket ? dir_ + "/redis.sock" : std::string();
}

std::string RedisServer::uri() const {
  return "redis://" + host() + ":" + std::to_string(port_) + "/0";
}

int RedisServer::peer_port() const {
  return options_.tls.enabled() && (options_.tls.replication || options_.tls.cluster) ? tls_port_ : port_;
}

std::string RedisServer::tls_uri() const {
  if (!options_.tls.enabled()) throw std::runtime_error("RedisServer: no TLS port (ServerOptions::tls)");
  return "rediss://" + host() + ":" + std::to_string(tls_port_) + "/0?tls_ca_file=" + uri_encode(options_.tls.ca_file);
}

bool RedisServer::running() const {
  if (pid_ <= 0) return false;
  if (!reap(pid_)) return true;
  pid_ = -1;
  return false;
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  reap_blocking(pid_);
  pid_ = -1;
}

void RedisServer::stop() {
  if (pid_ <= 0) return;
  // SHUTDOWN acts at once; SIGTERM alone waits for the next serverCron tick
  // (up to 100 ms at the default hz). Either may fail (server hung, auth).
  {
    SigpipeBlock block;
    ContextPtr c = connect_tcp(port_, milliseconds{200}, milliseconds{200});
    if (c && !c->err) {
      if (!password_.empty()) command(c.get(), auth_args(user_, password_));
      command(c.get(), {"SHUTDOWN", "NOSAVE"});
    }
  }
  ::kill(pid_, SIGTERM);
  if (!wait_until([this] { return !running(); }, kStopGrace)) kill();
  pid_ = -1;
}

void RedisServer::restart() {
  stop();
  for (int attempt = 1;; ++attempt) {
    if (start()) return;
    if (attempt == kRebindAttempts) {
      throw std::runtime_error("redis-server: port " + std::to_string(port_) + " stayed in use\n" +
                               log_tail());
    }
    std::this_thread::sleep_for(milliseconds{100});
  }
}

bool RedisServer::start() {
  const std::string log_path = dir_ + "/redis.log";
  std::string server = redis_server_path();

  std::vector<std::string> argv;
  if (!options_.cpu_list.empty()) {
    std::string taskset = find_executable("taskset");
    if (taskset.empty()) throw std::runtime_error("taskset not found on PATH");
    argv = {taskset, "-c", options_.cpu_list};
  }
  std::vector<std::string> args = {
      server,         "--port", std::to_string(port_),
      "--bind",       kHost,    "--protected-mode",
      "yes",          "--save", "",
      "--appendonly", "no",     "--daemonize",
      "no",           "--dir",  dir_,
      "--logfile",    log_path, "--enable-debug-command",
      "yes",
  };
  argv.insert(argv.end(), args.begin(), args.end());
  if (options_.unix_socket) {
    argv.insert(argv.end(), {"--unixsocket", unix_path(), "--unixsocketperm", "700"});
  }
  if (options_.tls.enabled()) {
    const ServerTls& t = options_.tls;
    argv.insert(argv.end(), {"--tls-port", std::to_string(tls_port_), "--tls-cert-file", t.cert_file,
                             "--tls-key-file", t.key_file, "--tls-ca-cert-file", t.ca_file,
                             "--tls-auth-clients", t.auth_clients});
    if (t.replication) argv.insert(argv.end(), {"--tls-replication", "yes"});
    if (t.cluster) argv.insert(argv.end(), {"--tls-cluster", "yes"});
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());

  // Startup errors printed before the log file is opened land there too.
  std::streamoff log_start = file_size(log_path);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) throw std::runtime_error(errno_text("open " + log_path));
  try {
    pid_ = spawn(argv, log_fd, log_fd);
  } catch (...) {
    ::close(log_fd);
    throw;
  }
  ::close(log_fd);

  const auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    if (!running()) {
      if (read_file(log_path, log_start).find("Address already in use") != std::string::npos) {
        return false;
      }
      throw std::runtime_error("redis-server exited during startup on port " +
                               std::to_string(port_) + "\n" + log_tail());
    }
    if (answers_ping(port_)) return true;
    if (Clock::now() >= deadline) {
      kill();
      throw std::runtime_error(
          "redis-server on port " + std::to_string(port_) + " not ready after " +
          std::to_string(options_.start_timeout.count()) + " ms\n" + log_tail());
    }
    std::this_thread::sleep_for(milliseconds{10});
  }
}

void RedisServer::set_password(std::string password, std::string user) {
  password_ = std::move(password);
  user_ = std::move(user);
}

std::string RedisServer::cli(const std::vector<std::string>& args) const {
  const std::string where = "cli: 127.0.0.1:" + std::to_string(port_);
  SigpipeBlock block;
  ContextPtr c = connect_tcp(port_, milliseconds{2000}, milliseconds{10000});
  if (!c) throw std::runtime_error(where + ": out of memory");
  if (c->err) throw std::runtime_error(where + ": " + c->errstr);
  if (!password_.empty()) {
    ReplyPtr reply = command(c.get(), auth_args(user_, password_));
    if (!reply) throw std::runtime_error(where + ": AUTH: " + c->errstr);
    if (reply->type == REDIS_REPLY_ERROR)
      throw std::runtime_error(where + ": AUTH: " + render(reply.get()));
  }
  ReplyPtr reply = command(c.get(), args);
  if (!reply)
    throw std::runtime_error(where + ": " + (args.empty() ? "" : args[0]) + ": " + c->errstr);
  return render(reply.get());
}

std::string RedisServer::log_tail(std::size_t lines) const {
  const std::string log = read_file(dir_ + "/redis.log");
  size_t end = log.size();
  if (end > 0 && log[end - 1] == '\n') --end;
  size_t start = end;
  for (size_t seen = 0; start > 0 && lines > 0; --start) {
    if (log[start - 1] == '\n' && ++seen == lines) break;
  }
  return lines == 0 ? std::string() : log.substr(start, end - start);
}

// ---- shared helpers -------------------------------------------------------

RedisServer& shared_server() {
  static RedisServer server;
  return server;
}

std::string helper_path(const std::string& name) {
    char self[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) throw std::runtime_error("helper_path: cannot read /proc/self/exe");
    const std::string path(self, static_cast<std::size_t>(n));
    return path.substr(0, path.rfind('/')) + "/redkit_helper_" + name;
}

std::string unique_prefix() {
  static std::atomic<unsigned long> counter{0};
  return "t:" + std::to_string(::getpid()) + ":" + std::to_string(++counter) + ":";
}

bool wait_until(std::function<bool()> pred, milliseconds deadline, milliseconds step) {
  const auto end = Clock::now() + deadline;
  for (;;) {
    if (pred()) return true;
    const auto now = Clock::now();
    if (now >= end) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(step, end - now));
  }
}

// ---- ChildProcess ---------------------------------------------------------

ChildProcess::ChildProcess(std::string program, std::vector<std::string> args)
    : program_(std::move(program)) {
  std::string path = find_executable(program_);
  if (path.empty()) throw std::runtime_error("ChildProcess: " + program_ + " not found on PATH");
  std::vector<std::string> argv = {path};
  argv.insert(argv.end(), args.begin(), args.end());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(errno_text("pipe2"));
  try {
    pid_ = spawn(argv, fds[1], -1);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);
  out_fd_ = fds[0];
}

ChildProcess::~ChildProcess() {
  if (!exited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    reap_blocking(pid_);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

void ChildProcess::kill(int signal) {
  if (!exited_ && pid_ > 0) ::kill(pid_, signal);
}

// Appends what stdout has within timeout_ms; closes the pipe at EOF.
void ChildProcess::read_output(int timeout_ms) {
  if (out_fd_ < 0) {
    std::this_thread::sleep_for(milliseconds{timeout_ms});
    return;
  }
  pollfd p{out_fd_, POLLIN, 0};
  int rc = ::poll(&p, 1, timeout_ms);
  if (rc <= 0) return;  // nothing yet, or EINTR
  char buf[4096];
  ssize_t n = ::read(out_fd_, buf, sizeof buf);
  if (n > 0) {
    output_.append(buf, static_cast<size_t>(n));
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    ::close(out_fd_);
    out_fd_ = -1;
  }
}

int ChildProcess::wait(milliseconds timeout) {
  if (exited_) return exit_code_;
  const auto end = Clock::now() + timeout;
  int status = 0;
  while (!reap(pid_, &status)) {
    const auto left = std::chrono::duration_cast<milliseconds>(end - Clock::now());
    if (left.count() <= 0) {
      ::kill(pid_, SIGKILL);
      reap_blocking(pid_);
      exited_ = true;
      exit_code_ = 128 + SIGKILL;
      throw std::runtime_error("ChildProcess: " + program_ + " still running after " +
                               std::to_string(timeout.count()) + " ms; killed. stdout:\n" +
                               output_);
    }
    read_output(static_cast<int>(std::min<milliseconds::rep>(left.count(), 10)));
  }
  // Collect what is left in the pipe, without waiting for a grandchild that
  // may hold it open.
  const auto drain_end = std::max(end, Clock::now() + milliseconds{100});
  while (out_fd_ >= 0 && Clock::now() < drain_end) {
    const size_t before = output_.size();
    read_output(0);
    if (out_fd_ >= 0 && output_.size() == before) break;
  }
  exited_ = true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

}  // namespace redkit::test
