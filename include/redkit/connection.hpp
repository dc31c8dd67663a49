/// @file connection.hpp
/// redkit::Connection: one connection to one Redis server, on a socket
/// redkit owns. hiredis is used only to parse replies (its reader API).
///
/// Thread safety: not thread-safe; one thread at a time (the pools of
/// Redis and Cluster guarantee that). Exceptions: IoError (TimeoutError,
/// ClosedError) for I/O failures, ProtocolError for bytes that are not
/// RESP, ReplyError when the setup (AUTH, SELECT, CLIENT SETNAME) is
/// refused, ConfigError for options that cannot work (TLS without
/// <redkit/tls.hpp>, a unix path the kernel would cut). After any I/O or
/// protocol error, or an exception that leaves a reply unread, the
/// connection is broken() and must be discarded.
///
/// Timeouts: connect (and the TLS handshake) must end within
/// Options::connect_timeout; a command, or a whole pipeline, within
/// Options::command_timeout, from the first byte written to the last byte
/// of the last reply read. Both are deadlines on the steady clock: signals
/// (EINTR), partial reads and a server that dribbles bytes never stretch
/// them.
#pragma once

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/uio.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "redkit/command.hpp"
#include "redkit/detail/command_state.hpp"
#include "redkit/detail/events.hpp"
#include "redkit/detail/reply_reader.hpp"
#include "redkit/detail/socket.hpp"
#include "redkit/detail/transport.hpp"
#include "redkit/error.hpp"
#include "redkit/options.hpp"
#include "redkit/reply.hpp"

namespace redkit {

namespace detail {

/// "host:port" or "unix:/path", as messages and events name a server.
inline std::string endpoint_name(const Options& o) {
  if (!o.unix_socket.empty()) return "unix:" + o.unix_socket;
  if (o.host.find(':') != std::string::npos) return "[" + o.host + "]:" + std::to_string(o.port);
  return o.host + ":" + std::to_string(o.port);
}

}  // namespace detail

/// A connected, set-up connection to one server.
class Connection {
 public:
  /// A point on the steady clock by which an operation must end.
  using Deadline = detail::Deadline;

  /// Connects (TCP over every resolved address, or a unix socket), runs the
  /// TLS handshake when Options::tls is enabled, then the setup (AUTH,
  /// SELECT, CLIENT SETNAME) in one round trip. events, if given, hears
  /// ConnectionOpened / ConnectFailed / TlsHandshakeFailed now and
  /// ConnectionClosed / ConnectionBroken when the connection ends.
  /// @throws IoError/TimeoutError if unreachable; ReplyError if AUTH or
  /// SELECT is refused (naming the endpoint and step, never the password);
  /// ConfigError for TLS without <redkit/tls.hpp> or a unix path too long.
  explicit Connection(const Options& o, std::shared_ptr<detail::EventSink> events = {})
      : endpoint_(detail::endpoint_name(o)),
        events_(std::move(events)),
        command_timeout_(o.command_timeout),
        password_set_(!o.password.empty()),
        ibuf_(new char[kReadChunk]) {
    try {
      open(o);
    } catch (const Error& e) {
      if (events_) events_->emit(EventType::ConnectFailed, endpoint_, e.what());
      t_.reset();
      throw;
    }
    if (events_) events_->emit(EventType::ConnectionOpened, endpoint_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  ~Connection() {
    if (!t_ || !t_->ours()) return;  // a fork child never reports the parent's connections
    if (events_) {
      events_->emit(broken_ ? EventType::ConnectionBroken : EventType::ConnectionClosed, endpoint_, last_error_);
    }
  }

  /// Sends one command and reads its reply, all within command_timeout. An
  /// error reply is returned, not thrown. @throws IoError (and subtypes),
  /// ProtocolError; the connection is then broken.
  Reply command(const Command& cmd) { return command(cmd, command_deadline()); }
  /// Same, within the given deadline.
  Reply command(const Command& cmd, const Deadline& deadline) {
    send(&cmd, 1, deadline);
    return read(deadline);
  }

  /// Sends n commands in one write and reads exactly n replies, in order,
  /// all within command_timeout. Error replies stay in place.
  /// @throws IoError, ProtocolError (no partial result).
  std::vector<Reply> pipeline(const Command* cmds, std::size_t n) {
    return pipeline(cmds, n, command_deadline());
  }
  /// Same, within the given deadline.
  std::vector<Reply> pipeline(const Command* cmds, std::size_t n, const Deadline& deadline) {
    send(cmds, n, deadline);
    std::vector<Reply> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.push_back(read(deadline));
    return out;
  }

  /// Writes n commands with one sendmsg where the socket takes them (large
  /// arguments straight from where they lie). Each command is then owed a
  /// reply. @throws IoError, TimeoutError.
  void send(const Command* cmds, std::size_t n, const Deadline& deadline) {
    check_usable();
    obuf_.clear();
    for (std::size_t i = 0; i < n; ++i) cmds[i].encode(obuf_);
    write_all(deadline);
    owed_ += n;
    if (events_) events_->count_commands(n);
  }
  /// Same, for commands that do not lie side by side.
  void send(const std::vector<const Command*>& cmds, const Deadline& deadline) {
    check_usable();
    obuf_.clear();
    for (const Command* c : cmds) c->encode(obuf_);
    write_all(deadline);
    owed_ += cmds.size();
    if (events_) events_->count_commands(cmds.size());
  }

  /// Reads one reply. @throws IoError (TimeoutError when the deadline
  /// passes, ClosedError on EOF), ProtocolError; the connection is then
  /// broken.
  Reply read(const Deadline& deadline) {
    check_usable();
    for (bool first = true;; first = false) {
      if (std::optional<Reply> r = next_reply()) return std::move(*r);
      detail::IoResult res;
      if (first && can_block_until(deadline)) {
        res = t_->read_waiting(ibuf_.get(), kReadChunk);
      } else if (t_->buffered()) {
        res = t_->read(ibuf_.get(), kReadChunk);
      } else {
        if (!wait_for(POLLIN, deadline)) fail_timeout("read from");
        res = t_->read(ibuf_.get(), kReadChunk);
      }
      if (res.closed) fail<ClosedError>("redkit: " + endpoint_ + " closed the connection");
      if (res.bytes > 0) feed(res.bytes);
      if (res.want == detail::Want::Write && !wait_for(POLLOUT, deadline)) fail_timeout("read from");
    }
  }
  /// Reads one reply within command_timeout.
  Reply read() { return read(command_deadline()); }

  /// Waits until the deadline for a reply or pushed message (a
  /// subscription's); nullopt when none came, and the connection stays
  /// usable (bytes of a message that arrived in part are kept for the next
  /// call). @throws IoError, ProtocolError as read().
  std::optional<Reply> try_read(const Deadline& deadline) {
    check_usable();
    for (;;) {
      if (std::optional<Reply> r = next_reply()) return r;
      detail::IoResult res;
      if (t_->buffered()) {
        res = t_->read(ibuf_.get(), kReadChunk);
      } else {
        if (!wait_for(POLLIN, deadline)) return std::nullopt;
        res = t_->read(ibuf_.get(), kReadChunk);
      }
      if (res.closed) fail<ClosedError>("redkit: " + endpoint_ + " closed the connection");
      if (res.bytes > 0) feed(res.bytes);
      if (res.want == detail::Want::Write && !wait_for(POLLOUT, deadline)) return std::nullopt;
    }
  }

  /// now + Options::command_timeout (none when it is 0).
  Deadline command_deadline() const noexcept { return Deadline::after(command_timeout_); }
  /// Options::command_timeout of this connection.
  std::chrono::milliseconds command_timeout() const noexcept { return command_timeout_; }

  /// Replies sent for but not read yet.
  std::size_t replies_owed() const noexcept { return owed_; }

  /// Records what cmd, sent on this connection by a Lease, does to its
  /// state (MULTI, WATCH, SUBSCRIBE, SELECT, ...): see reusable().
  void note_state(const Command& cmd) noexcept {
    switch (detail::state_effect(cmd)) {
      case detail::StateEffect::None: break;
      case detail::StateEffect::BeginMulti: in_multi_ = true; break;
      case detail::StateEffect::EndMulti: in_multi_ = watching_ = false; break;
      case detail::StateEffect::Watch: watching_ = true; break;
      case detail::StateEffect::Unwatch: watching_ = false; break;
      case detail::StateEffect::Subscribe:
      case detail::StateEffect::Dirty: dirty_ = true; break;
    }
  }

  /// True when another user may take it over: not broken, no reply owed,
  /// not left in MULTI, WATCH, a subscription or any changed session state,
  /// and opened by this process (not inherited across fork()).
  bool reusable() const noexcept {
    return !broken_ && owed_ == 0 && !in_multi_ && !watching_ && !dirty_ && t_ && t_->ours();
  }

  /// True after an I/O or protocol error: the connection must be discarded.
  bool broken() const noexcept { return broken_; }
  /// True when it broke on an error that suggests the server went away
  /// (not a timeout): the pool then drops its other idle connections too.
  bool lost_server() const noexcept { return lost_server_; }
  /// Marks the connection unusable (e.g. a reply is still owed).
  void mark_broken() noexcept { broken_ = true; }

  /// Liveness check before reuse: an idle socket has nothing to read, so
  /// readable means the peer closed it (restart, CLIENT KILL, timeout). One
  /// poll() syscall, skipped when the connection was used within the last
  /// millisecond (a busy connection is checked by its use).
  bool idle_healthy() const noexcept {
    if (!reusable()) return false;
    if (std::chrono::steady_clock::now() - last_used_ < std::chrono::milliseconds(1)) return true;
    if (t_->buffered()) return false;
    pollfd p{t_->fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }
  /// Records that the connection was just used (see idle_healthy()).
  void touch() noexcept { last_used_ = std::chrono::steady_clock::now(); }

  /// "host:port" or "unix:/path".
  const std::string& endpoint() const noexcept { return endpoint_; }
  /// The socket, for waiting on it from outside (poll). -1 when closed.
  int fd() const noexcept { return t_ ? t_->fd() : -1; }
  /// True over TLS.
  bool secure() const noexcept { return t_ && t_->secure(); }

  std::uint64_t generation = 0;  ///< set by the pool that owns it

 private:
  static constexpr std::size_t kReadChunk = 16 * 1024;

  void open(const Options& o) {
    const Deadline connect_deadline = Deadline::after(o.connect_timeout);
    if (o.tls.enabled && detail::tls_factory().load() == nullptr) throw detail::tls_not_built();
    detail::Socket socket = o.unix_socket.empty() ? detail::connect_tcp(o.host, o.port, connect_deadline, o.keepalive)
                                                  : detail::connect_unix(o.unix_socket, connect_deadline);
    detail::set_read_mode(socket.fd(), o.command_timeout);
    if (o.tls.enabled) {
      t_ = detail::tls_factory().load()(std::move(socket), o.tls, o.host, endpoint_);
      handshake(connect_deadline);
    } else {
      t_ = std::make_unique<detail::PlainTransport>(std::move(socket), endpoint_);
    }
    setup(o);
  }

  void handshake(const Deadline& deadline) {
    try {
      for (detail::Want want; (want = t_->handshake()) != detail::Want::Nothing;) {
        if (!wait_for(want == detail::Want::Read ? POLLIN : POLLOUT, deadline)) {
          throw TimeoutError("redkit: TLS handshake with " + endpoint_ + " timed out");
        }
      }
    } catch (const Error& e) {
      if (events_) events_->emit(EventType::TlsHandshakeFailed, endpoint_, e.what());
      throw;
    }
  }

  // AUTH, SELECT, CLIENT SETNAME in one round trip.
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
      const bool auth = cmds[i].name() == "AUTH";
      std::string step = auth ? (o.username.empty() ? std::string("AUTH <password>") : "AUTH " + o.username + " <password>")
                              : std::string(cmds[i].name()) + " " + std::string(cmds[i].size() > 1 ? cmds[i][1] : "");
      std::string hint = auth ? "; check Options::password and Options::username (or the URI's user:password@)" : "";
      throw ReplyError(std::string(replies[i].error()) + " (during " + step.substr(0, 80) + " on " + endpoint_ + hint +
                       ")");
    }
  }

  // The next complete reply in the reader, or nullopt.
  std::optional<Reply> next_reply() {
    std::optional<Reply> r;
    try {
      r = reader_.next();
    } catch (const ProtocolError& e) {
      fail<ProtocolError>(std::string(e.what()) + " (from " + endpoint_ + ")");
    }
    if (!r) return r;
    if (owed_ > 0) --owed_;
    touch();
    if (owed_ == 0 && !dirty_ && reader_.pending() > 0) {
      // Bytes beyond the last reply we asked for: the server sent a reply
      // nobody asked for, and the next command would read it as its own.
      // The connection is discarded when it goes back (and refuses more use).
      mark_failed("redkit: " + endpoint_ + " sent data nobody asked for (" + std::to_string(reader_.pending()) +
                      " bytes after the last reply); the connection is discarded",
                  false);
    }
    if (r->is_error() && r->error().substr(0, 6) == "NOAUTH") return explain_noauth(*r);
    return r;
  }

  // A NOAUTH reply, with the endpoint and the option that sets a password.
  // Built by the reader itself, so hiredis frees it the way it allocated it.
  std::optional<Reply> explain_noauth(const Reply& r) {
    std::string text(r.error());
    text += password_set_ ? " (" + endpoint_ + " refused the configured password later; check Options::password)"
                          : " (" + endpoint_ +
                                " needs a password: set Options::password, or give it in the URI as "
                                "redis://:password@host, with Options::username for an ACL user)";
    for (char& c : text) {
      if (c == '\r' || c == '\n') c = ' ';
    }
    detail::ReplyReader one;
    const std::string wire = "-" + text + "\r\n";
    one.feed(wire.data(), wire.size());
    return one.next();
  }

  void feed(std::size_t n) {
    try {
      reader_.feed(ibuf_.get(), n);
    } catch (const ProtocolError& e) {
      fail<ProtocolError>(std::string(e.what()) + " (from " + endpoint_ + ")");
    }
  }

  // True when a blocking recv, which the socket's receive timeout bounds,
  // cannot overshoot the deadline by more than a millisecond: then the
  // usual reply costs one syscall instead of poll + recv.
  bool can_block_until(const Deadline& d) const noexcept {
    if (d.is_none()) return command_timeout_.count() <= 0;
    return command_timeout_.count() > 0 && command_timeout_ <= d.remaining() + std::chrono::milliseconds(1);
  }

  bool wait_for(short events, const Deadline& d) {
    try {
      return detail::wait_fd(t_->fd(), events, d);
    } catch (const IoError& e) {
      fail<IoError>(e.what());
    }
  }

  void write_all(const Deadline& deadline) {
    iov_.clear();
    obuf_.for_each_piece([&](const char* p, std::size_t n) {
      iov_.push_back(iovec{const_cast<char*>(p), n});
    });
    std::size_t first = 0;
    while (first < iov_.size()) {
      const int count = static_cast<int>(std::min<std::size_t>(iov_.size() - first, IOV_MAX));
      detail::IoResult res;
      try {
        res = t_->write(iov_.data() + first, count);
      } catch (const IoError& e) {
        lost_server_ = !dynamic_cast<const TimeoutError*>(&e);
        mark_failed(e.what(), false);
        throw;
      }
      if (res.want != detail::Want::Nothing) {
        if (!wait_for(res.want == detail::Want::Write ? POLLOUT : POLLIN, deadline)) fail_timeout("write to");
        continue;
      }
      std::size_t n = res.bytes;
      while (n > 0 && first < iov_.size()) {
        if (n >= iov_[first].iov_len) {
          n -= iov_[first].iov_len;
          ++first;
        } else {
          iov_[first].iov_base = static_cast<char*>(iov_[first].iov_base) + n;
          iov_[first].iov_len -= n;
          n = 0;
        }
      }
    }
    obuf_.shrink();
  }

  void check_usable() const {
    if (broken_) throw IoError("redkit: connection to " + endpoint_ + " is broken");
    if (!t_->ours()) {
      throw Error("redkit: connection to " + endpoint_ + " was inherited across fork(); it belongs to the parent");
    }
  }

  void mark_failed(const std::string& what, bool timeout) noexcept {
    broken_ = true;
    try {
      last_error_ = what;
    } catch (...) {
    }
    if (events_) events_->count_io_error(timeout);
  }

  template <class E>
  [[noreturn]] void fail(const std::string& what) {
    lost_server_ = true;
    mark_failed(what, false);
    throw E(what);
  }

  [[noreturn]] void fail_timeout(const char* op) {
    const std::string what = "redkit: " + std::string(op) + " " + endpoint_ + " timed out (" +
                             (owed_ > 0 ? std::to_string(owed_) + " replies owed" : std::string("writing")) + ")";
    mark_failed(what, true);
    throw TimeoutError(what);
  }

  std::unique_ptr<detail::Transport> t_;
  std::string endpoint_;
  std::shared_ptr<detail::EventSink> events_;
  std::chrono::milliseconds command_timeout_{0};
  bool password_set_ = false;
  detail::ReplyReader reader_;
  detail::RequestBuffer obuf_;
  std::vector<iovec> iov_;
  std::unique_ptr<char[]> ibuf_;
  std::string last_error_;
  std::size_t owed_ = 0;
  std::chrono::steady_clock::time_point last_used_{};
  bool broken_ = false;
  bool lost_server_ = false;
  bool in_multi_ = false;
  bool watching_ = false;
  bool dirty_ = false;
};

}  // namespace redkit
