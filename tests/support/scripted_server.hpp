// A loopback TCP server that plays a script: for faults only a broken or
// hostile server produces (bytes that are not RESP, a reply cut short, a
// reply sent one byte at a time, a huge array header and then silence, a
// close in the middle). Not a Redis: it understands nothing but where a
// command ends.
//
//     redkit::test::ScriptedServer server(
//         redkit::test::ServerScript().read_command().send("*500000000\r\n"));
//     redkit::Redis redis(redkit::Options::from_uri(server.uri()));
//     EXPECT_THROW(redis.command({"PING"}), redkit::ProtocolError);
//
// Every accepted connection plays a script from its first step (with a
// list of scripts, connection i plays script i, the last one for the rest).
// When its steps run out the connection stays open and silent (what the
// client sends is read and dropped) until the client closes it or the
// server stops.
//
// Thread safety: ServerScript is a plain value built before the server
// starts. ScriptedServer's members may be called from any thread while it
// runs. It runs one thread (a poll loop) for all its connections, at most
// kMaxConnections at a time (more are accepted and closed at once).
// Exceptions: the constructor throws std::runtime_error if it cannot listen
// or start its thread; nothing else throws.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace redkit::test {

/// What one connection of a ScriptedServer does, step by step.
class ServerScript {
 public:
  /// Waits until n more bytes have arrived from the client (and takes them).
  ServerScript& read_bytes(std::size_t n);
  /// Waits until count more whole RESP commands have arrived (and takes
  /// them). Expects to start at a command boundary.
  ServerScript& read_command(std::size_t count = 1);
  /// Writes bytes (all of them, as the socket allows).
  ServerScript& send(std::string bytes);
  /// Writes bytes one at a time, waiting gap before each byte after the
  /// first: "$3\r\nabc\r\n" at 250 ms is a reply that takes 2.25 s to arrive.
  ServerScript& dribble(std::string bytes, std::chrono::milliseconds gap);
  /// Waits d.
  ServerScript& pause(std::chrono::milliseconds d);
  /// Closes the connection (FIN, the client reads EOF). Ends the script.
  ServerScript& close();
  /// Resets the connection (RST). Ends the script.
  ServerScript& reset();

  struct Step {
    enum class Kind { ReadBytes, ReadCommand, Send, Pause, Close, Reset };
    Kind kind;
    std::string bytes;                 // Send
    std::size_t count = 0;             // ReadBytes, ReadCommand
    std::chrono::milliseconds time{0};  // Pause; the gap of a dribbled Send
  };
  const std::vector<Step>& steps() const noexcept { return steps_; }

 private:
  std::vector<Step> steps_;
};

class ScriptedServer {
 public:
  static constexpr std::size_t kMaxConnections = 64;

  /// Listens on 127.0.0.1 on a free port; every connection plays script.
  /// @throws std::runtime_error.
  explicit ScriptedServer(ServerScript script);
  /// Connection i plays scripts[i], or the last script when i is past the
  /// end. @throws std::runtime_error (also for an empty list).
  explicit ScriptedServer(std::vector<ServerScript> scripts);
  /// stop().
  ~ScriptedServer();
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  int port() const noexcept { return port_; }
  std::string host() const { return "127.0.0.1"; }
  /// "redis://127.0.0.1:PORT/0".
  std::string uri() const;

  /// Connections accepted so far.
  std::size_t accepted() const noexcept { return accepted_.load(); }
  /// Connections whose script ran to its end (including close/reset).
  std::size_t finished() const noexcept { return finished_.load(); }
  /// Connections the client closed (EOF or reset seen by the server).
  std::size_t client_closed() const noexcept { return client_closed_.load(); }
  /// Bytes received from all clients.
  std::size_t bytes_received() const noexcept { return received_.load(); }

  /// Stops the thread and closes every socket (idempotent).
  void stop();

 private:
  struct Engine;
  int port_ = 0;
  std::unique_ptr<Engine> engine_;
  std::atomic<std::size_t> accepted_{0}, finished_{0}, client_closed_{0}, received_{0};
};

}  // namespace redkit::test
