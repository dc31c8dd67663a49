#include "support/fault_proxy.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "support/resp_framer.hpp"
#include "support/socket_util.hpp"

namespace redkit::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kMaxQueued = 1 << 20;  // per direction per connection
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr milliseconds kDrainWait{5000};     // reset_after_next_command: wait for the reply
constexpr milliseconds kConnectWait{1000};   // upstream connect

enum class Mode { Forward, Delay, Stall, BlackHole };

// An armed command one-shot: reset_after_next_command (no parts: any
// command) or a *_command_containing one.
struct Matcher {
  bool reset;  // else mute
  std::vector<std::string> parts;
  bool matches(std::string_view command) const {
    return std::all_of(parts.begin(), parts.end(),
                       [&](const std::string& part) { return command.find(part) != std::string_view::npos; });
  }
};

// Bytes read from one side, waiting to be written to the other.
struct Chunk {
  Clock::time_point due;
  std::string bytes;
  std::size_t off = 0;
};

// One direction of one connection.
struct Pipe {
  std::deque<Chunk> queue;
  std::size_t queued = 0;
  RespFramer framer;
  bool dropping = false;            // discarding the reply drop_next_reply picked
  std::string command;              // the command so far, while a command one-shot is armed
  bool reset_when_flushed = false;  // reset_after_bytes fired: reset both sockets once written
};

struct Conn {
  int client = -1;
  int upstream = -1;
  Pipe up;    // client -> server
  Pipe down;  // server -> client
  bool black_holed = false;
  bool muted = false;                      // mute_after_command_containing fired: replies discarded
  bool reset_client_when_flushed = false;  // reset_after_next_command fired
  bool draining = false;                   // client reset; awaiting the reply, then close
  bool upstream_eof = false;
  Clock::time_point drain_deadline{};
  Pipe& pipe(Flow f) { return f == Flow::ToServer ? up : down; }
};

}  // namespace

struct FaultProxy::Engine {
  FaultProxy& owner;
  std::string upstream_host;
  int upstream_port;
  LoopbackService service{"FaultProxy"};  // the listener, the wake-up and the thread

  std::mutex mu;  // guards everything below; the thread holds it except while in poll()
  Mode mode = Mode::Forward;
  milliseconds delay{0};
  bool drop_armed = false;
  std::optional<std::size_t> reset_bytes[2];  // by Flow
  std::deque<Matcher> matchers;
  bool reset_all_requested = false;
  bool stopping = false;
  std::list<Conn> conns;

  Engine(FaultProxy& o, std::string host, int port) : owner(o), upstream_host(std::move(host)), upstream_port(port) {}

  void wake() { service.wake(); }

  static std::size_t index(Flow f) { return f == Flow::ToServer ? 0 : 1; }

  // ---- the loop -------------------------------------------------------------

  void run() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      apply_requests();
      flush_all();
      std::vector<pollfd> fds;
      std::vector<std::pair<Conn*, bool>> owners;  // (connection, is_client) per fd after the first two
      fds.push_back({service.listen_fd(), POLLIN, 0});
      fds.push_back({service.wake_fd(), POLLIN, 0});
      // Stalled: no connection is polled at all (not even for a hang-up).
      for (Conn& c : conns) {
        if (mode == Mode::Stall) break;
        if (c.client >= 0) {
          fds.push_back({c.client, events_for(c, c.client, c.up, c.down), 0});
          owners.emplace_back(&c, true);
        }
        if (c.upstream >= 0) {
          fds.push_back({c.upstream, events_for(c, c.upstream, c.down, c.up), 0});
          owners.emplace_back(&c, false);
        }
      }
      const int timeout = poll_timeout();
      lock.unlock();
      const int rc = ::poll(fds.data(), fds.size(), timeout);
      lock.lock();
      if (stopping) break;
      if (rc < 0) continue;  // EINTR
      if (fds[1].revents & POLLIN) service.drain();
      // stall() may have come while this thread was in poll(): what the
      // sockets hold then stays unread.
      for (std::size_t i = 2; i < fds.size() && mode != Mode::Stall; ++i) {
        if (fds[i].revents == 0) continue;
        Conn& c = *owners[i - 2].first;
        const bool is_client = owners[i - 2].second;
        const int fd = is_client ? c.client : c.upstream;
        if (fd != fds[i].fd) continue;  // closed meanwhile
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_side(c, is_client);
      }
      if (fds[0].revents & POLLIN) accept_one();
      reap();
    }
    for (Conn& c : conns) close_conn(c, false);
    conns.clear();
  }

  // What to poll a side for: POLLIN when it may read (its pipe to the other
  // side has room), POLLOUT when bytes are due for it.
  static short events_for(const Conn& c, int fd, const Pipe& from_it, const Pipe& to_it) {
    if (fd < 0) return 0;
    short ev = 0;
    if (from_it.queued < kMaxQueued) ev |= POLLIN;
    if (!to_it.queue.empty() && to_it.queue.front().due <= Clock::now() && !c.black_holed) ev |= POLLOUT;
    return ev;
  }

  // Until the next delayed chunk falls due or a drain times out (chunks
  // already due wait for POLLOUT instead).
  int poll_timeout() const {
    if (mode == Mode::Stall) return 1000;
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (const Conn& c : conns) {
      for (const Pipe* p : {&c.up, &c.down}) {
        if (!p->queue.empty() && p->queue.front().due > now) next = std::min(next, p->queue.front().due);
      }
      if (c.draining) next = std::min(next, c.drain_deadline);
    }
    if (next == Clock::time_point::max()) return 1000;
    const auto wait = std::chrono::ceil<milliseconds>(next - now).count();
    return static_cast<int>(std::clamp<long long>(wait, 0, 1000));
  }

  void apply_requests() {
    if (reset_all_requested) {
      reset_all_requested = false;
      for (Conn& c : conns) {
        if (c.client >= 0 || c.upstream >= 0) close_conn(c, true);
      }
    }
    if (mode == Mode::BlackHole) {
      for (Conn& c : conns) black_hole(c);
    }
  }

  static void black_hole(Conn& c) {
    c.black_holed = true;
    for (Pipe* p : {&c.up, &c.down}) {
      p->queue.clear();
      p->queued = 0;
    }
  }

  // ---- accepting ------------------------------------------------------------

  void accept_one() {
    const int fd = ::accept4(service.listen_fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    owner.accepted_++;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::size_t live = 0;
    for (const Conn& c : conns) live += (c.client >= 0 || c.upstream >= 0) ? 1 : 0;
    if (live >= kMaxConnections) {
      reset_socket(fd);
      return;
    }
    Conn c;
    c.client = fd;
    if (mode == Mode::BlackHole) {
      c.black_holed = true;
    } else {
      c.upstream = connect_loopback(upstream_host, upstream_port, kConnectWait);
      if (c.upstream < 0) {
        owner.resets_++;
        reset_socket(fd);
        return;
      }
    }
    owner.open_++;
    conns.push_back(std::move(c));
  }

  // ---- reading --------------------------------------------------------------

  void read_side(Conn& c, bool is_client) {
    const int fd = is_client ? c.client : c.upstream;
    Pipe& p = is_client ? c.up : c.down;
    char buf[kReadChunk];
    const std::size_t room = kMaxQueued > p.queued ? kMaxQueued - p.queued : 0;
    const ssize_t n = ::recv(fd, buf, std::min(room, sizeof buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      if (is_client || c.draining) {
        close_conn(c, false);
      } else {
        c.upstream_eof = true;  // deliver what is queued, then close
        ::close(c.upstream);
        c.upstream = -1;
      }
      return;
    }
    const std::string_view data(buf, static_cast<std::size_t>(n));
    if (c.draining) {
      // Discarding the reply to the command whose client was reset.
      for (std::string_view rest = data; !rest.empty();) {
        rest.remove_prefix(c.down.framer.feed(rest));
        if (c.down.framer.frame_ended()) {
          close_conn(c, false);
          return;
        }
      }
      return;
    }
    if (c.black_holed || (c.muted && !is_client)) return;
    take(c, is_client ? Flow::ToServer : Flow::ToClient, data);
  }

  // Queues data read in flow, frame by frame, applying the one-shots.
  void take(Conn& c, Flow flow, std::string_view data) {
    Pipe& p = c.pipe(flow);
    auto& reset_bytes_left = reset_bytes[index(flow)];
    while (!data.empty()) {
      if (flow == Flow::ToClient && drop_armed && !p.dropping && p.framer.at_frame_start()) {
        drop_armed = false;
        p.dropping = true;
      }
      const std::size_t n = p.framer.feed(data);
      const bool ended = p.framer.frame_ended();
      const std::string_view piece = data.substr(0, n);
      data.remove_prefix(n);
      if (p.dropping) {
        if (ended) {
          p.dropping = false;
          owner.dropped_++;
        }
        continue;
      }
      if (reset_bytes_left) {
        if (piece.size() >= *reset_bytes_left) {
          enqueue(p, flow, piece.substr(0, *reset_bytes_left));
          reset_bytes_left.reset();
          p.reset_when_flushed = true;
          return;  // the rest is never forwarded
        }
        *reset_bytes_left -= piece.size();
      }
      enqueue(p, flow, piece);
      if (flow == Flow::ToServer && !matchers.empty()) p.command.append(piece);
      if (!ended) continue;
      if (flow == Flow::ToServer) {
        owner.commands_++;
        bool reset = false;
        const auto hit = std::find_if(matchers.begin(), matchers.end(),
                                      [&](const Matcher& m) { return m.matches(p.command); });
        if (hit != matchers.end()) {
          if (!hit->parts.empty()) owner.matched_++;
          reset = hit->reset;
          if (!hit->reset) c.muted = true;
          matchers.erase(hit);
        }
        p.command.clear();
        if (reset) {
          c.reset_client_when_flushed = true;
          return;  // later pipelined commands are never forwarded
        }
      } else {
        owner.replies_++;
      }
    }
  }

  void enqueue(Pipe& p, Flow flow, std::string_view bytes) {
    const auto due = Clock::now() + (mode == Mode::Delay ? delay : milliseconds(0));
    if (!bytes.empty()) {
      p.queue.push_back(Chunk{due, std::string(bytes), 0});
      p.queued += bytes.size();
    }
    (flow == Flow::ToServer ? owner.bytes_up_ : owner.bytes_down_) += bytes.size();
  }

  // ---- writing --------------------------------------------------------------

  void flush_all() {
    const auto now = Clock::now();
    for (Conn& c : conns) {
      if (c.draining) {
        if (now >= c.drain_deadline) close_conn(c, false);
        continue;
      }
      if (c.client < 0 && c.upstream < 0) continue;
      if (mode != Mode::Stall && !c.black_holed) {
        if (!flush(c.up, c.upstream, now) || !flush(c.down, c.client, now)) {
          close_conn(c, false);
          continue;
        }
      }
      after_flush(c);
    }
  }

  // Writes the due chunks of p to fd. False when the socket failed.
  static bool flush(Pipe& p, int fd, Clock::time_point now) {
    if (fd < 0) return true;
    while (!p.queue.empty() && p.queue.front().due <= now) {
      Chunk& ch = p.queue.front();
      const ssize_t w = ::send(fd, ch.bytes.data() + ch.off, ch.bytes.size() - ch.off, MSG_NOSIGNAL);
      if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      ch.off += static_cast<std::size_t>(w);
      p.queued -= static_cast<std::size_t>(w);
      if (ch.off == ch.bytes.size()) p.queue.pop_front();
    }
    return true;
  }

  void after_flush(Conn& c) {
    if ((c.up.reset_when_flushed && c.up.queue.empty()) || (c.down.reset_when_flushed && c.down.queue.empty())) {
      close_conn(c, true);
      return;
    }
    if (c.reset_client_when_flushed && c.up.queue.empty()) {
      c.reset_client_when_flushed = false;
      owner.resets_++;
      reset_socket(c.client);
      c.client = -1;
      c.draining = true;
      c.drain_deadline = Clock::now() + kDrainWait;
      c.down.queue.clear();
      c.down.queued = 0;
      return;
    }
    if (c.upstream_eof && c.down.queue.empty()) close_conn(c, false);
  }

  // ---- closing --------------------------------------------------------------

  // Counts before closing: a test that saw the reset must see the count.
  void close_conn(Conn& c, bool reset) {
    if (c.client < 0 && c.upstream < 0) return;
    if (reset) owner.resets_++;
    owner.open_--;
    for (int* fd : {&c.client, &c.upstream}) {
      if (*fd < 0) continue;
      if (reset) {
        reset_socket(*fd);
      } else {
        ::close(*fd);
      }
      *fd = -1;
    }
  }

  void reap() {
    conns.remove_if([](const Conn& c) { return c.client < 0 && c.upstream < 0; });
  }
};

FaultProxy::FaultProxy(int upstream_port, std::string upstream_host)
    : engine_(std::make_unique<Engine>(*this, std::move(upstream_host), upstream_port)) {
  port_ = engine_->service.port();
  engine_->service.start([e = engine_.get()] { e->run(); });
}

FaultProxy::~FaultProxy() { stop(); }

std::string FaultProxy::uri() const { return loopback_uri(port_); }

void FaultProxy::stop() {
  if (!engine_) return;
  engine_->service.stop([e = engine_.get()] {
    std::lock_guard<std::mutex> lock(e->mu);
    e->stopping = true;
  });
}

void FaultProxy::forward() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->mode = Mode::Forward;
  engine_->drop_armed = false;
  engine_->reset_bytes[0].reset();
  engine_->reset_bytes[1].reset();
  engine_->matchers.clear();
  engine_->wake();
}

void FaultProxy::delay(std::chrono::milliseconds d) {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->mode = Mode::Delay;
  engine_->delay = std::max(d, std::chrono::milliseconds(0));
  engine_->wake();
}

void FaultProxy::stall() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->mode = Mode::Stall;
  engine_->wake();
}

void FaultProxy::black_hole() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->mode = Mode::BlackHole;
  engine_->wake();
}

void FaultProxy::drop_next_reply() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->drop_armed = true;
  engine_->wake();
}

void FaultProxy::reset_after_bytes(Flow flow, std::size_t n) {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->reset_bytes[Engine::index(flow)] = n;
  engine_->wake();
}

void FaultProxy::reset_after_next_command() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->matchers.push_back(Matcher{true, {}});
  engine_->wake();
}

void FaultProxy::reset_after_command_containing(std::vector<std::string> parts) {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->matchers.push_back(Matcher{true, std::move(parts)});
  engine_->wake();
}

void FaultProxy::mute_after_command_containing(std::vector<std::string> parts) {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->matchers.push_back(Matcher{false, std::move(parts)});
  engine_->wake();
}

void FaultProxy::reset_all() {
  std::lock_guard<std::mutex> lock(engine_->mu);
  engine_->reset_all_requested = true;
  engine_->wake();
}

}  // namespace redkit::test
