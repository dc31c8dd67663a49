// The BIO under redkit's TLS connections: send() and recv() on the socket
// the connection owns, never blocking (MSG_DONTWAIT) and never raising
// SIGPIPE (MSG_NOSIGNAL), whatever the socket's mode. Part of
// <redkit/tls.hpp>.
//
// Why a BIO of our own: OpenSSL's socket BIO uses read()/write(), which
// block on the blocking socket a Connection reads from and raise SIGPIPE
// on a closed peer. A memory-BIO pair would cost a copy of every encrypted
// byte and a pump loop; this one moves bytes straight between OpenSSL's
// buffers and the kernel, one syscall per step. It also lets the first read
// of a reply block in the kernel for at most the socket's receive timeout
// (block_next_read), as PlainTransport::read_waiting does.
//
// Thread safety: a BIO belongs to one connection.
#pragma once

#include <openssl/bio.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>

namespace redkit::detail {

/// The state one socket BIO works on (BIO_get_data).
struct SocketBioState {
  int fd = -1;
  bool block_next_read = false;  ///< the next recv may block (for the receive timeout)
  bool eof = false;              ///< recv returned 0
  int error = 0;                 ///< errno of the last failed send/recv, 0 if none
};

inline int socket_bio_write(BIO* b, const char* buf, int len) {
  auto* s = static_cast<SocketBioState*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  for (;;) {
    const ssize_t w = ::send(s->fd, buf, static_cast<std::size_t>(len), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w >= 0) return static_cast<int>(w);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_write(b);
    } else {
      s->error = errno;
    }
    return -1;
  }
}

inline int socket_bio_read(BIO* b, char* buf, int len) {
  auto* s = static_cast<SocketBioState*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  const int flags = s->block_next_read ? 0 : MSG_DONTWAIT;
  s->block_next_read = false;  // once per step: a second recv would restart the timeout
  const ssize_t r = ::recv(s->fd, buf, static_cast<std::size_t>(len), flags);
  if (r > 0) return static_cast<int>(r);
  if (r == 0) {
    s->eof = true;
    return 0;
  }
  // EINTR too: the caller waits with poll() for the time that is left.
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_read(b);
  } else {
    s->error = errno;
  }
  return -1;
}

inline long socket_bio_ctrl(BIO* b, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;  // nothing is buffered here
    case BIO_CTRL_EOF: return static_cast<SocketBioState*>(BIO_get_data(b))->eof ? 1 : 0;
    default: return 0;
  }
}

inline int socket_bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

/// The method table, made once per process and never freed.
inline BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "redkit socket");
    if (m) {
      BIO_meth_set_write(m, &socket_bio_write);
      BIO_meth_set_read(m, &socket_bio_read);
      BIO_meth_set_ctrl(m, &socket_bio_ctrl);
      BIO_meth_set_create(m, &socket_bio_create);
    }
    return m;
  }();
  return method;
}

/// A new BIO over state (which must outlive it), or null when OpenSSL is
/// out of memory.
inline BIO* new_socket_bio(SocketBioState* state) {
  BIO_METHOD* m = socket_bio_method();
  if (!m) return nullptr;
  BIO* b = BIO_new(m);
  if (b) BIO_set_data(b, state);
  return b;
}

}  // namespace redkit::detail
