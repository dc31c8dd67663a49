#include "support/nodes.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <redkit/connection.hpp>
#include <stdexcept>

namespace redkit::test {

int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc == 0) rc = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(saved));
  return ntohs(addr.sin_port);
}

std::string make_temp_dir(const std::string& what) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/redkit-" + what + "-XXXXXX";
  if (!::mkdtemp(templ.data())) {
    throw std::runtime_error("mkdtemp " + templ + ": " + std::strerror(errno));
  }
  return templ;
}

redkit::Reply node_command(int port, const redkit::Command& cmd) {
  redkit::Options o;
  o.host = "127.0.0.1";
  o.port = port;
  o.connect_timeout = std::chrono::milliseconds(1000);
  o.command_timeout = std::chrono::milliseconds(1000);
  o.keepalive = false;
  redkit::Connection c(o);
  return c.command(cmd);
}

redkit::Reply node_command(int port, std::initializer_list<std::string_view> args) {
  return node_command(port, redkit::Command(args));
}

std::string info_field(std::string_view info, std::string_view field) {
  const std::string needle = std::string(field) + ":";
  std::size_t pos = 0;
  while (pos < info.size()) {
    std::size_t end = info.find('\n', pos);
    if (end == std::string_view::npos) end = info.size();
    std::string_view line = info.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.substr(0, needle.size()) == needle) return std::string(line.substr(needle.size()));
    pos = end + 1;
  }
  return {};
}

std::string redis_server_program() {
#ifdef REDKIT_REDIS_SERVER
  if (::access(REDKIT_REDIS_SERVER, X_OK) == 0) return REDKIT_REDIS_SERVER;
#endif
  return "redis-server";  // ChildProcess searches PATH
}

}  // namespace redkit::test
