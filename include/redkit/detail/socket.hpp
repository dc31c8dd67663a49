// Sockets owned by redkit: steady-clock deadlines, waiting with poll() that
// survives signals, TCP connect over every resolved address (IPv4 and IPv6)
// within the connect timeout, unix sockets. Linux (SOCK_CLOEXEC,
// MSG_NOSIGNAL, TCP_KEEPIDLE). Thread safety: a Socket belongs to one
// connection; the free functions are thread-safe.
#pragma once

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "redkit/detail/fork.hpp"
#include "redkit/error.hpp"

namespace redkit::detail {

using SteadyClock = std::chrono::steady_clock;

/// A point on the steady clock by which an operation must end, or none.
/// Wall-clock changes and signals do not move it.
class Deadline {
 public:
  /// No deadline: wait for ever.
  static Deadline none() noexcept { return Deadline(); }
  /// now + t; a t of zero or less means none (as a 0 timeout does in Options).
  static Deadline after(std::chrono::milliseconds t) noexcept {
    Deadline d;
    if (t.count() <= 0) return d;
    const auto now = SteadyClock::now();
    const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::time_point::max() - now);
    d.at_ = t >= room ? SteadyClock::time_point::max() : now + t;
    d.none_ = false;
    return d;
  }
  /// A deadline at a given point (already passed is allowed).
  static Deadline at(SteadyClock::time_point when) noexcept {
    Deadline d;
    d.at_ = when;
    d.none_ = false;
    return d;
  }

  bool is_none() const noexcept { return none_; }
  bool passed() const noexcept { return !none_ && SteadyClock::now() >= at_; }
  SteadyClock::time_point when() const noexcept { return at_; }
  /// Time left, rounded up to whole milliseconds (0 when passed; a large
  /// value for none).
  std::chrono::milliseconds remaining() const noexcept {
    if (none_) return std::chrono::milliseconds(INT_MAX);
    const auto left = at_ - SteadyClock::now();
    if (left.count() <= 0) return std::chrono::milliseconds(0);
    return std::chrono::ceil<std::chrono::milliseconds>(left);
  }
  /// The timeout argument for poll(): -1 for none.
  int poll_timeout() const noexcept {
    if (none_) return -1;
    return static_cast<int>(std::min<long long>(remaining().count(), INT_MAX));
  }
  /// The earlier of the two.
  Deadline min(const Deadline& o) const noexcept {
    if (none_) return o;
    if (o.none_) return *this;
    return at_ <= o.at_ ? *this : o;
  }

 private:
  SteadyClock::time_point at_{SteadyClock::time_point::max()};
  bool none_ = true;
};

/// Waits until fd is ready for events (POLLIN / POLLOUT), or the deadline
/// passes (false). After a signal (EINTR) it waits again for the time that
/// is left, so no signal ever stretches the deadline. Readiness includes an
/// error or hang-up on the socket (the next read or write reports it).
/// @throws IoError if poll() itself fails.
inline bool wait_fd(int fd, short events, const Deadline& d) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, d.poll_timeout());
    if (n > 0) return true;
    if (n == 0) {
      if (d.passed()) return false;
      continue;  // poll rounds down; the deadline is a little later
    }
    if (errno != EINTR) throw IoError(std::string("redkit: poll failed: ") + std::strerror(errno));
    if (d.passed()) return false;
  }
}

/// An owned socket descriptor, registered for fork safety: closed when
/// destroyed, unless this process is a fork child of the one that opened
/// it (the child closed its copy already, and the number may be reused).
class Socket {
 public:
  Socket() noexcept = default;
  explicit Socket(int fd) : fd_(fd), generation_(fork_generation()) {
    try {
      SocketRegistry::instance().add(fd_);
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)), generation_(o.generation_) {}
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
      generation_ = o.generation_;
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  int fd() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// True when this process opened it (not inherited across fork()).
  bool ours() const noexcept { return generation_ == fork_generation(); }

  void close() noexcept {
    if (fd_ < 0) return;
    if (ours()) {
      SocketRegistry::instance().remove(fd_);
      ::close(fd_);
    }
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::uint32_t generation_ = 0;
};

inline std::string errno_text(int e) { return std::strerror(e); }

inline timeval to_timeval(std::chrono::milliseconds ms) noexcept {
  timeval tv{};
  if (ms.count() <= 0) return tv;
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

/// Puts a connected socket in the mode redkit reads it in: blocking, with a
/// receive timeout of read_timeout (0 = none), so that the usual reply
/// costs one recv() (see PlainTransport::read_waiting); every other step
/// passes MSG_DONTWAIT and waits in poll() against its own deadline.
inline void set_read_mode(int fd, std::chrono::milliseconds read_timeout) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    throw IoError("redkit: fcntl failed: " + errno_text(errno));
  }
  const timeval tv = to_timeval(read_timeout);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
    throw IoError("redkit: setsockopt(SO_RCVTIMEO) failed: " + errno_text(errno));
  }
}

/// TCP keepalive as hiredis sets it: probes after 15 s idle, every 5 s, 3
/// of them. Best effort.
inline void enable_keepalive(int fd) noexcept {
  int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof yes);
#ifdef TCP_KEEPIDLE
  int idle = 15, interval = 5, count = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
#endif
}

/// Starts a non-blocking connect of a new socket to addr and waits for it
/// until deadline. Returns the connected socket, or an empty one with
/// error set (errno value, or ETIMEDOUT).
inline Socket connect_address(const sockaddr* addr, socklen_t len, int family, const Deadline& deadline,
                              int& error) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errno;
    return Socket();
  }
  Socket s(fd);
  int rc;
  do {
    rc = ::connect(fd, addr, len);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return s;
  if (errno != EINPROGRESS) {
    error = errno;
    return Socket();
  }
  if (!wait_fd(fd, POLLOUT, deadline)) {
    error = ETIMEDOUT;
    return Socket();
  }
  int so_error = 0;
  socklen_t so_len = sizeof so_error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) != 0) so_error = errno;
  if (so_error != 0) {
    error = so_error;
    return Socket();
  }
  return s;
}

/// One address getaddrinfo gave.
struct ResolvedAddress {
  int family = 0;
  sockaddr_storage addr{};
  socklen_t len = 0;
};

/// Resolves host for a TCP connect. A numeric address needs no lookup; a
/// name is looked up on a helper thread so that a slow resolver cannot
/// outlast the deadline (the lookup is abandoned, not cancelled, when it
/// does). @throws IoError / TimeoutError.
inline std::vector<ResolvedAddress> resolve(const std::string& host, int port, const Deadline& deadline) {
  struct Lookup {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
    std::vector<ResolvedAddress> out;
  };
  const std::string service = std::to_string(port);
  auto run = [host, service](Lookup& l, int flags) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    std::vector<ResolvedAddress> out;
    for (addrinfo* a = res; rc == 0 && a; a = a->ai_next) {
      ResolvedAddress r;
      r.family = a->ai_family;
      r.len = static_cast<socklen_t>(std::min<std::size_t>(a->ai_addrlen, sizeof r.addr));
      std::memcpy(&r.addr, a->ai_addr, r.len);
      out.push_back(r);
    }
    if (res) ::freeaddrinfo(res);
    std::lock_guard<std::mutex> lk(l.m);
    l.rc = rc;
    l.out = std::move(out);
    l.done = true;
    l.cv.notify_all();
  };
  auto fail = [&](int rc) -> std::vector<ResolvedAddress> {
    throw IoError("redkit: cannot resolve host '" + host + "': " + ::gai_strerror(rc));
  };
  {
    Lookup numeric;
    run(numeric, AI_NUMERICHOST | AI_NUMERICSERV);
    if (numeric.rc == 0 && !numeric.out.empty()) return numeric.out;
  }
  auto lookup = std::make_shared<Lookup>();
  std::thread([lookup, run] { run(*lookup, AI_NUMERICSERV | AI_ADDRCONFIG); }).detach();
  std::unique_lock<std::mutex> lk(lookup->m);
  if (deadline.is_none()) {
    lookup->cv.wait(lk, [&] { return lookup->done; });
  } else if (!lookup->cv.wait_until(lk, deadline.when(), [&] { return lookup->done; })) {
    throw TimeoutError("redkit: cannot connect to " + host + ":" + std::to_string(port) +
                       ": resolving the host name timed out (connect_timeout)");
  }
  if (lookup->rc != 0) return fail(lookup->rc);
  if (lookup->out.empty()) throw IoError("redkit: host '" + host + "' has no address");
  return lookup->out;
}

/// Connects to host:port: resolves it, then tries every address in turn
/// (IPv6 and IPv4 as the resolver orders them) before the deadline, each
/// with an equal share of the time left, so that one silent address does
/// not use up the whole timeout. TCP_NODELAY; keepalive if asked.
/// @throws IoError (refused, unreachable, unresolvable) or TimeoutError,
/// naming the endpoint.
inline Socket connect_tcp(const std::string& host, int port, const Deadline& deadline, bool keepalive) {
  const std::string where = host + ":" + std::to_string(port);
  const std::vector<ResolvedAddress> addresses = resolve(host, port, deadline);
  int last_error = 0;
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (deadline.passed()) {
      last_error = ETIMEDOUT;
      break;
    }
    Deadline share = deadline;
    const std::size_t left = addresses.size() - i;
    if (!deadline.is_none() && left > 1) {
      share = Deadline::at(SteadyClock::now() + (deadline.when() - SteadyClock::now()) / static_cast<int>(left));
    }
    const ResolvedAddress& a = addresses[i];
    int error = 0;
    Socket s = connect_address(reinterpret_cast<const sockaddr*>(&a.addr), a.len, a.family, share, error);
    if (s) {
      int yes = 1;
      ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      if (keepalive) enable_keepalive(s.fd());
      return s;
    }
    last_error = error;
  }
  if (last_error == ETIMEDOUT) throw TimeoutError("redkit: cannot connect to " + where + ": timed out (connect_timeout)");
  throw IoError("redkit: cannot connect to " + where + ": " + errno_text(last_error));
}

/// The longest unix socket path the kernel takes.
inline constexpr std::size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

/// Connects to a unix socket. @throws ConfigError for a path longer than
/// the kernel takes (it would be cut short and reach another socket),
/// IoError, TimeoutError.
inline Socket connect_unix(const std::string& path, const Deadline& deadline) {
  if (path.size() > kMaxUnixPath) {
    throw ConfigError("redkit: unix socket path is " + std::to_string(path.size()) + " bytes; the limit is " +
                      std::to_string(kMaxUnixPath));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int error = 0;
  Socket s = connect_address(reinterpret_cast<const sockaddr*>(&addr), sizeof addr, AF_UNIX, deadline, error);
  if (s) return s;
  if (error == ETIMEDOUT) throw TimeoutError("redkit: cannot connect to unix:" + path + ": timed out (connect_timeout)");
  throw IoError("redkit: cannot connect to unix:" + path + ": " + errno_text(error));
}

}  // namespace redkit::detail
