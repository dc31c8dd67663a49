// Test support: running a piece of a test in a forked child. The child
// never returns into GoogleTest: it runs the body and _exits with its code.
// Thread safety: fork() from a test thread while other threads run is the
// point of these tests; the body must only use what is fork-safe (redkit is).
#pragma once

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <exception>

namespace redkit::test {

/// Waits for a forked child; its exit code (or 128 + signal).
inline int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// Runs body in a forked child and returns its pid; body returns the exit
/// code (0 = all good; an exception exits with 98).
template <class Body>
pid_t fork_child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      code = 98;
    }
    std::fflush(stderr);
    ::_exit(code);
  }
  return pid;
}

}  // namespace redkit::test
