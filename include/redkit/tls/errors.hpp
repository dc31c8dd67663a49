// TLS failures in words a user understands: OpenSSL's error queue and the
// certificate verification result, each with a hint at the option that
// fixes it. Part of <redkit/tls.hpp>.
// Thread safety: OpenSSL's error queue is per thread; these functions read
// and clear the calling thread's.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <string>

namespace redkit::detail {

/// What OpenSSL queued on this thread: the reasons joined by "; " (oldest
/// first, at most four), and the SSL-library reason code of the last one
/// (0 if none). The queue is cleared.
struct OpenSslErrors {
  std::string text;
  int ssl_reason = 0;
};

inline OpenSslErrors take_openssl_errors() {
  OpenSslErrors out;
  int shown = 0;
  for (unsigned long e; (e = ERR_get_error()) != 0;) {
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) out.ssl_reason = ERR_GET_REASON(e);
    if (shown++ >= 4) continue;
    const char* reason = ERR_reason_error_string(e);
    std::string text;
    if (reason) {
      text = reason;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      text = buf;
    }
    if (!out.text.empty()) out.text += "; ";
    out.text += text;
  }
  return out;
}

/// What to do about a failure with this SSL reason code, or "" when there
/// is nothing to add.
inline const char* tls_reason_hint(int ssl_reason) {
  switch (ssl_reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
      return "the server did not answer in TLS: is this a plain-text port? (use redis:// for it)";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return "the server requires a client certificate: set TlsOptions::cert_file and key_file "
             "(URI tls_cert_file, tls_key_file)";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      return "the server refused the client certificate (TlsOptions::cert_file): is it valid and "
             "signed by a CA the server trusts?";
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return "the server refused the handshake: no protocol version or cipher both accept, or it "
             "requires a client certificate (TlsOptions::cert_file, key_file)";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      return "no TLS version both sides accept (redkit speaks TLS 1.2 and 1.3)";
    default:
      return "";
  }
}

/// The reason a certificate check failed (SSL_get_verify_result), in
/// OpenSSL's words ("certificate has expired", "hostname mismatch"), with
/// what to change.
inline std::string verify_failure_text(long result, const std::string& checked_name, bool have_ca) {
  std::string text = X509_verify_cert_error_string(result);
  switch (result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      text += have_ca ? " (the server's certificate is not signed by a CA in TlsOptions::ca_file / ca_dir)"
                      : " (the server's certificate is not signed by a CA of the system store: set "
                        "TlsOptions::ca_file, URI tls_ca_file, to the CA that signed it)";
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      text += " (the server's certificate is past its end date: renew it, or check this machine's clock)";
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      text += " (the server's certificate starts later: check this machine's clock)";
      break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      text += " (the server's certificate does not name '" + checked_name +
              "': connect by a name it carries, or set TlsOptions::server_name, URI tls_server_name)";
      break;
    default:
      break;
  }
  return text;
}

}  // namespace redkit::detail
