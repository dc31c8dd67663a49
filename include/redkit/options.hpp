/// @file options.hpp
/// Connection options and URI parsing. Thread safety: plain value type.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "redkit/error.hpp"

namespace redkit {

/// A TCP endpoint.
struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
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

  std::size_t pool_size = 4;                          ///< connections per Redis handle
  std::chrono::milliseconds pool_wait_timeout{1000};  ///< wait for a free connection

  std::vector<Endpoint> sentinels;  ///< non-empty selects sentinel mode
  std::string master_name;          ///< the sentinel master name
  std::string sentinel_password;    ///< AUTH for the sentinels, if they need it

  /// Parses a URI:
  ///  - `redis://[user[:password]@]host[:port][/db][?option=value&...]`
  ///  - `unix:///path/to/redis.sock[?db=N&password=...&username=...]`
  ///  - `redis-sentinel://[user[:password]@]h1:26379,h2:26379[/db]#master`
  /// Query options: `db`, `username`, `password`, `client_name`,
  /// `connect_timeout` and `command_timeout` (milliseconds), `pool_size`,
  /// `pool_wait_timeout` (ms), `keepalive` (0/1). User and password are
  /// percent-decoded. `rediss://` (TLS) needs hiredis 1.x with SSL, which
  /// this build does not use, so it is rejected.
  /// @throws ConfigError naming the part that is wrong (never the password).
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

inline long long parse_uri_number(std::string_view s, long long lo, long long hi,
                                  std::string_view what) {
  if (s.empty() || s.size() > 18) {
    throw ConfigError("redkit: bad " + std::string(what) + " in URI: '" + std::string(s) + "'");
  }
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      throw ConfigError("redkit: bad " + std::string(what) + " in URI: '" + std::string(s) + "'");
    }
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) {
    throw ConfigError("redkit: " + std::string(what) + " out of range in URI: " + std::string(s));
  }
  return v;
}

// host[:port], host may be [ipv6].
inline Endpoint parse_host_port(std::string_view s, int default_port) {
  Endpoint ep;
  ep.port = default_port;
  std::string_view host = s;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) throw ConfigError("redkit: unclosed '[' in URI host");
    host = s.substr(1, close - 1);
    auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw ConfigError("redkit: junk after ']' in URI host");
      port = rest.substr(1);
      if (port.empty()) throw ConfigError("redkit: empty port in URI");
    }
  } else if (auto colon = s.rfind(':'); colon != std::string_view::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (port.empty()) throw ConfigError("redkit: empty port in URI");
  }
  if (host.empty()) throw ConfigError("redkit: empty host in URI");
  ep.host = std::string(host);
  if (!port.empty()) ep.port = static_cast<int>(parse_uri_number(port, 1, 65535, "port"));
  return ep;
}

inline void apply_uri_query(Options& o, std::string_view query) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string_view::npos) {
      throw ConfigError("redkit: URI option without '=': " + std::string(item.substr(0, 40)));
    }
    auto key = item.substr(0, eq);
    auto val = item.substr(eq + 1);
    auto ms = [&](std::string_view what) {
      return std::chrono::milliseconds(parse_uri_number(val, 0, 86400000, what));
    };
    if (key == "db") {
      o.db = static_cast<int>(parse_uri_number(val, 0, 1 << 20, "db"));
    } else if (key == "password") {
      o.password = percent_decode(val, "password");
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
      o.pool_size = static_cast<std::size_t>(parse_uri_number(val, 1, 4096, "pool_size"));
    } else if (key == "keepalive") {
      o.keepalive = parse_uri_number(val, 0, 1, "keepalive") != 0;
    } else {
      throw ConfigError("redkit: unknown URI option '" + std::string(key) + "'");
    }
  }
}

}  // namespace detail

inline Options Options::from_uri(std::string_view uri) {
  Options o;
  auto sep = uri.find("://");
  if (sep == std::string_view::npos) {
    throw ConfigError("redkit: URI has no scheme (expected redis://, unix:// or redis-sentinel://)");
  }
  const auto scheme = uri.substr(0, sep);
  auto rest = uri.substr(sep + 3);

  if (scheme == "rediss") {
    throw ConfigError(
        "redkit: rediss:// (TLS) needs hiredis 1.x built with SSL support; this build uses hiredis " +
        std::to_string(HIREDIS_MAJOR) + "." + std::to_string(HIREDIS_MINOR) + " without TLS");
  }
  if (scheme != "redis" && scheme != "unix" && scheme != "redis-sentinel") {
    throw ConfigError("redkit: unsupported URI scheme '" + std::string(scheme.substr(0, 32)) +
                      "' (expected redis://, unix:// or redis-sentinel://)");
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
    o.unix_socket = std::string(rest);
    detail::apply_uri_query(o, query);
    return o;
  }

  // authority[/db]
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    auto db = rest.substr(slash + 1);
    if (!db.empty()) o.db = static_cast<int>(detail::parse_uri_number(db, 0, 1 << 20, "db"));
  }
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    auto userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      // redis://secret@host is the common "password only" spelling.
      o.password = detail::percent_decode(userinfo, "password");
    } else {
      o.username = detail::percent_decode(userinfo.substr(0, colon), "username");
      o.password = detail::percent_decode(userinfo.substr(colon + 1), "password");
    }
  }
  if (authority.empty()) throw ConfigError("redkit: empty host in URI");

  if (scheme == "redis") {
    if (!fragment.empty()) throw ConfigError("redkit: redis:// URI takes no '#' fragment");
    auto ep = detail::parse_host_port(authority, 6379);
    o.host = ep.host;
    o.port = ep.port;
  } else {  // redis-sentinel
    while (!authority.empty()) {
      auto comma = authority.find(',');
      o.sentinels.push_back(detail::parse_host_port(authority.substr(0, comma), 26379));
      authority = comma == std::string_view::npos ? std::string_view() : authority.substr(comma + 1);
    }
    if (fragment.empty()) {
      throw ConfigError("redkit: redis-sentinel:// URI needs the master name after '#'");
    }
    o.master_name = std::string(fragment);
  }
  detail::apply_uri_query(o, query);
  return o;
}

}  // namespace redkit
