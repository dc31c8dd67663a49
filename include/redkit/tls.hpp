/// @file tls.hpp
/// TLS for every redkit client (Redis, sentinel-mode Redis, Cluster), over
/// OpenSSL 3. Opt-in: include this header in one source file of the program
/// and link the CMake target redkit::tls (or pkg-config redkit-tls), which
/// brings OpenSSL::SSL and OpenSSL::Crypto. A program that does not include
/// it does not link OpenSSL, and refuses TLS options with a ConfigError.
///
/// Turning it on: a `rediss://` (or `rediss-sentinel://`) URI, or
/// Options::tls.enabled = true; see TlsOptions for the CA, client
/// certificate, server name and verify settings.
///
/// What is checked by default: the server's certificate chain against
/// TlsOptions::ca_file / ca_dir, or the system store when neither is given,
/// and that the certificate names the host connected to (DNS name, or IP
/// address for an address literal; TlsOptions::server_name replaces it).
/// SNI carries the same name (never an IP address). TLS 1.2 or 1.3.
///
/// Registration: including this header registers TLS before main() runs
/// (an inline variable whose initializer calls enable_tls()), once per
/// program however many files include it. If the only file that includes
/// it sits in a static library and nothing else of that file is used, the
/// linker leaves it out: then call redkit::enable_tls() from code that runs.
///
/// Exceptions: ConfigError when a client is built with a CA, certificate or
/// key file that cannot be read or used (named in the message), a
/// certificate without its key or the reverse, or a key that does not
/// match its certificate. IoError from connecting when the handshake fails
/// ("certificate verify failed: certificate has expired", "... unable to
/// get local issuer certificate", "... hostname mismatch", "... wrong
/// version number (the server did not answer in TLS ...)"), TimeoutError
/// when it does not end within Options::connect_timeout. In TLS 1.3 a
/// server refuses a missing or unknown client certificate after the
/// client's side of the handshake: that IoError ("TLS session with ...
/// refused by the server: tlsv13 alert certificate required") comes from
/// the first reply instead. Messages name the endpoint, never a password.
///
/// Thread safety: as the clients. The SSL_CTX of one set of TlsOptions is
/// shared by every connection of the process (see tls/context.hpp).
///
/// fork(): a child opens its own TLS connections; the parent's sessions
/// are never used, shut down or written to by the child.
#pragma once

#include "redkit/detail/transport.hpp"
#include "redkit/tls/context.hpp"
#include "redkit/tls/transport.hpp"

namespace redkit {

/// Registers the TLS transport and option check for the whole program.
/// Including this header calls it; call it yourself only when the file
/// that includes it might be left out by the linker (see the file comment).
/// Thread-safe; idempotent.
inline void enable_tls() noexcept {
  detail::tls_check().store(&detail::check_tls_options);
  detail::tls_factory().store(&detail::make_tls_transport);
}

namespace detail {

/// Initialised (once per program, before main) by calling enable_tls().
inline const bool tls_registered = (enable_tls(), true);

}  // namespace detail

}  // namespace redkit
