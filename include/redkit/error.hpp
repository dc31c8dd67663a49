/// @file error.hpp
/// The redkit exception tree. Thread safety: plain value types.
///
/// Every failure reaches the caller as one of these. Messages name what failed
/// (endpoint, command name, key) and never contain a password or a value.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace redkit {

/// Root of every exception redkit throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Network failure: connect refused, reset, EOF, unreachable host.
/// The connection that raised it has been discarded.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A connect, command or pool wait ran past its configured timeout.
/// Whether the server executed the command is unknown.
class TimeoutError : public IoError {
 public:
  using IoError::IoError;
};

/// The server closed the connection (EOF).
class ClosedError : public IoError {
 public:
  using IoError::IoError;
};

/// The server sent bytes that are not valid RESP, or a reply of a type the
/// caller did not expect (e.g. a string where an integer was required).
class ProtocolError : public Error {
 public:
  using Error::Error;
};

/// The server answered with an error reply. prefix() is its first word
/// (ERR, WRONGTYPE, NOSCRIPT, MOVED, ASK, NOAUTH, WRONGPASS, ...).
class ReplyError : public Error {
 public:
  /// The server's error text, e.g. "WRONGTYPE Operation against a key ...".
  /// A NUL byte in it shows as "\\0" in what(), which would end there.
  explicit ReplyError(std::string message)
      : Error(printable(message)), prefix_(message.substr(0, message.find(' '))) {}
  /// The first word of the error text: ERR, WRONGTYPE, NOSCRIPT, MOVED, ...
  const std::string& prefix() const noexcept { return prefix_; }

 private:
  static std::string printable(const std::string& s) {
    if (s.find('\0') == std::string::npos) return s;
    std::string out;
    for (char c : s) {
      if (c == '\0') {
        out += "\\0";
      } else {
        out += c;
      }
    }
    return out;
  }
  std::string prefix_;
};

/// A result would fall outside the range of the counter's value type. The
/// stored value was left unchanged.
class OverflowError : public Error {
 public:
  using Error::Error;
};

/// Thrown by an acquire with LockOptions::wait_replicas set when fewer
/// replicas than asked acknowledged the lock's write within wait_timeout.
/// The lock was released (best effort) before the throw.
class NotReplicatedError : public Error {
 public:
  /// For the lock `name`: `acknowledged` of `required` replicas answered WAIT.
  NotReplicatedError(const std::string& name, long long acknowledged, int required)
      : Error("redkit: lock '" + name + "' acquired but only " + std::to_string(acknowledged) + " of " +
              std::to_string(required) + " replicas acknowledged it; released"),
        acknowledged_(acknowledged),
        required_(required) {}
  /// Replicas that acknowledged the acquire's write within wait_timeout.
  long long acknowledged() const noexcept { return acknowledged_; }
  /// LockOptions::wait_replicas.
  int required() const noexcept { return required_; }

 private:
  long long acknowledged_;
  int required_;
};

/// A lock hold that is gone: fencing_token() was asked for after the hold
/// expired, was taken over by another holder or was released, or by a
/// thread that does not hold the lock. Nothing was issued.
class LockLostError : public Error {
 public:
  using Error::Error;
};

/// A stored value the serializer could not read. key() names it.
class DecodeError : public Error {
 public:
  /// The value at `key` could not be read; `what` is the serializer's message.
  DecodeError(std::string key, const std::string& what)
      : Error("redkit: cannot decode value at key '" + key + "': " + what), key_(std::move(key)) {}
  /// The Redis key of the value (for RedisCache: prefix + key).
  const std::string& key() const noexcept { return key_; }

 private:
  std::string key_;
};

/// Bad options or a malformed URI.
class ConfigError : public Error {
 public:
  using Error::Error;
};

}  // namespace redkit
