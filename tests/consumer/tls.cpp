// Links only redkit::tls (or `pkg-config redkit-tls`): OpenSSL's headers,
// libssl and libcrypto must come with it, and <redkit/tls.hpp>. Built only
// where the tls component exists (programs.cmake, the pkg-config tests).
// Runs without a server.
#include <redkit/tls.hpp>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <iostream>

int main() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());  // libssl
  std::cout << "redkit::tls: " << OpenSSL_version(OPENSSL_VERSION) << '\n';  // libcrypto
  if (!ctx) return 1;
  SSL_CTX_free(ctx);
  return 0;
}
