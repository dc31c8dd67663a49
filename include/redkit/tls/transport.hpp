// TlsTransport: a detail::Transport that speaks TLS (OpenSSL 3) over the
// socket a Connection connected, as steps that never block: handshake,
// read and write each say what they wait for (SSL_ERROR_WANT_READ/WRITE).
// Part of <redkit/tls.hpp>.
//
// Writes: a Connection hands over iovecs (large values where they lie).
// Small pieces are gathered into one record of up to 16 KiB instead of a
// record each; a piece of 16 KiB or more is encrypted straight from the
// caller's memory, so a large value is never copied whole.
//
// Thread safety: a transport belongs to one connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "redkit/detail/socket.hpp"
#include "redkit/detail/transport.hpp"
#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/tls/context.hpp"
#include "redkit/tls/errors.hpp"
#include "redkit/tls/socket_bio.hpp"

namespace redkit::detail {

/// True for "127.0.0.1" or "::1", false for a host name.
inline bool is_ip_literal(const std::string& host) noexcept {
  in_addr v4{};
  in6_addr v6{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

struct SslFree {
  void operator()(SSL* s) const noexcept { SSL_free(s); }
};

class TlsTransport final : public Transport {
 public:
  /// The largest plaintext of one TLS record.
  static constexpr std::size_t kRecord = 16 * 1024;

  /// Sets up TLS over a connected socket; handshake() then runs it. The
  /// name checked in the certificate and sent as SNI is tls.server_name,
  /// else host; an IP address is checked against the certificate's IP
  /// entries and sent without SNI (RFC 6066 allows names only).
  /// @throws IoError when OpenSSL cannot allocate the connection.
  TlsTransport(Socket socket, SslCtxPtr ctx, const TlsOptions& tls, const std::string& host, std::string endpoint)
      : Transport(std::move(socket), std::move(endpoint)),
        checked_name_(tls.server_name.empty() ? host : tls.server_name),
        verify_(tls.verify),
        have_ca_(!tls.ca_file.empty() || !tls.ca_dir.empty()) {
    bio_.fd = fd();
    ERR_clear_error();
    ssl_.reset(SSL_new(ctx.get()));  // holds its own reference to the context
    BIO* bio = ssl_ ? new_socket_bio(&bio_) : nullptr;
    if (!bio) throw IoError("redkit: TLS setup for " + endpoint_ + " failed: " + take_openssl_errors().text);
    SSL_set_bio(ssl_.get(), bio, bio);
    const bool ip = is_ip_literal(checked_name_);
    bool ok = ip || SSL_set_tlsext_host_name(ssl_.get(), checked_name_.c_str()) == 1;
    if (ok && verify_) {
      if (ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), checked_name_.c_str()) == 1;
      } else {
        SSL_set_hostflags(ssl_.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(ssl_.get(), checked_name_.c_str()) == 1;
      }
    }
    if (!ok) {
      throw IoError("redkit: TLS setup for " + endpoint_ + " failed: cannot check the name '" + checked_name_ +
                    "': " + take_openssl_errors().text);
    }
    SSL_set_connect_state(ssl_.get());
  }

  ~TlsTransport() override {
    // A close_notify when the session is sound. Never in a fork child: the
    // descriptor is closed there and its number may belong to another file.
    if (established_ && !fatal_ && pending_size_ == 0 && ours()) {
      ERR_clear_error();
      (void)SSL_shutdown(ssl_.get());  // sends ours, does not wait for the server's
      ERR_clear_error();
    }
  }

  /// One step of the TLS handshake (SSL_connect), certificate and name
  /// checks included. @throws IoError (ClosedError on a reset) whose
  /// message says what failed: "certificate verify failed: certificate
  /// has expired", "... hostname mismatch", "wrong version number (the
  /// server did not answer in TLS ...)".
  Want handshake() override {
    if (established_) return Want::Nothing;
    start_step();
    const int r = SSL_connect(ssl_.get());
    if (r == 1) {
      established_ = true;
      return Want::Nothing;
    }
    const int e = SSL_get_error(ssl_.get(), r);
    if (e == SSL_ERROR_WANT_READ) return Want::Read;
    if (e == SSL_ERROR_WANT_WRITE) return Want::Write;
    fatal_ = true;
    throw_failure("TLS handshake with " + endpoint_ + " failed: ", e);
  }

  IoResult read(char* buf, std::size_t n) override { return receive(buf, n, false); }
  IoResult read_waiting(char* buf, std::size_t n) override { return receive(buf, n, true); }

  IoResult write(const iovec* iov, int count) override {
    const char* data = pending_data_;
    std::size_t size = pending_size_;
    if (size == 0) {
      // Not a retry: choose what this record holds.
      if (count > 0 && iov[0].iov_len >= kRecord) {
        data = static_cast<const char*>(iov[0].iov_base);
        size = std::min<std::size_t>(iov[0].iov_len, kMaxWrite);
      } else {
        for (int i = 0; i < count && size < kRecord; ++i) {
          const std::size_t take = std::min(iov[i].iov_len, kRecord - size);
          std::memcpy(gather_ + size, iov[i].iov_base, take);
          size += take;
        }
        data = gather_;
      }
      if (size == 0) return IoResult{};
    }
    start_step();
    std::size_t written = 0;
    const int r = SSL_write_ex(ssl_.get(), data, size, &written);
    if (r == 1) {
      pending_size_ = 0;
      return IoResult{written, Want::Nothing, false};
    }
    const int e = SSL_get_error(ssl_.get(), r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      // OpenSSL wants the same bytes again: the caller has not moved on,
      // so the front of its iovecs is still exactly this.
      pending_data_ = data;
      pending_size_ = size;
      return IoResult{0, e == SSL_ERROR_WANT_WRITE ? Want::Write : Want::Read, false};
    }
    fatal_ = true;
    if (!received_) throw_refusal();
    throw_failure("write to " + endpoint_ + " failed: ", e);
  }

  /// True when OpenSSL holds bytes the socket no longer shows: a decrypted
  /// record not read out yet, or received bytes not yet decrypted (read-ahead).
  bool buffered() const noexcept override { return SSL_has_pending(ssl_.get()) == 1; }
  bool secure() const noexcept override { return true; }

 private:
  // SSL_write_ex takes a size_t, but a step needs no more than this.
  static constexpr std::size_t kMaxWrite = std::size_t{1} << 30;

  // OpenSSL reads SSL_get_error against this thread's error queue, which
  // must be empty before a step. It almost always is (a failed step drains
  // it), and ERR_peek_error costs a fraction of ERR_clear_error's clearing
  // of every slot (~900 instructions on OpenSSL 3.0, twice per command).
  void start_step() noexcept {
    if (ERR_peek_error() != 0) ERR_clear_error();
    bio_.error = 0;
  }

  IoResult receive(char* buf, std::size_t n, bool may_block) {
    start_step();
    bio_.block_next_read = may_block;
    std::size_t got = 0;
    const int r = SSL_read_ex(ssl_.get(), buf, n, &got);
    bio_.block_next_read = false;
    if (r == 1) {
      received_ = true;
      return IoResult{got, Want::Nothing, false};
    }
    const int e = SSL_get_error(ssl_.get(), r);
    switch (e) {
      case SSL_ERROR_WANT_READ: return IoResult{0, Want::Read, false};
      case SSL_ERROR_WANT_WRITE: return IoResult{0, Want::Write, false};
      // close_notify, or EOF without it (SSL_OP_IGNORE_UNEXPECTED_EOF).
      case SSL_ERROR_ZERO_RETURN: return IoResult{0, Want::Nothing, true};
      default: break;
    }
    fatal_ = true;
    if (e == SSL_ERROR_SYSCALL && bio_.error == 0 && bio_.eof) return IoResult{0, Want::Nothing, true};
    // In TLS 1.3 the server judges the client's certificate after the
    // client finished its handshake: a refusal arrives as the first read.
    throw_failure(std::string(received_ ? "read from " : "TLS session with ") + endpoint_ +
                      (received_ ? " failed: " : " refused by the server: "),
                  e);
  }

  // A write failed before any reply came: a TLS 1.3 server that refused
  // the client's certificate sent an alert and closed, and the alert is
  // the reason worth telling. Reads it if it is there (without waiting).
  void throw_refusal() {
    ERR_clear_error();
    char scratch[64];
    std::size_t got = 0;
    if (SSL_read_ex(ssl_.get(), scratch, sizeof scratch, &got) == 1) return;
    const OpenSslErrors errors = take_openssl_errors();
    if (errors.ssl_reason == 0) return;
    const std::string hint = tls_reason_hint(errors.ssl_reason);
    throw IoError("redkit: TLS session with " + endpoint_ + " refused by the server: " + errors.text +
                  (hint.empty() ? "" : " (" + hint + ")"));
  }

  // Throws the error for a failed step: the certificate check's verdict,
  // else OpenSSL's reasons with a hint, else the socket's errno.
  [[noreturn]] void throw_failure(const std::string& prefix, int ssl_error) {
    const OpenSslErrors errors = take_openssl_errors();
    const long verdict = SSL_get_verify_result(ssl_.get());
    if (verify_ && !established_ && verdict != X509_V_OK) {
      throw IoError("redkit: " + prefix + "certificate verify failed: " +
                    verify_failure_text(verdict, checked_name_, have_ca_));
    }
    if (!errors.text.empty()) {
      const std::string hint = tls_reason_hint(errors.ssl_reason);
      throw IoError("redkit: " + prefix + errors.text + (hint.empty() ? "" : " (" + hint + ")"));
    }
    if (bio_.error != 0) {
      const std::string msg = "redkit: " + prefix + errno_text(bio_.error);
      if (bio_.error == ECONNRESET || bio_.error == EPIPE) throw ClosedError(msg);
      throw IoError(msg);
    }
    if (bio_.eof) {
      throw ClosedError("redkit: " + prefix + "the server closed the connection" +
                        (established_ ? std::string()
                                      : " (is this a TLS port? does the server require a client certificate?)"));
    }
    throw IoError("redkit: " + prefix + "OpenSSL error " + std::to_string(ssl_error));
  }

  std::unique_ptr<SSL, SslFree> ssl_;
  SocketBioState bio_;
  std::string checked_name_;
  bool verify_ = true;
  bool have_ca_ = false;
  bool established_ = false;  // the handshake finished
  bool fatal_ = false;        // OpenSSL failed: no SSL_shutdown (OpenSSL forbids it)
  bool received_ = false;     // application data arrived
  const char* pending_data_ = nullptr;  // a write OpenSSL wants repeated
  std::size_t pending_size_ = 0;
  char gather_[kRecord];
};

/// The detail::TlsFactory that <redkit/tls.hpp> registers.
inline std::unique_ptr<Transport> make_tls_transport(Socket socket, const TlsOptions& tls, const std::string& host,
                                                     const std::string& endpoint) {
  SslCtxPtr ctx = TlsContexts::instance().get(tls);
  return std::make_unique<TlsTransport>(std::move(socket), std::move(ctx), tls, host, endpoint);
}

/// The detail::TlsCheck that <redkit/tls.hpp> registers: reads the files
/// now, so a client is refused when it is built rather than at its first
/// connection. @throws ConfigError.
inline void check_tls_options(const TlsOptions& tls) {
  if (tls.server_name.find('\0') != std::string::npos || tls.server_name.size() > 253) {
    throw ConfigError("redkit: TlsOptions::server_name is not a host name");
  }
  (void)TlsContexts::instance().get(tls);
}

}  // namespace redkit::detail
