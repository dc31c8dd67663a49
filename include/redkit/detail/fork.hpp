// fork() safety: a generation number that changes in a forked child, the
// registry of redkit's open sockets that the child closes, and
// PerProcess<Core>, which gives each process its own copy of a client's
// connections and threads.
//
// After fork() the child has one thread and a copy of the parent's memory:
// the parent's sockets (which it must never read or write: the replies
// would cross), mutexes that other parent threads may have held at the
// moment of the fork (locked for ever in the child), and thread objects
// whose threads do not exist. So the child never touches any of that: it
// closes the inherited descriptors at once (pthread_atfork child handler;
// close() of a copy sends nothing, the parent's socket stays open), and a
// client's first use in the child builds fresh state and leaks the
// inherited state on purpose (destroying it would lock its mutexes and
// join its threads).
//
// Cost on the hot path: one relaxed atomic load and a compare per use.
// Thread safety: everything here is thread-safe.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace redkit::detail {

/// Changes (in the child) every time the process forks.
inline std::atomic<std::uint32_t> fork_generation_counter{0};

/// The current fork generation: compare with one taken earlier to learn
/// whether this is a child of the process that took it.
inline std::uint32_t fork_generation() noexcept { return fork_generation_counter.load(std::memory_order_acquire); }

/// The descriptors of every redkit socket open in this process, closed in
/// a forked child before it returns from fork().
class SocketRegistry {
 public:
  /// The registry; the first call installs the pthread_atfork handlers.
  static SocketRegistry& instance() {
    static SocketRegistry* registry = [] {
      auto* r = new SocketRegistry();  // never destroyed: atfork handlers may run at any time
      ::pthread_atfork(&prepare, &parent, &child);
      return r;
    }();
    return *registry;
  }

  void add(int fd) {
    std::lock_guard<std::mutex> lk(m_);
    fds_.insert(fd);
  }
  void remove(int fd) noexcept {
    try {
      std::lock_guard<std::mutex> lk(m_);
      fds_.erase(fd);
    } catch (...) {
    }
  }

 private:
  SocketRegistry() = default;

  // No thread may be registering while the process forks, so the child
  // finds the set consistent.
  static void prepare() { instance().m_.lock(); }
  static void parent() { instance().m_.unlock(); }
  static void child() {
    SocketRegistry& r = instance();
    for (int fd : r.fds_) ::close(fd);
    r.fds_.clear();
    fork_generation_counter.fetch_add(1, std::memory_order_acq_rel);
    r.m_.unlock();  // locked by this very thread in prepare()
  }

  std::mutex m_;
  std::unordered_set<int> fds_;
};

/// Installs the fork handlers (idempotent). Clients call it when they are
/// made, so that a fork before their first connection is noticed too.
inline void watch_forks() { (void)SocketRegistry::instance(); }

/// One Core per process. get() returns the Core made in this process,
/// making a fresh one (with make()) on the first call after a fork; the
/// inherited Core is then leaked, never used nor destroyed.
template <class Core>
class PerProcess {
 public:
  explicit PerProcess(std::function<Core*()> make)
      : make_(std::move(make)), core_(make_()), generation_(fork_generation()) {
    watch_forks();
  }
  PerProcess(const PerProcess&) = delete;
  PerProcess& operator=(const PerProcess&) = delete;
  ~PerProcess() {
    if (generation_.load(std::memory_order_acquire) == fork_generation()) delete core_.load();
  }

  Core& get() {
    if (generation_.load(std::memory_order_acquire) == fork_generation()) {
      return *core_.load(std::memory_order_acquire);
    }
    return renew();
  }

 private:
  // The first thread of a child to get here claims the renewal (the
  // generation is parked at kRenewing meanwhile); others wait for it.
  Core& renew() {
    const std::uint32_t now = fork_generation();
    for (;;) {
      std::uint32_t seen = generation_.load(std::memory_order_acquire);
      if (seen == now) return *core_.load(std::memory_order_acquire);
      if (seen != kRenewing && generation_.compare_exchange_strong(seen, kRenewing, std::memory_order_acq_rel)) {
        try {
          core_.store(make_(), std::memory_order_release);  // the inherited Core is leaked on purpose
        } catch (...) {
          generation_.store(seen, std::memory_order_release);
          throw;
        }
        generation_.store(now, std::memory_order_release);
        return *core_.load(std::memory_order_acquire);
      }
      std::this_thread::yield();
    }
  }

  static constexpr std::uint32_t kRenewing = 0xffffffffu;

  std::function<Core*()> make_;
  std::atomic<Core*> core_;
  std::atomic<std::uint32_t> generation_;
};

}  // namespace redkit::detail
