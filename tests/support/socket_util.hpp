// Loopback socket helpers shared by the FaultProxy and the ScriptedServer.
// Thread safety: free functions; safe from any thread.
// Exceptions: listen_loopback throws std::runtime_error; the others do not.
#pragma once

#include <chrono>
#include <string>

namespace redkit::test {

/// A non-blocking listening socket on 127.0.0.1 on a port the kernel picks
/// (stored in *port). @throws std::runtime_error.
int listen_loopback(int* port, int backlog = 64);

/// A non-blocking socket connected to host:port (a numeric loopback
/// address), or -1 when the connect fails or takes longer than timeout.
int connect_loopback(const std::string& host, int port, std::chrono::milliseconds timeout);

/// Closes fd with SO_LINGER 0, so the peer sees a reset (RST), not an EOF.
void reset_socket(int fd);

}  // namespace redkit::test
