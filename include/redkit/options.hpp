/// @file options.hpp
/// Connection options and URI parsing. Thread safety: plain value type.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "redkit/error.hpp"
#include "redkit/event.hpp"

namespace redkit {

/// TLS settings (Options::tls, or `rediss://`). Used only by a program that
/// includes <redkit/tls.hpp> and links redkit::tls (OpenSSL); without it a
/// client with TLS enabled is refused with a ConfigError that says so.
/// Peer verification and host-name checking are on by default.
struct TlsOptions {
  bool enabled = false;     ///< speak TLS to every server (and sentinel) of this client
  std::string ca_file;      ///< PEM file of trusted CAs; empty (and no ca_dir): the system store
  std::string ca_dir;       ///< directory of hashed CA certificates (c_rehash)
  std::string cert_file;    ///< client certificate (PEM) for mutual TLS
  std::string key_file;     ///< its private key (PEM); required with cert_file
  std::string server_name;  ///< SNI and the name checked in the certificate; empty: the host connected to
  bool verify = true;       ///< verify the server's certificate chain and name; false: encryption only
};

/// A TCP endpoint.
struct Endpoint {
  std::string host = "127.0.0.1";  ///< name or address (IPv6 without brackets)
  int port = 6379;                 ///< TCP port
};

/// How to reach and set up a Redis connection. Defaults suit a local server.
struct Options {
  std::string host = "127.0.0.1";  ///< TCP host (ignored when unix_socket is set)
  int port = 6379;                 ///< TCP port
  std::string unix_socket;         ///< path of a unix socket; non-empty selects it

  std::string username;  ///< ACL user (Redis 6+); empty: AUTH with password only
  std::string password;  ///< empty: no AUTH
  int db = 0;            ///< SELECTed after connect when non-zero
  std::string client_name;  ///< CLIENT SETNAME after connect when non-empty

  std::chrono::milliseconds connect_timeout{1000};  ///< TCP/unix connect
  std::chrono::milliseconds command_timeout{1000};  ///< each read/write; 0 = none
  bool keepalive = true;                            ///< TCP keepalive on the socket

  std::size_t pool_size = 4;                          ///< connections per Redis handle (per node on a Cluster)
  std::chrono::milliseconds pool_wait_timeout{1000};  ///< wait for a free connection (or lease)
  /// Dedicated connections (leases: lock and cache waiters, blocking
  /// commands) open at once, per server; the next lease waits up to
  /// pool_wait_timeout for one to come back.
  std::size_t dedicated_pool_size = 256;

  TlsOptions tls;  ///< TLS (needs <redkit/tls.hpp>); `rediss://` turns it on
  /// Connection and topology events (see event.hpp); empty: none. Called
  /// inline on the thread that hit the event; must be thread-safe and quick.
  EventHandler on_event;

  std::vector<Endpoint> sentinels;  ///< non-empty selects sentinel mode
  std::string master_name;          ///< the sentinel master name
  std::string sentinel_password;    ///< AUTH for the sentinels, if they need it

  /// Parses a URI:
  ///  - `redis://[user[:password]@]host[:port][/db][?option=value&...]`
  ///  - `rediss://...` the same over TLS (port 6379 unless given)
  ///  - `unix:///path/to/redis.sock[?db=N&password=...&username=...]`
  ///  - `redis-sentinel://[user[:password]@]h1:26379,h2:26379[/db]#master`
  ///  - `rediss-sentinel://...` the same with sentinels and master over TLS
  /// Everything before the last '@' is the user information, so a password
  /// may contain '/', '?', '#' or '&' unencoded. Query options: `db`,
  /// `username`, `password`, `client_name`, `connect_timeout`,
  /// `command_timeout` and `pool_wait_timeout` (milliseconds), `pool_size`,
  /// `dedicated_pool_size`, `keepalive` (0/1), `sentinel_password`, and for
  /// TLS `tls` (0/1), `tls_ca_file`, `tls_ca_dir`, `tls_cert_file`,
  /// `tls_key_file`, `tls_server_name`, `tls_verify` (0/1). User, password
  /// and path values are percent-decoded.
  /// @throws ConfigError naming the part that is wrong; it never quotes the
  /// user information or any part of a password option.
  static Options from_uri(std::string_view uri);
};

namespace detail {

inline std::string percent_decode(std::string_view s, std::string_view what) {
  auto hex = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw ConfigError("redkit: bad percent-encoding in URI " + std::string(what));
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      throw ConfigError("redkit: bad percent-encoding in URI " + std::string(what));
    }
    out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
    i += 2;
  }
  return out;
}

/// What a URI error may quote: text from the host part or the query, cut
/// to 40 bytes, or nothing when the URI carries credentials in its query
/// (any part of it may then be a piece of a password with a '&' in it).
struct UriQuote {
  bool allowed = true;
  std::string operator()(std::string_view s) const {
    if (!allowed) {
      return " (not quoted: the URI carries credentials; a '@', '/', '?', '#' or '&' inside a password is "
             "safest percent-encoded as %40 %2F %3F %23 %26)";
    }
    return " '" + std::string(s.substr(0, 40)) + (s.size() > 40 ? "...'" : "'");
  }
};

/// The query options from_uri knows.
inline constexpr std::string_view kUriOptions[] = {
    "db", "username", "password", "client_name", "connect_timeout", "command_timeout", "pool_size",
    "pool_wait_timeout", "dedicated_pool_size", "keepalive", "sentinel_password", "tls", "tls_ca_file",
    "tls_ca_dir", "tls_cert_file", "tls_key_file", "tls_server_name", "tls_verify"};

/// True if s starts with "<known option>=".
inline bool starts_with_uri_option(std::string_view s) noexcept {
  const auto eq = s.find('=');
  if (eq == std::string_view::npos) return false;
  for (std::string_view known : kUriOptions) {
    if (s.substr(0, eq) == known) return true;
  }
  return false;
}

inline long long parse_uri_number(std::string_view s, long long lo, long long hi, std::string_view what,
                                  const UriQuote& quote = {}) {
  bool ok = !s.empty() && s.size() <= 18;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') ok = false;
    if (ok) v = v * 10 + (c - '0');
  }
  if (!ok) throw ConfigError("redkit: bad " + std::string(what) + " in URI" + quote(s));
  if (v < lo || v > hi) {
    throw ConfigError("redkit: " + std::string(what) + " out of range in URI (" + std::to_string(lo) + ".." +
                      std::to_string(hi) + ")" + quote(s));
  }
  return v;
}

// host[:port], host may be [ipv6]. Never called with user information.
inline Endpoint parse_host_port(std::string_view s, int default_port, const UriQuote& quote) {
  Endpoint ep;
  ep.port = default_port;
  std::string_view host = s;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) throw ConfigError("redkit: unclosed '[' in URI host" + quote(s));
    host = s.substr(1, close - 1);
    auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw ConfigError("redkit: junk after ']' in URI host" + quote(s));
      port = rest.substr(1);
      if (port.empty()) throw ConfigError("redkit: empty port in URI" + quote(s));
    }
  } else if (auto colon = s.rfind(':'); colon != std::string_view::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (port.empty()) throw ConfigError("redkit: empty port in URI" + quote(s));
    if (host.find(':') != std::string_view::npos) {
      throw ConfigError("redkit: an IPv6 address in a URI needs brackets ([::1]:6379)" + quote(s));
    }
  }
  if (host.empty()) throw ConfigError("redkit: empty host in URI");
  ep.host = std::string(host);
  if (!port.empty()) ep.port = static_cast<int>(parse_uri_number(port, 1, 65535, "port", quote));
  return ep;
}

/// True if the query has a credential option (password, sentinel_password).
inline bool query_has_secret(std::string_view query) {
  for (std::string_view key : {"password=", "sentinel_password="}) {
    for (auto at = query.find(key); at != std::string_view::npos; at = query.find(key, at + 1)) {
      if (at == 0 || query[at - 1] == '&' || query[at - 1] == '?') return true;
    }
  }
  return false;
}

inline void apply_uri_query(Options& o, std::string_view query, const UriQuote& quote) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      throw ConfigError("redkit: URI option without '='" + quote(item));
    }
    auto key = item.substr(0, eq);
    auto val = item.substr(eq + 1);
    auto ms = [&](std::string_view what) {
      return std::chrono::milliseconds(parse_uri_number(val, 0, 86400000, what, quote));
    };
    auto flag = [&](std::string_view what) { return parse_uri_number(val, 0, 1, what, quote) != 0; };
    if (key == "db") {
      o.db = static_cast<int>(parse_uri_number(val, 0, 1 << 20, "db", quote));
    } else if (key == "password") {
      o.password = percent_decode(val, "password");
    } else if (key == "sentinel_password") {
      o.sentinel_password = percent_decode(val, "sentinel_password");
    } else if (key == "username") {
      o.username = percent_decode(val, "username");
    } else if (key == "client_name") {
      o.client_name = percent_decode(val, "client_name");
    } else if (key == "connect_timeout") {
      o.connect_timeout = ms("connect_timeout");
    } else if (key == "command_timeout") {
      o.command_timeout = ms("command_timeout");
    } else if (key == "pool_wait_timeout") {
      o.pool_wait_timeout = ms("pool_wait_timeout");
    } else if (key == "pool_size") {
      o.pool_size = static_cast<std::size_t>(parse_uri_number(val, 1, 4096, "pool_size", quote));
    } else if (key == "dedicated_pool_size") {
      o.dedicated_pool_size =
          static_cast<std::size_t>(parse_uri_number(val, 1, 65536, "dedicated_pool_size", quote));
    } else if (key == "keepalive") {
      o.keepalive = flag("keepalive");
    } else if (key == "tls") {
      o.tls.enabled = flag("tls");
    } else if (key == "tls_verify") {
      o.tls.verify = flag("tls_verify");
    } else if (key == "tls_ca_file") {
      o.tls.ca_file = percent_decode(val, "tls_ca_file");
    } else if (key == "tls_ca_dir") {
      o.tls.ca_dir = percent_decode(val, "tls_ca_dir");
    } else if (key == "tls_cert_file") {
      o.tls.cert_file = percent_decode(val, "tls_cert_file");
    } else if (key == "tls_key_file") {
      o.tls.key_file = percent_decode(val, "tls_key_file");
    } else if (key == "tls_server_name") {
      o.tls.server_name = percent_decode(val, "tls_server_name");
    } else {
      std::string known;
      for (std::string_view name : kUriOptions) known += std::string(known.empty() ? "" : ", ") + std::string(name);
      throw ConfigError("redkit: unknown URI option" + quote(key) + " (known: " + known + ")");
    }
  }
}

}  // namespace detail

inline Options Options::from_uri(std::string_view uri) {
  Options o;
  auto sep = uri.find("://");
  if (sep == std::string_view::npos) {
    throw ConfigError(
        "redkit: URI has no scheme (expected redis://, rediss://, unix://, redis-sentinel:// or "
        "rediss-sentinel://)");
  }
  const auto scheme = uri.substr(0, sep);
  auto rest = uri.substr(sep + 3);
  const bool sentinel = scheme == "redis-sentinel" || scheme == "rediss-sentinel";
  if (scheme != "redis" && scheme != "rediss" && scheme != "unix" && !sentinel) {
    // The scheme comes before any credentials: quoting it is safe.
    throw ConfigError("redkit: unsupported URI scheme '" + std::string(scheme.substr(0, 32)) +
                      "' (expected redis://, rediss://, unix://, redis-sentinel:// or rediss-sentinel://)");
  }
  o.tls.enabled = scheme == "rediss" || scheme == "rediss-sentinel";

  // A URI that may carry credentials anywhere (user information, or a
  // password option whose value might hold any delimiter) is never quoted
  // in an error: any piece of it might be a piece of a password.
  const detail::UriQuote quote{uri.find('@') == std::string_view::npos && !detail::query_has_secret(uri)};

  // User information first: everything before the last '@', which may
  // hold '/', '?', '#' or '&' unencoded; unless that '@' lies in a query
  // (after a '?' that starts a known option, as in ?password=p@ss).
  if (scheme != "unix") {
    auto at = rest.rfind('@');
    if (const auto q = rest.find('?');
        at != std::string_view::npos && q != std::string_view::npos && q < at &&
        detail::starts_with_uri_option(rest.substr(q + 1))) {
      at = std::string_view::npos;
    }
    if (at != std::string_view::npos) {
      const auto userinfo = rest.substr(0, at);
      rest = rest.substr(at + 1);
      const auto colon = userinfo.find(':');
      if (colon == std::string_view::npos) {
        // redis://secret@host is the common "password only" spelling.
        o.password = detail::percent_decode(userinfo, "password");
      } else {
        o.username = detail::percent_decode(userinfo.substr(0, colon), "username");
        o.password = detail::percent_decode(userinfo.substr(colon + 1), "password");
      }
    }
  }

  std::string_view fragment;
  if (auto hash = rest.find('#'); hash != std::string_view::npos) {
    fragment = rest.substr(hash + 1);
    rest = rest.substr(0, hash);
  }
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }

  if (scheme == "unix") {
    if (rest.empty() || rest.front() != '/') {
      throw ConfigError("redkit: unix:// URI needs an absolute socket path (unix:///path/redis.sock)");
    }
    if (!fragment.empty()) throw ConfigError("redkit: unix:// URI takes no '#' fragment");
    o.unix_socket = detail::percent_decode(rest, "socket path");
    detail::apply_uri_query(o, query, quote);
    return o;
  }

  // authority[/db]
  const auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    const auto db = rest.substr(slash + 1);
    if (!db.empty()) o.db = static_cast<int>(detail::parse_uri_number(db, 0, 1 << 20, "db", quote));
  }
  if (authority.empty()) throw ConfigError("redkit: empty host in URI");

  if (!sentinel) {
    if (!fragment.empty()) throw ConfigError("redkit: " + std::string(scheme) + ":// URI takes no '#' fragment");
    auto ep = detail::parse_host_port(authority, 6379, quote);
    o.host = ep.host;
    o.port = ep.port;
  } else {
    while (!authority.empty()) {
      auto comma = authority.find(',');
      o.sentinels.push_back(detail::parse_host_port(authority.substr(0, comma), 26379, quote));
      authority = comma == std::string_view::npos ? std::string_view() : authority.substr(comma + 1);
    }
    if (fragment.empty()) {
      throw ConfigError("redkit: " + std::string(scheme) + ":// URI needs the master name after '#'");
    }
    o.master_name = std::string(fragment);
  }
  detail::apply_uri_query(o, query, quote);
  return o;
}

}  // namespace redkit
