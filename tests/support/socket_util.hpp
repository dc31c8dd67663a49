// Loopback socket helpers shared by the FaultProxy, the ScriptedServer
// (LoopbackService: their listener, wake-up and thread) and the connect
// tests (FullBacklog).
// Thread safety: free functions; safe from any thread. A FullBacklog belongs
// to one thread; a LoopbackService's wake()/drain() are safe from any
// thread, the rest from its owner's.
// Exceptions: listen_loopback, LoopbackService() and FullBacklog() throw
// std::runtime_error; the others do not.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace redkit::test {

/// A non-blocking listening socket on 127.0.0.1 on a port the kernel picks
/// (stored in *port). @throws std::runtime_error.
int listen_loopback(int* port, int backlog = 64);

/// A non-blocking socket connected to host:port (a numeric loopback
/// address), or -1 when the connect fails or takes longer than timeout.
int connect_loopback(const std::string& host, int port, std::chrono::milliseconds timeout);

/// Closes fd with SO_LINGER 0, so the peer sees a reset (RST), not an EOF.
void reset_socket(int fd);

/// "redis://127.0.0.1:PORT/0".
std::string loopback_uri(int port);

/// What a loopback fixture serves from: a listening socket on 127.0.0.1 (a
/// port the kernel picks), an eventfd that wakes the serving thread's
/// poll(), and that thread.
class LoopbackService {
 public:
  /// Listens and makes the eventfd; who names the fixture in an error.
  /// @throws std::runtime_error.
  explicit LoopbackService(const std::string& who);
  /// Closes what stop() did not (stop() must have joined the thread).
  ~LoopbackService();
  LoopbackService(const LoopbackService&) = delete;
  LoopbackService& operator=(const LoopbackService&) = delete;

  /// Starts the thread running run(); on failure closes both sockets and
  /// rethrows.
  void start(std::function<void()> run);
  /// Stops (idempotent): request_stop() tells run() to return (the owner
  /// sets its flag under its own lock), then wakes the thread, joins it and
  /// closes both sockets.
  void stop(const std::function<void()>& request_stop);

  /// Makes wake_fd() readable, so the thread's poll() returns.
  void wake() const noexcept;
  /// Takes what wake() wrote, once poll() saw wake_fd() readable.
  void drain() const noexcept;

  int listen_fd() const noexcept { return listen_fd_; }
  int wake_fd() const noexcept { return wake_fd_; }
  int port() const noexcept { return port_; }

 private:
  void close_sockets() noexcept;

  int listen_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

/// A listener on 127.0.0.1 that never accepts, whose accept queue is full:
/// the kernel drops further SYNs, so a connect to port() hangs as to an
/// unreachable host. Built full: it connects to itself until a connect does
/// not complete within 100 ms (at most 4 tries; backlog 0 holds one).
/// @throws std::runtime_error when no connect completed at all.
class FullBacklog {
 public:
  FullBacklog();
  ~FullBacklog();
  FullBacklog(const FullBacklog&) = delete;
  FullBacklog& operator=(const FullBacklog&) = delete;
  int port() const noexcept { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

}  // namespace redkit::test
