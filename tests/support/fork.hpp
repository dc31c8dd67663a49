// Test support: a piece of a test run in a forked copy of the test process,
// and signals sent at a thread while it works (the deadline tests).
// Thread safety: fork_child from any thread (the child has only that one);
// with_alarms_every_100ms from one thread at a time (it owns SIGALRM's
// disposition meanwhile).
#pragma once

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <stdexcept>
#include <thread>

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
/// code (0 = all good; 98 when it threw, after printing what). The child
/// never returns into GoogleTest.
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

inline volatile sig_atomic_t& alarms_seen() {
  static volatile sig_atomic_t n = 0;
  return n;
}
inline void count_alarm(int) { alarms_seen() = alarms_seen() + 1; }

/// Runs f on the calling thread while another thread sends SIGALRM at it
/// ten times a second, handled (and counted) with SA_RESTART or without;
/// the previous handler is back afterwards. Returns how many arrived.
inline int with_alarms_every_100ms(bool sa_restart, const std::function<void()>& f) {
  struct sigaction sa {};
  struct sigaction old {};
  sa.sa_handler = count_alarm;
  sa.sa_flags = sa_restart ? SA_RESTART : 0;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGALRM, &sa, &old) != 0) throw std::runtime_error("sigaction(SIGALRM) failed");
  alarms_seen() = 0;
  const pthread_t target = ::pthread_self();
  std::atomic<bool> done{false};
  std::thread ticker([&] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the signal's rate, not a wait
      if (!done) ::pthread_kill(target, SIGALRM);
    }
  });
  auto finish = [&] {
    done = true;
    ticker.join();
    ::sigaction(SIGALRM, &old, nullptr);
  };
  try {
    f();
  } catch (...) {
    finish();
    throw;
  }
  finish();
  return alarms_seen();
}

}  // namespace redkit::test
