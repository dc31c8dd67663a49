#include "support/socket_util.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace redkit::test {

int listen_loopback(int* port, int backlog) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int saved = errno;
    ::close(fd);
    throw std::runtime_error(std::string("listen on 127.0.0.1:0: ") + std::strerror(saved));
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

int connect_loopback(const std::string& host, int port, std::chrono::milliseconds timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return -1;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof err;
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 ||
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void reset_socket(int fd) {
  if (fd < 0) return;
  const linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(fd);
}

std::string loopback_uri(int port) { return "redis://127.0.0.1:" + std::to_string(port) + "/0"; }

LoopbackService::LoopbackService(const std::string& who) {
  listen_fd_ = listen_loopback(&port_);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int saved = errno;
    close_sockets();
    throw std::runtime_error(who + ": eventfd: " + std::strerror(saved));
  }
}

LoopbackService::~LoopbackService() { close_sockets(); }

void LoopbackService::start(std::function<void()> run) {
  try {
    thread_ = std::thread(std::move(run));
  } catch (...) {
    close_sockets();
    throw;
  }
}

void LoopbackService::stop(const std::function<void()>& request_stop) {
  if (!thread_.joinable()) return;
  request_stop();
  wake();
  thread_.join();
  close_sockets();
}

void LoopbackService::wake() const noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void LoopbackService::drain() const noexcept {
  std::uint64_t n;
  [[maybe_unused]] ssize_t r = ::read(wake_fd_, &n, sizeof n);
}

void LoopbackService::close_sockets() noexcept {
  for (int* fd : {&listen_fd_, &wake_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

FullBacklog::FullBacklog() {
  fd_ = listen_loopback(&port_, 0);
  for (int i = 0; i < 4; ++i) {  // fill the queue: stop at the first connect that hangs
    const int c = connect_loopback("127.0.0.1", port_, std::chrono::milliseconds(100));
    if (c < 0) break;
    fillers_.push_back(c);
  }
  if (fillers_.empty()) {
    ::close(fd_);
    throw std::runtime_error("FullBacklog: no connect to 127.0.0.1:" + std::to_string(port_) + " completed");
  }
}

FullBacklog::~FullBacklog() {
  for (int c : fillers_) ::close(c);
  ::close(fd_);
}

}  // namespace redkit::test
