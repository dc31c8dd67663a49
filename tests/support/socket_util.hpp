// Loopback socket helpers shared by the FaultProxy, the ScriptedServer and
// the connect tests (FullBacklog).
// Thread safety: free functions; safe from any thread. A FullBacklog belongs
// to one thread.
// Exceptions: listen_loopback and FullBacklog() throw std::runtime_error; the
// others do not.
#pragma once

#include <chrono>
#include <string>
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
