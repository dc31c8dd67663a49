#include "support/scripted_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "support/resp_framer.hpp"
#include "support/socket_util.hpp"

namespace redkit::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Kind = ServerScript::Step::Kind;

constexpr std::size_t kMaxInput = 16 << 20;  // unread client bytes kept; reading pauses beyond

struct Conn {
  int fd = -1;
  const ServerScript* script = nullptr;
  std::size_t step = 0;
  bool entered = false;  // the current step's state below is set up
  std::size_t need = 0;  // ReadBytes: bytes, ReadCommand: commands still to come
  std::size_t pos = 0;   // Send: bytes written
  Clock::time_point wake_at{};
  bool want_write = false;  // a Send waits for POLLOUT
  bool done = false;        // the script ran out: silent from now on
  std::string in;           // client bytes not yet taken by a read step
  RespFramer framer;
};

}  // namespace

ServerScript& ServerScript::read_bytes(std::size_t n) {
  steps_.push_back(Step{Kind::ReadBytes, {}, n, milliseconds(0)});
  return *this;
}
ServerScript& ServerScript::read_command(std::size_t count) {
  steps_.push_back(Step{Kind::ReadCommand, {}, count, milliseconds(0)});
  return *this;
}
ServerScript& ServerScript::send(std::string bytes) {
  steps_.push_back(Step{Kind::Send, std::move(bytes), 0, milliseconds(0)});
  return *this;
}
ServerScript& ServerScript::dribble(std::string bytes, std::chrono::milliseconds gap) {
  steps_.push_back(Step{Kind::Send, std::move(bytes), 0, std::max(gap, milliseconds(1))});
  return *this;
}
ServerScript& ServerScript::pause(std::chrono::milliseconds d) {
  steps_.push_back(Step{Kind::Pause, {}, 0, std::max(d, milliseconds(0))});
  return *this;
}
ServerScript& ServerScript::close() {
  steps_.push_back(Step{Kind::Close, {}, 0, milliseconds(0)});
  return *this;
}
ServerScript& ServerScript::reset() {
  steps_.push_back(Step{Kind::Reset, {}, 0, milliseconds(0)});
  return *this;
}

struct ScriptedServer::Engine {
  ScriptedServer& owner;
  std::vector<ServerScript> scripts;
  LoopbackService service{"ScriptedServer"};  // the listener, the wake-up and the thread
  std::mutex mu;
  bool stopping = false;
  std::list<Conn> conns;  // only the thread touches these

  Engine(ScriptedServer& o, std::vector<ServerScript> s) : owner(o), scripts(std::move(s)) {}

  void run() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping) break;
      }
      const auto now = Clock::now();
      for (Conn& c : conns) advance(c, now);
      conns.remove_if([](const Conn& c) { return c.fd < 0; });

      std::vector<pollfd> fds{{service.listen_fd(), POLLIN, 0}, {service.wake_fd(), POLLIN, 0}};
      auto next = Clock::time_point::max();
      for (Conn& c : conns) {
        short ev = c.in.size() < kMaxInput ? POLLIN : 0;
        if (c.want_write) ev |= POLLOUT;
        fds.push_back({c.fd, ev, 0});
        if (!c.done && c.wake_at > now) next = std::min(next, c.wake_at);
      }
      int timeout = 1000;
      if (next != Clock::time_point::max()) {
        timeout = static_cast<int>(
            std::clamp<long long>(std::chrono::ceil<milliseconds>(next - now).count(), 0, 1000));
      }
      if (::poll(fds.data(), fds.size(), timeout) < 0) continue;  // EINTR
      if (fds[1].revents & POLLIN) service.drain();
      auto it = conns.begin();
      for (std::size_t i = 2; i < fds.size(); ++i, ++it) {
        if (fds[i].revents & POLLOUT) it->want_write = false;
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) receive(*it);
      }
      if (fds[0].revents & POLLIN) accept_one();
    }
    for (Conn& c : conns) {
      if (c.fd >= 0) ::close(c.fd);
    }
    conns.clear();
  }

  void accept_one() {
    const int fd = ::accept4(service.listen_fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    const std::size_t index = owner.accepted_++;
    if (conns.size() >= kMaxConnections) {
      reset_socket(fd);
      return;
    }
    Conn c;
    c.fd = fd;
    c.script = &scripts[std::min(index, scripts.size() - 1)];
    conns.push_back(std::move(c));
  }

  void receive(Conn& c) {
    char buf[64 * 1024];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      owner.client_closed_++;
      ::close(c.fd);
      c.fd = -1;
      return;
    }
    owner.received_ += static_cast<std::size_t>(n);
    if (!c.done) c.in.append(buf, static_cast<std::size_t>(n));
  }

  // Runs c's steps as far as they go without waiting.
  void advance(Conn& c, Clock::time_point now) {
    const auto& steps = c.script->steps();
    while (c.fd >= 0 && !c.done) {
      if (c.step == steps.size()) {
        c.done = true;
        c.in.clear();
        owner.finished_++;
        return;
      }
      const ServerScript::Step& s = steps[c.step];
      if (!c.entered) {
        c.entered = true;
        c.need = s.count;
        c.pos = 0;
        c.wake_at = s.kind == Kind::Pause ? now + s.time : now;
      }
      if (!run_step(c, s, now)) return;
      c.step++;
      c.entered = false;
    }
  }

  // One step; true when it is complete.
  bool run_step(Conn& c, const ServerScript::Step& s, Clock::time_point now) {
    switch (s.kind) {
      case Kind::ReadBytes: {
        const std::size_t take = std::min(c.need, c.in.size());
        c.in.erase(0, take);
        c.need -= take;
        return c.need == 0;
      }
      case Kind::ReadCommand:
        while (c.need > 0 && !c.in.empty()) {
          c.in.erase(0, c.framer.feed(c.in));
          if (c.framer.frame_ended()) c.need--;
        }
        return c.need == 0;
      case Kind::Pause:
        return now >= c.wake_at;
      case Kind::Send: {
        if (now < c.wake_at || c.want_write) return false;
        const bool dribbled = s.time.count() > 0;
        while (c.pos < s.bytes.size()) {
          const std::size_t len = dribbled ? 1 : s.bytes.size() - c.pos;
          const ssize_t w = ::send(c.fd, s.bytes.data() + c.pos, len, MSG_NOSIGNAL);
          if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
              c.want_write = true;
            } else {
              ::close(c.fd);
              c.fd = -1;
              owner.client_closed_++;
            }
            return false;
          }
          c.pos += static_cast<std::size_t>(w);
          if (dribbled && c.pos < s.bytes.size()) {
            c.wake_at = now + s.time;
            return false;
          }
        }
        return true;
      }
      case Kind::Close:
      case Kind::Reset:
        owner.finished_++;  // before the peer can see it
        if (s.kind == Kind::Close) {
          ::close(c.fd);
        } else {
          reset_socket(c.fd);
        }
        c.fd = -1;
        return false;
    }
    return false;
  }
};

ScriptedServer::ScriptedServer(ServerScript script) : ScriptedServer(std::vector<ServerScript>{std::move(script)}) {}

ScriptedServer::ScriptedServer(std::vector<ServerScript> scripts) {
  if (scripts.empty()) throw std::runtime_error("ScriptedServer: no script");
  engine_ = std::make_unique<Engine>(*this, std::move(scripts));
  port_ = engine_->service.port();
  engine_->service.start([e = engine_.get()] { e->run(); });
}

ScriptedServer::~ScriptedServer() { stop(); }

std::string ScriptedServer::uri() const { return loopback_uri(port_); }

void ScriptedServer::stop() {
  if (!engine_) return;
  engine_->service.stop([e = engine_.get()] {
    std::lock_guard<std::mutex> lock(e->mu);
    e->stopping = true;
  });
}

}  // namespace redkit::test
