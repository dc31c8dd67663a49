// The SSL_CTX for a set of TlsOptions: built from the CA, certificate and
// key files, checked (ConfigError names the option and the file), cached
// and shared by every connection with the same options. Part of
// <redkit/tls.hpp>.
//
// Files are read when the first client with these options is built, and
// again when a connection is opened after one of them changed on disk
// (device, inode, size or modification time): a renewed client certificate
// is picked up by the next connection, without a restart.
//
// Thread safety: TlsContexts is thread-safe and fork-safe (its mutex is
// held across fork(), so a child never finds it locked by a thread that
// does not exist there). A context is only read once built, which OpenSSL
// allows from any number of threads.
#pragma once

#include <fcntl.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/tls/errors.hpp"

namespace redkit::detail {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
/// One reference to an SSL_CTX.
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

/// What changes when a file is rewritten or replaced; all zero when it is
/// missing (or not named).
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  long long mtime_ns = 0;
  bool operator==(const FileStamp& o) const noexcept {
    return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns;
  }
  bool operator!=(const FileStamp& o) const noexcept { return !(*this == o); }
};

inline FileStamp file_stamp(const std::string& path) noexcept {
  FileStamp s;
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return s;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return s;
}

/// @throws ConfigError unless path names a file this process can read.
inline void check_readable_file(const std::string& path, const char* option) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw ConfigError(std::string("redkit: cannot read TlsOptions::") + option + " '" + path +
                      "': " + std::strerror(errno));
  }
  struct stat st {};
  const bool dir = ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  ::close(fd);
  if (dir) {
    throw ConfigError(std::string("redkit: TlsOptions::") + option + " '" + path +
                      "' is a directory, not a PEM file");
  }
}

/// @throws ConfigError unless path names a directory this process can search.
inline void check_readable_dir(const std::string& path, const char* option) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || ::access(path.c_str(), R_OK | X_OK) != 0) {
    throw ConfigError(std::string("redkit: cannot read TlsOptions::") + option + " '" + path +
                      "': " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    throw ConfigError(std::string("redkit: TlsOptions::") + option + " '" + path + "' is not a directory");
  }
}

// A key file that asks for a passphrase is refused rather than prompting on
// the terminal (OpenSSL's default), which would block the program.
inline int refuse_passphrase(char*, int, int, void*) { return 0; }

/// Builds a client SSL_CTX for o: TLS 1.2 or later; peer verification
/// (SSL_VERIFY_PEER) unless o.verify is false, against o.ca_file / o.ca_dir
/// or else the system store; the client certificate and key for mutual
/// TLS. @throws ConfigError naming the option and file that cannot be used.
inline SslCtxPtr build_tls_context(const TlsOptions& o) {
  if (!o.cert_file.empty() && o.key_file.empty()) {
    throw ConfigError("redkit: TlsOptions::cert_file is set without key_file");
  }
  if (o.cert_file.empty() && !o.key_file.empty()) {
    throw ConfigError("redkit: TlsOptions::key_file is set without cert_file");
  }
  auto fail = [](const std::string& what) -> ConfigError {
    const OpenSslErrors e = take_openssl_errors();
    return ConfigError("redkit: " + what + (e.text.empty() ? std::string() : ": " + e.text));
  };
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw fail("cannot create a TLS context");
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             // EOF without close_notify reads as a close (Redis closes
                             // that way); RESP frames its own replies, so a cut is seen.
                             SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Partial writes: SSL_write returns once a record is out, which is what a
  // write step reports; the retry after WANT_WRITE may pass a moved buffer.
  SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read as much as the socket holds in one recv, not a record header first.
  SSL_CTX_set_read_ahead(c, 1);
  SSL_CTX_set_default_passwd_cb(c, &refuse_passphrase);
  SSL_CTX_set_verify(c, o.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);

  if (!o.ca_file.empty() || !o.ca_dir.empty()) {
    if (!o.ca_file.empty()) check_readable_file(o.ca_file, "ca_file");
    if (!o.ca_dir.empty()) check_readable_dir(o.ca_dir, "ca_dir");
    if (SSL_CTX_load_verify_locations(c, o.ca_file.empty() ? nullptr : o.ca_file.c_str(),
                                      o.ca_dir.empty() ? nullptr : o.ca_dir.c_str()) != 1) {
      throw fail(o.ca_file.empty() ? "cannot use TlsOptions::ca_dir '" + o.ca_dir + "'"
                                   : "TlsOptions::ca_file '" + o.ca_file + "' holds no usable CA certificate");
    }
  } else if (o.verify && SSL_CTX_set_default_verify_paths(c) != 1) {
    throw fail("cannot load the system's CA certificates");
  }

  if (!o.cert_file.empty()) {
    check_readable_file(o.cert_file, "cert_file");
    check_readable_file(o.key_file, "key_file");
    if (SSL_CTX_use_certificate_chain_file(c, o.cert_file.c_str()) != 1) {
      throw fail("TlsOptions::cert_file '" + o.cert_file + "' holds no usable PEM certificate");
    }
    if (SSL_CTX_use_PrivateKey_file(c, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      const OpenSslErrors e = take_openssl_errors();
      if (e.text.find("mismatch") != std::string::npos) {
        throw ConfigError("redkit: TlsOptions::key_file '" + o.key_file + "' does not match cert_file '" +
                          o.cert_file + "' (" + e.text + ")");
      }
      const bool asks_password = e.text.find("password") != std::string::npos ||
                                 e.text.find("decrypt") != std::string::npos;
      throw ConfigError("redkit: TlsOptions::key_file '" + o.key_file + "' holds no usable PEM private key" +
                        (e.text.empty() ? std::string() : ": " + e.text) +
                        (asks_password ? " (it is encrypted: redkit reads unencrypted keys only)" : ""));
    }
    if (SSL_CTX_check_private_key(c) != 1) {
      throw fail("TlsOptions::key_file '" + o.key_file + "' does not match cert_file '" + o.cert_file + "'");
    }
  }
  return ctx;
}

/// The process-wide cache of client contexts, one per distinct (ca_file,
/// ca_dir, cert_file, key_file, verify).
class TlsContexts {
 public:
  static TlsContexts& instance() {
    // Never destroyed: connections may close during static destruction.
    static TlsContexts* contexts = [] {
      auto* c = new TlsContexts();
      ::pthread_atfork(&prepare, &after_fork, &after_fork);
      return c;
    }();
    return *contexts;
  }

  /// A reference to the context for o (the caller owns it): built on first
  /// use, rebuilt when one of its files changed since.
  /// @throws ConfigError as build_tls_context.
  SslCtxPtr get(const TlsOptions& o) {
    Key key{o.ca_file, o.ca_dir, o.cert_file, o.key_file, o.verify};
    const Stamps now{file_stamp(o.ca_file), file_stamp(o.ca_dir), file_stamp(o.cert_file), file_stamp(o.key_file)};
    std::lock_guard<std::mutex> lk(m_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.stamps != now) {
      // Built under the lock: many threads connecting at once read the files once.
      Entry fresh{build_tls_context(o), now};
      it = entries_.insert_or_assign(std::move(key), std::move(fresh)).first;
    }
    SSL_CTX_up_ref(it->second.ctx.get());
    return SslCtxPtr(it->second.ctx.get());
  }

 private:
  using Key = std::tuple<std::string, std::string, std::string, std::string, bool>;
  struct Stamps {
    FileStamp ca_file, ca_dir, cert_file, key_file;
    bool operator!=(const Stamps& o) const noexcept {
      return ca_file != o.ca_file || ca_dir != o.ca_dir || cert_file != o.cert_file || key_file != o.key_file;
    }
  };
  struct Entry {
    SslCtxPtr ctx;
    Stamps stamps;
  };

  TlsContexts() = default;
  static void prepare() { instance().m_.lock(); }
  static void after_fork() { instance().m_.unlock(); }

  std::mutex m_;
  std::map<Key, Entry> entries_;
};

}  // namespace redkit::detail
