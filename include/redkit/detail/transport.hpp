// The transport: bytes to and from one server, as steps over a socket that
// never block (each says what it waits for: readable or writable), so the
// blocking Connection and a later event loop can drive the same code.
// PlainTransport is TCP or unix; TLS is another Transport, in the opt-in
// <redkit/tls.hpp>, which registers its factory here when included.
// Thread safety: a transport belongs to one connection.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <string>

#include "redkit/detail/socket.hpp"
#include "redkit/error.hpp"
#include "redkit/options.hpp"

namespace redkit::detail {

/// What a step waits for before it can go on.
enum class Want { Nothing, Read, Write };

/// The outcome of one read or write step: bytes moved, or what to wait for,
/// or (read) the peer closed the connection.
struct IoResult {
  std::size_t bytes = 0;
  Want want = Want::Nothing;
  bool closed = false;
};

/// One connection's byte stream. Steps throw IoError (and subtypes) for
/// failures, with messages that name the endpoint.
class Transport {
 public:
  Transport(Socket socket, std::string endpoint) : socket_(std::move(socket)), endpoint_(std::move(endpoint)) {}
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  /// Continues the setup that follows the TCP connect (the TLS handshake):
  /// Nothing when done, else what to wait for before calling again.
  virtual Want handshake() { return Want::Nothing; }

  /// Reads up to n bytes without blocking.
  virtual IoResult read(char* buf, std::size_t n) = 0;

  /// Reads up to n bytes, blocking in the kernel for at most the socket's
  /// receive timeout (set_read_mode). Want::Read when that ran out or a
  /// signal came; the caller then waits with poll() for the time left. A
  /// transport that cannot block this way just reads.
  virtual IoResult read_waiting(char* buf, std::size_t n) { return read(buf, n); }

  /// Writes from the iovecs without blocking (MSG_NOSIGNAL: a closed peer is
  /// an IoError, never SIGPIPE).
  virtual IoResult write(const iovec* iov, int count) = 0;

  /// True when read() can return bytes the socket no longer shows as
  /// readable (TLS keeps decrypted records).
  virtual bool buffered() const noexcept { return false; }

  /// True for TLS.
  virtual bool secure() const noexcept { return false; }

  int fd() const noexcept { return socket_.fd(); }
  const std::string& endpoint() const noexcept { return endpoint_; }
  /// False in a forked child: the socket is the parent's.
  bool ours() const noexcept { return socket_.ours(); }

 protected:
  [[noreturn]] void fail(const std::string& what, int error) const {
    const std::string msg = "redkit: " + what + " " + endpoint_ + " failed: " + errno_text(error);
    // ClosedError is kept for an orderly close (EOF, see Connection::read);
    // a reset or a broken pipe is an IoError.
    if (error == ETIMEDOUT) throw TimeoutError(msg);
    throw IoError(msg);
  }

  Socket socket_;
  std::string endpoint_;
};

/// TCP or unix socket, no encryption.
class PlainTransport final : public Transport {
 public:
  using Transport::Transport;

  IoResult read(char* buf, std::size_t n) override { return receive(buf, n, MSG_DONTWAIT); }
  IoResult read_waiting(char* buf, std::size_t n) override { return receive(buf, n, 0); }

  IoResult write(const iovec* iov, int count) override {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(count);
    for (;;) {
      // One buffer (every command without a borrowed large argument): send(),
      // which skips sendmsg's copy and check of the message header.
      const ssize_t w = count == 1 ? ::send(fd(), iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT)
                                   : ::sendmsg(fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w >= 0) return IoResult{static_cast<std::size_t>(w), Want::Nothing, false};
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult{0, Want::Write, false};
      fail("write to", errno);
    }
  }

 private:
  IoResult receive(char* buf, std::size_t n, int flags) {
    const ssize_t r = ::recv(fd(), buf, n, flags);
    if (r > 0) return IoResult{static_cast<std::size_t>(r), Want::Nothing, false};
    if (r == 0) return IoResult{0, Want::Nothing, true};
    // EINTR too: the caller waits for the time that is left, so a signal
    // never restarts a full receive timeout.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return IoResult{0, Want::Read, false};
    fail("read from", errno);
  }
};

/// Makes the TLS transport over a connected socket: set by <redkit/tls.hpp>.
/// host is the name connected to (for SNI and the certificate check when
/// TlsOptions::server_name is empty).
using TlsFactory = std::unique_ptr<Transport> (*)(Socket socket, const TlsOptions& tls, const std::string& host,
                                                  const std::string& endpoint);

/// The registered TLS factory; null unless some translation unit of the
/// program includes <redkit/tls.hpp>.
inline std::atomic<TlsFactory>& tls_factory() noexcept {
  static std::atomic<TlsFactory> factory{nullptr};
  return factory;
}

/// Checks TLS options when a client is built (reads the CA, certificate
/// and key files): set by <redkit/tls.hpp>. @throws ConfigError.
using TlsCheck = void (*)(const TlsOptions& tls);

/// The registered TLS option check; null unless <redkit/tls.hpp> is in the
/// program.
inline std::atomic<TlsCheck>& tls_check() noexcept {
  static std::atomic<TlsCheck> check{nullptr};
  return check;
}

/// The ConfigError for TLS options in a program built without TLS.
inline ConfigError tls_not_built() {
  return ConfigError(
      "redkit: TLS is enabled (rediss:// or Options::tls) but this program does not include "
      "<redkit/tls.hpp>: include it in one source file and link the CMake target redkit::tls "
      "(pkg-config redkit-tls), which brings OpenSSL");
}

}  // namespace redkit::detail
