/// @file connection.hpp
/// One hiredis connection. Not thread-safe: one thread at a time (the Redis
/// pool guarantees that). After an I/O error it is broken() and must be
/// replaced; hiredis 0.14's redisReconnect would not redo AUTH/SELECT.
#pragma once

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "redkit/command.hpp"
#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/reply.hpp"

namespace redkit {

namespace detail {

inline std::string endpoint_name(const Options& o) {
  if (!o.unix_socket.empty()) return "unix:" + o.unix_socket;
  return o.host + ":" + std::to_string(o.port);
}

/// Maps a failed hiredis call (its context error and the errno it left) to
/// the right exception type.
[[noreturn]] inline void throw_io_error(int err, const char* errstr, int saved_errno,
                                        const std::string& what) {
  const std::string msg = "redkit: " + what + ": " + (errstr && *errstr ? errstr : "I/O error");
  if (err == REDIS_ERR_EOF) throw ClosedError(msg);
  if (err == REDIS_ERR_PROTOCOL) throw ProtocolError(msg);
  if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT ||
      (errstr && (std::strcmp(errstr, std::strerror(EAGAIN)) == 0 ||
                  std::strcmp(errstr, std::strerror(ETIMEDOUT)) == 0))) {
    throw TimeoutError(msg + " (timed out)");
  }
  throw IoError(msg);
}

inline timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace detail

/// A connected, set-up hiredis context.
class Connection {
 public:
  /// Connects and runs the setup (timeouts, keepalive, AUTH, SELECT,
  /// CLIENT SETNAME) in one round trip.
  /// @throws IoError/TimeoutError if unreachable; ReplyError if AUTH or
  /// SELECT is refused (the message never contains the password).
  explicit Connection(const Options& o) : endpoint_(detail::endpoint_name(o)) {
    const timeval ctv = detail::to_timeval(o.connect_timeout);
    redisContext* c = o.unix_socket.empty()
                          ? redisConnectWithTimeout(o.host.c_str(), o.port, ctv)
                          : redisConnectUnixWithTimeout(o.unix_socket.c_str(), ctv);
    const int saved_errno = errno;
    if (c == nullptr) throw IoError("redkit: cannot allocate a connection to " + endpoint_);
    ctx_.reset(c);
    if (c->err) throw_context_error("cannot connect to " + endpoint_, saved_errno);
    if (o.keepalive && o.unix_socket.empty()) redisEnableKeepAlive(c);
    set_timeout(o.command_timeout);
    default_timeout_ = o.command_timeout;
    setup(o);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Sends one command and reads its reply. An error reply is returned, not
  /// thrown. @throws IoError (and subtypes) on I/O failure; the connection is
  /// then broken.
  Reply command(const Command& cmd) {
    send(&cmd, 1);
    return read();
  }

  /// Sends n commands in one write and reads exactly n replies, in order.
  /// Error replies stay in place. @throws IoError on I/O failure.
  std::vector<Reply> pipeline(const Command* cmds, std::size_t n) {
    send(cmds, n);
    std::vector<Reply> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.push_back(read());
    return out;
  }

  /// Writes n commands with one send() (MSG_NOSIGNAL: a closed peer gives
  /// an IoError, never SIGPIPE).
  void send(const Command* cmds, std::size_t n) {
    check_usable();
    obuf_.clear();
    for (std::size_t i = 0; i < n; ++i) cmds[i].encode(obuf_);
    std::size_t off = 0;
    while (off < obuf_.size()) {
      const ssize_t w = ::send(ctx_->fd, obuf_.data() + off, obuf_.size() - off, MSG_NOSIGNAL);
      if (w > 0) {
        off += static_cast<std::size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      const int saved_errno = errno;
      broken_ = true;
      const std::string what = "write to " + endpoint_ + " failed";
      if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK) {
        throw TimeoutError("redkit: " + what + " (timed out)");
      }
      throw IoError("redkit: " + what + ": " + std::strerror(saved_errno));
    }
    if (obuf_.capacity() > (1u << 20)) std::string().swap(obuf_);  // don't pin large buffers
  }

  /// Reads one reply. @throws IoError (and subtypes); the connection is then
  /// broken.
  Reply read() {
    check_usable();
    void* r = nullptr;
    errno = 0;
    if (redisGetReply(ctx_.get(), &r) != REDIS_OK || r == nullptr) {
      throw_context_error("read from " + endpoint_ + " failed", errno);
    }
    return Reply(static_cast<redisReply*>(r));
  }

  /// Sets the read/write timeout (0 = none) for the following commands.
  void set_timeout(std::chrono::milliseconds t) {
    if (redisSetTimeout(ctx_.get(), detail::to_timeval(t)) != REDIS_OK) {
      broken_ = true;
      throw IoError("redkit: cannot set the socket timeout on " + endpoint_);
    }
  }
  /// Restores the timeout from Options.
  void reset_timeout() { set_timeout(default_timeout_); }

  /// True after an I/O error: the connection must be discarded.
  bool broken() const noexcept { return broken_; }
  /// Marks the connection unusable (e.g. a reply is still owed after a
  /// timeout).
  void mark_broken() noexcept { broken_ = true; }

  /// Liveness check before reuse: an idle socket has nothing to read, so
  /// readable means the peer closed it (server restarted, CLIENT KILL,
  /// timeout). One poll() syscall, skipped when the connection was used
  /// within the last millisecond (a busy connection is checked by its use).
  bool idle_healthy() const noexcept {
    if (broken_) return false;
    if (std::chrono::steady_clock::now() - last_used_ < std::chrono::milliseconds(1)) return true;
    pollfd p{ctx_->fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }
  /// Records that the connection was just used (see idle_healthy()).
  void touch() noexcept { last_used_ = std::chrono::steady_clock::now(); }

  const std::string& endpoint() const noexcept { return endpoint_; }
  redisContext* context() noexcept { return ctx_.get(); }

  std::uint64_t generation = 0;  ///< set by the pool that owns it

 private:
  struct Free {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
  };

  void check_usable() const {
    if (broken_) throw IoError("redkit: connection to " + endpoint_ + " is broken");
  }

  [[noreturn]] void throw_context_error(const std::string& what, int saved_errno) {
    broken_ = true;
    detail::throw_io_error(ctx_->err, ctx_->errstr, saved_errno, what);
  }

  void setup(const Options& o) {
    std::vector<Command> cmds;
    if (!o.password.empty()) {
      Command auth{"AUTH"};
      if (!o.username.empty()) auth.arg(o.username);
      auth.arg(o.password);
      cmds.push_back(std::move(auth));
    }
    if (o.db != 0) cmds.push_back(Command{"SELECT"}.arg(o.db));
    if (!o.client_name.empty()) cmds.push_back(Command{"CLIENT", "SETNAME"}.arg(o.client_name));
    if (cmds.empty()) return;
    auto replies = pipeline(cmds.data(), cmds.size());
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (!replies[i].is_error()) continue;
      broken_ = true;
      // Name the step, quote the server's words: neither contains the password.
      throw ReplyError(std::string(replies[i].error()) + " (during " +
                       std::string(cmds[i].name()) + " " +
                       (cmds[i].name() == "AUTH" ? (o.username.empty() ? std::string("<password>")
                                                                       : o.username + " <password>")
                                                 : std::string(cmds[i].size() > 1 ? cmds[i][1] : ""))
                                 .substr(0, 80) +
                       " on " + endpoint_ + ")");
    }
  }

  std::unique_ptr<redisContext, Free> ctx_;
  std::string endpoint_;
  std::string obuf_;
  std::chrono::milliseconds default_timeout_{0};
  std::chrono::steady_clock::time_point last_used_{};
  bool broken_ = false;
};

}  // namespace redkit
