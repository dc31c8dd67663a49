// Small helpers shared by the cluster and sentinel harnesses (cluster.hpp,
// sentinel.hpp): free ports, temporary directories, one command to a node.
// Thread safety: free functions; safe from any thread.
// Exceptions: std::runtime_error (ports, directories), redkit::Error (commands).
#pragma once

#include <redkit/command.hpp>
#include <redkit/reply.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace redkit::test {

/// A TCP port on 127.0.0.1 that was free a moment ago.
int pick_free_port();

/// A fresh directory under $TMPDIR (or /tmp) named redkit-<what>-XXXXXX.
std::string make_temp_dir(const std::string& what);

/// Runs one command on 127.0.0.1:port over a fresh connection (1 s
/// timeouts). An error reply is returned, not thrown. @throws redkit::IoError.
redkit::Reply node_command(int port, const redkit::Command& cmd);

/// node_command with a Command made of args.
redkit::Reply node_command(int port, std::initializer_list<std::string_view> args);

/// The value of `field` in an INFO reply ("role" -> "master"), or "".
std::string info_field(std::string_view info, std::string_view field);

/// The path of the redis-server the tests use (as RedisServer does).
std::string redis_server_program();

}  // namespace redkit::test
