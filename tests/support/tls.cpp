#include "support/tls.hpp"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "support/nodes.hpp"

namespace redkit::test {
namespace {

// Extension sections for the certificates, and a minimal `openssl ca`
// set-up for the one with dates in the past. No system openssl.cnf is read.
std::string config_text(const std::string& dir) {
  return "[ req ]\n"
         "distinguished_name = dn\n"
         "prompt = no\n"
         "[ dn ]\n"
         "CN = unused\n"
         "[ ca_ext ]\n"
         "basicConstraints = critical,CA:TRUE\n"
         "keyUsage = critical,keyCertSign,cRLSign\n"
         "subjectKeyIdentifier = hash\n"
         // No extendedKeyUsage: redis-server presents its certificate as a
         // client too (replication, cluster bus, sentinels).
         "[ server_ext ]\n"
         "basicConstraints = CA:FALSE\n"
         "subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1\n"
         "[ wrong_host_ext ]\n"
         "basicConstraints = CA:FALSE\n"
         "subjectAltName = DNS:wrong.example\n"
         "[ client_ext ]\n"
         "basicConstraints = CA:FALSE\n"
         "extendedKeyUsage = clientAuth\n"
         "[ ca ]\n"
         "default_ca = test_ca\n"
         "[ test_ca ]\n"
         "database = " + dir + "/index.txt\n"
         "new_certs_dir = " + dir + "/newcerts\n"
         "serial = " + dir + "/serial\n"
         "default_md = sha256\n"
         "policy = policy_any\n"
         "unique_subject = no\n"
         "[ policy_any ]\n"
         "commonName = supplied\n";
}

}  // namespace

TestCertificates::TestCertificates() : dir_(make_temp_dir("certs")), owner_(::getpid()) {
  try {
    {
      std::ofstream(dir_ + "/openssl.cnf") << config_text(dir_);
      std::ofstream(dir_ + "/index.txt");
      std::ofstream(dir_ + "/serial") << "1000\n";
      std::filesystem::create_directory(dir_ + "/newcerts");
    }
    const std::string cnf = dir_ + "/openssl.cnf";
    for (const char* name : {"ca", "other-ca", "server", "client"}) make_key(name);
    for (const auto& [name, cn] : {std::pair<const char*, const char*>{"ca", "redkit test CA"},
                                   {"other-ca", "redkit other CA"}}) {
      openssl({"req", "-config", cnf, "-new", "-x509", "-key", dir_ + "/" + name + ".key", "-out",
               dir_ + "/" + name + ".crt", "-days", "2", "-subj", std::string("/CN=") + cn, "-extensions", "ca_ext"});
    }
    sign("server", "/CN=localhost", "server_ext", 1);
    sign("client", "/CN=redkit-client", "client_ext", 2);
    // The server's request again, for the wrong name.
    openssl({"x509", "-req", "-in", dir_ + "/server.csr", "-CA", ca_file(), "-CAkey", dir_ + "/ca.key",
             "-set_serial", "3", "-days", "2", "-extfile", cnf, "-extensions", "wrong_host_ext", "-out",
             wrong_host_cert()});
    // openssl x509 cannot date a certificate in the past; openssl ca can.
    openssl({"ca", "-batch", "-config", cnf, "-cert", ca_file(), "-keyfile", dir_ + "/ca.key", "-in",
             dir_ + "/server.csr", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-notext",
             "-extensions", "server_ext", "-out", expired_cert()});
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

TestCertificates::~TestCertificates() {
  if (::getpid() != owner_) return;  // a fork of the test: not ours to delete
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void TestCertificates::openssl(const std::vector<std::string>& args) const {
  // Through sh, only to gather openssl's stderr with its stdout.
  std::vector<std::string> argv = {"-c", "exec openssl \"$@\" 2>&1", "openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p("/bin/sh", argv);
  const int rc = p.wait(std::chrono::seconds(30));
  if (rc != 0) {
    throw std::runtime_error("TestCertificates: openssl " + (args.empty() ? "" : args[0]) + " exited with " +
                             std::to_string(rc) + ":\n" + p.output());
  }
}

void TestCertificates::make_key(const std::string& name) const {
  openssl({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", dir_ + "/" + name + ".key"});
}

void TestCertificates::sign(const std::string& name, const std::string& subject, const std::string& extensions,
                            int serial) const {
  const std::string base = dir_ + "/" + name;
  openssl({"req", "-config", dir_ + "/openssl.cnf", "-new", "-key", base + ".key", "-subj", subject, "-out",
           base + ".csr"});
  openssl({"x509", "-req", "-in", base + ".csr", "-CA", ca_file(), "-CAkey", dir_ + "/ca.key", "-set_serial",
           std::to_string(serial), "-days", "2", "-extfile", dir_ + "/openssl.cnf", "-extensions", extensions,
           "-out", base + ".crt"});
}

ServerTls TestCertificates::server(const std::string& auth_clients, const std::string& cert) const {
  ServerTls t;
  t.cert_file = cert.empty() ? server_cert() : cert;
  t.key_file = server_key();
  t.ca_file = ca_file();
  t.auth_clients = auth_clients;
  return t;
}

TestCertificates& shared_certificates() {
  static TestCertificates certificates;
  return certificates;
}

RedisServer& shared_tls_server() {
  static RedisServer server([] {
    ServerOptions o;
    o.tls = shared_certificates().server();
    return o;
  }());
  return server;
}

SentinelSet& shared_tls_sentinel() {
  static SentinelSet set([] {
    SentinelOptions o;
    o.server.tls = shared_certificates().server();
    o.server.tls.replication = true;
    return o;
  }());
  return set;
}

RedisCluster& shared_tls_cluster() {
  static RedisCluster cluster([] {
    ClusterOptions o;
    o.server.tls = shared_certificates().server();
    o.server.tls.replication = true;
    o.server.tls.cluster = true;
    return o;
  }());
  return cluster;
}

}  // namespace redkit::test
