// A bounded pool of Connections to one endpoint, and Checkout: the one RAII
// way every part of redkit borrows a connection (a command, a pipeline, a
// Lease, a slot-map refresh, a sentinel query). Thread-safe.
//
// A Checkout gives its connection back when it goes, on every path: to the
// idle list if Connection::reusable() (no reply owed, not broken, no
// session state left behind), otherwise closed. A connection that broke on
// an error that suggests the server went away (not a timeout) also drops
// every idle connection of the pool (generation bump), so after a restart
// the next call connects afresh instead of failing once per stale
// connection. An idle connection whose socket turned readable (peer closed
// it) is dropped before use; one used within the last millisecond skips
// that check (see Connection::idle_healthy).
//
// A Checkout keeps its pool alive (shared_ptr). In a fork child, a Checkout
// made in the parent leaks its connection instead of touching the pool
// (whose mutex another parent thread may have held at the fork).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "redkit/connection.hpp"
#include "redkit/detail/events.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/error.hpp"

namespace redkit::detail {

class Pool;

/// A borrowed connection, returned (or discarded) when the Checkout goes.
/// Move-only; belongs to one thread at a time.
class Checkout {
 public:
  Checkout() noexcept = default;
  /// A connection of no pool (a refresh, a sentinel query): closed at the end.
  explicit Checkout(std::unique_ptr<Connection> standalone) noexcept
      : c_(std::move(standalone)), generation_(fork_generation()) {}
  Checkout(Checkout&& o) noexcept
      : pool_(std::move(o.pool_)), c_(std::move(o.c_)), generation_(o.generation_) {}
  Checkout& operator=(Checkout&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::move(o.pool_);
      c_ = std::move(o.c_);
      generation_ = o.generation_;
    }
    return *this;
  }
  Checkout(const Checkout&) = delete;
  Checkout& operator=(const Checkout&) = delete;
  ~Checkout() { reset(); }

  explicit operator bool() const noexcept { return c_ != nullptr; }
  Connection& operator*() const noexcept { return *c_; }
  Connection* operator->() const noexcept { return c_.get(); }
  Connection* get() const noexcept { return c_.get(); }

  /// Gives the connection back now (see the file comment).
  inline void reset() noexcept;

 private:
  friend class Pool;
  Checkout(std::shared_ptr<Pool> pool, std::unique_ptr<Connection> c) noexcept
      : pool_(std::move(pool)), c_(std::move(c)), generation_(fork_generation()) {}

  std::shared_ptr<Pool> pool_;
  std::unique_ptr<Connection> c_;
  std::uint32_t generation_ = 0;
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  using Connector = std::function<std::unique_ptr<Connection>()>;

  /// A pool of at most limit connections made by connect; a checkout waits
  /// up to wait for one to come back. Make it with std::make_shared.
  Pool(std::size_t limit, std::chrono::milliseconds wait, std::string name, Connector connect,
       std::shared_ptr<EventSink> events)
      : limit_(limit == 0 ? 1 : limit),
        wait_(wait),
        name_(std::move(name)),
        connect_(std::move(connect)),
        events_(std::move(events)) {}

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// A connection for exclusive use: an idle one, a new one, or the next
  /// one given back within the pool wait timeout.
  /// @throws TimeoutError if none frees up in time (PoolWaitExhausted);
  /// whatever connecting throws (nothing was sent then).
  Checkout checkout() { return take(true); }

  /// Like checkout(), but returns an empty Checkout at once instead of
  /// waiting when every connection is in use. It may still connect.
  Checkout try_checkout() { return take(false); }

  /// Drops every idle connection; those in use are dropped when returned.
  void invalidate() noexcept {
    std::vector<std::unique_ptr<Connection>> doomed;
    {
      std::lock_guard<std::mutex> lk(m_);
      ++generation_;
      open_ -= idle_.size();
      doomed.swap(idle_);
    }
    cv_.notify_all();
  }

  const std::string& name() const noexcept { return name_; }

 private:
  friend class Checkout;

  Checkout take(bool wait) {
    std::unique_lock<std::mutex> lk(m_);
    const auto deadline = std::chrono::steady_clock::now() + wait_;
    for (;;) {
      while (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        if (c->generation == generation_ && c->idle_healthy()) return Checkout(shared_from_this(), std::move(c));
        --open_;
        lk.unlock();
        c.reset();  // closed outside the lock
        lk.lock();
      }
      if (open_ < limit_) {
        ++open_;
        const std::uint64_t gen = generation_;
        lk.unlock();
        try {
          auto c = connect_();
          c->generation = gen;
          return Checkout(shared_from_this(), std::move(c));
        } catch (...) {
          lk.lock();
          --open_;
          cv_.notify_one();
          throw;
        }
      }
      if (!wait) return Checkout();
      if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= limit_) {
        lk.unlock();
        const std::string what = "redkit: no free connection to " + name_ + " within " +
                                 std::to_string(wait_.count()) + " ms (" + std::to_string(limit_) +
                                 " open, all in use)";
        if (events_) {
          events_->emit(EventType::PoolWaitExhausted, name_, what);
        }
        throw TimeoutError(what);
      }
    }
  }

  // Takes back c; keeps it when reusable and of this generation.
  void give_back(std::unique_ptr<Connection> c) noexcept {
    const bool keep = c->reusable();
    const bool lost = c->broken() && c->lost_server();
    {
      std::lock_guard<std::mutex> lk(m_);
      if (keep && c->generation == generation_) {
        c->touch();
        idle_.push_back(std::move(c));
      } else {
        --open_;
      }
    }
    cv_.notify_one();
    c.reset();  // closes a discarded one outside the lock
    if (lost) invalidate();
  }

  const std::size_t limit_;
  const std::chrono::milliseconds wait_;
  const std::string name_;
  const Connector connect_;
  const std::shared_ptr<EventSink> events_;

  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;
  std::uint64_t generation_ = 0;
};

inline void Checkout::reset() noexcept {
  if (!c_) {
    pool_.reset();
    return;
  }
  if (generation_ != fork_generation()) {
    // Inherited across fork(): the parent's; its socket is closed already.
    (void)c_.release();
    (void)new std::shared_ptr<Pool>(std::move(pool_));  // never destroy the parent's pool in the child
    return;
  }
  if (pool_) {
    pool_->give_back(std::move(c_));
    pool_.reset();
  } else {
    c_.reset();
  }
}

}  // namespace redkit::detail
