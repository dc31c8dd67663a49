// Test support for TLS: certificates made at test time with the `openssl`
// command into a temporary directory (no key is ever committed), and
// servers, a sentinel set and a cluster that speak TLS. The support library
// itself speaks no TLS (it does not include <redkit/tls.hpp>, so programs
// without TLS stay without it): every server keeps a plain port on
// 127.0.0.1 for the support's own checks, and clients under test use the
// TLS ports (ServerTls in server.hpp).
//
// Thread safety: as RedisServer. Exceptions: std::runtime_error when
// `openssl` fails (with its output) or a server does not start.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "support/cluster.hpp"
#include "support/sentinel.hpp"
#include "support/server.hpp"

namespace redkit::test {

/// A test CA and certificates it signed, in a fresh temporary directory
/// removed by the destructor. EC P-256 keys; valid for two days from now
/// unless said otherwise.
class TestCertificates {
 public:
  /// Makes every file below with the openssl command.
  TestCertificates();
  ~TestCertificates();
  TestCertificates(const TestCertificates&) = delete;
  TestCertificates& operator=(const TestCertificates&) = delete;

  const std::string& dir() const { return dir_; }
  /// The CA that signed every certificate below.
  std::string ca_file() const { return dir_ + "/ca.crt"; }
  /// Another CA, which signed nothing here: a client trusting only it
  /// meets an "unknown CA".
  std::string other_ca_file() const { return dir_ + "/other-ca.crt"; }
  /// Server certificate for DNS:localhost, IP:127.0.0.1 and IP:::1.
  std::string server_cert() const { return dir_ + "/server.crt"; }
  std::string server_key() const { return dir_ + "/server.key"; }
  /// Client certificate (CN redkit-client) for mutual TLS.
  std::string client_cert() const { return dir_ + "/client.crt"; }
  std::string client_key() const { return dir_ + "/client.key"; }
  /// The server's names and key, valid only in January 2020.
  std::string expired_cert() const { return dir_ + "/expired.crt"; }
  /// The server's key, for DNS:wrong.example only (no IP address).
  std::string wrong_host_cert() const { return dir_ + "/wrong-host.crt"; }

  /// Server TLS settings with the server certificate (or cert, with the
  /// server key) and this CA for client certificates.
  ServerTls server(const std::string& auth_clients = "optional", const std::string& cert = {}) const;

 private:
  void openssl(const std::vector<std::string>& args) const;
  void make_key(const std::string& name) const;
  void sign(const std::string& name, const std::string& subject, const std::string& extensions, int serial) const;

  std::string dir_;
  pid_t owner_ = -1;
};

/// The certificates of this process (made on first use).
TestCertificates& shared_certificates();

/// A server with a plain and a TLS port (client certificates optional),
/// started on first use. First call it from the main thread.
RedisServer& shared_tls_server();

/// A sentinel set whose master, replica and sentinels speak TLS (TLS
/// replication, sentinels with a tls-port), started on first use.
/// SentinelSet::tls_uri() is the client URI.
SentinelSet& shared_tls_sentinel();

/// A 3 + 3 cluster with tls-cluster and tls-replication, started on first
/// use. RedisCluster::tls_seed_uri() is the client URI.
RedisCluster& shared_tls_cluster();

}  // namespace redkit::test
