// A loopback TCP proxy in front of a real server (a redis-server the test
// support started), that injects the faults a healthy server never shows:
// delays, a lost reply, a connection reset at a chosen byte or right after
// a command reached the server, a stall, a black hole. Tests point a client
// at port() instead of the server's port and call the fault methods from
// the test thread while the client runs.
//
//     redkit::test::FaultProxy proxy(server.port());
//     redkit::Redis redis(redkit::Options::from_uri(proxy.uri()));
//     proxy.reset_after_next_command();           // the INCR runs, its reply never arrives
//     EXPECT_THROW(counter.incr(), redkit::IoError);
//
// Faults. Each call takes effect at once (the proxy thread is woken) and
// lasts until forward(). A *mode* (delay, stall, black_hole) replaces the
// mode before it; a *one-shot* (drop_next_reply, reset_after_bytes,
// reset_after_next_command) is armed until it fires once, on whichever
// connection gets there first, and stays armed across a mode change.
// "Command" and "reply" mean one whole RESP value (see resp_framer.hpp),
// counted on each connection from its first byte.
//
// Thread safety: every member may be called from any thread while the
// proxy runs; the counters are snapshots. The proxy runs one thread (a poll
// loop) for all its connections, at most kMaxConnections at a time (more
// are accepted and closed at once), and buffers at most about 1 MiB per
// direction per connection (it stops reading until the other side drains).
//
// Exceptions: the constructor throws std::runtime_error if it cannot listen
// or start its thread. No other member throws. An upstream that refuses the
// connection makes the proxy close the client's connection (as a reset).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace redkit::test {

/// The direction of bytes through a FaultProxy.
enum class Flow {
  ToServer,  ///< from the client to the upstream server (commands)
  ToClient,  ///< from the server back to the client (replies)
};

class FaultProxy {
 public:
  static constexpr std::size_t kMaxConnections = 64;

  /// Listens on 127.0.0.1 on a free port and forwards each connection to
  /// upstream_host:upstream_port (a loopback address). Starts forwarding at
  /// once. @throws std::runtime_error.
  explicit FaultProxy(int upstream_port, std::string upstream_host = "127.0.0.1");
  /// stop().
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const noexcept { return port_; }
  std::string host() const { return "127.0.0.1"; }
  /// "redis://127.0.0.1:PORT/0".
  std::string uri() const;

  // ---- faults -------------------------------------------------------------

  /// Back to plain forwarding: ends any mode and disarms every one-shot.
  /// Stalled bytes flow again. Connections black-holed so far stay so.
  void forward();
  /// Mode: every chunk read is written to the other side `d` after it
  /// arrived (both directions; order kept).
  void delay(std::chrono::milliseconds d);
  /// Mode: stop reading and writing on every connection; sockets stay open,
  /// so a client waits for its timeout. New connections are accepted and
  /// connected upstream, and stall too. forward() resumes where it stopped.
  void stall();
  /// Mode: connections accepted from now on are never connected upstream;
  /// what they send is read and discarded, nothing is ever sent back. Open
  /// connections: bytes either way are discarded from now on.
  void black_hole();
  /// One-shot: the next reply that starts after this call is read from the
  /// server and discarded; later replies flow (so the client, once it gives
  /// up waiting, would read the next reply as this one's: a client must
  /// drop a connection after a timeout).
  void drop_next_reply();
  /// One-shot: `n` more bytes in `flow` are forwarded, then both sockets of
  /// that connection are reset (RST). n = 0 resets at the next byte.
  void reset_after_bytes(Flow flow, std::size_t n);
  /// One-shot: the next command that ends after this call is forwarded to
  /// the server and the client's socket is reset as soon as it is written.
  /// The server's reply is awaited (up to 5 s) and discarded before the
  /// upstream socket is closed, so the command has surely run: the client
  /// sees a reset for a command that took effect.
  void reset_after_next_command();
  /// One-shot: reset_after_next_command() for the next command whose bytes
  /// contain every string of `parts` (other commands flow). Several may be
  /// armed at once; a command fires the first that it matches.
  void reset_after_command_containing(std::vector<std::string> parts);
  /// One-shot: the next command whose bytes contain every string of `parts`
  /// is forwarded, and every reply on its connection from then on is read
  /// from the server and discarded; the sockets stay open, so the client
  /// waits for its timeout.
  void mute_after_command_containing(std::vector<std::string> parts);
  /// Resets (RST) every open connection now, both sockets.
  void reset_all();

  // ---- what happened (snapshots, for wait_until) ---------------------------

  std::size_t accepted() const noexcept { return accepted_.load(); }
  std::size_t open_connections() const noexcept { return open_.load(); }
  /// Whole commands forwarded to the server, and whole replies to clients.
  std::size_t commands_forwarded() const noexcept { return commands_.load(); }
  std::size_t replies_forwarded() const noexcept { return replies_.load(); }
  std::size_t replies_dropped() const noexcept { return dropped_.load(); }
  /// One-shots of the *_command_containing kind that fired.
  std::size_t matched() const noexcept { return matched_.load(); }
  /// Connections reset by a fault (reset_after_*, reset_all, upstream refused).
  std::size_t resets() const noexcept { return resets_.load(); }
  std::uint64_t bytes_forwarded(Flow flow) const noexcept {
    return flow == Flow::ToServer ? bytes_up_.load() : bytes_down_.load();
  }

  /// Stops the thread and closes every socket (idempotent).
  void stop();

 private:
  struct Engine;  // the poll loop and its connections (fault_proxy.cpp)

  int port_ = 0;
  std::unique_ptr<Engine> engine_;
  std::atomic<std::size_t> accepted_{0}, open_{0}, commands_{0}, replies_{0}, dropped_{0}, resets_{0}, matched_{0};
  std::atomic<std::uint64_t> bytes_up_{0}, bytes_down_{0};
};

}  // namespace redkit::test
