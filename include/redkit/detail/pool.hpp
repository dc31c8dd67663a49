// A bounded pool of Connections to one endpoint. Thread-safe.
//
// Connections are created lazily, reused LIFO, and dropped when broken. An
// I/O error other than a timeout (see run_on) usually means the server went away, so it
// invalidates every idle connection at once (generation bump): after a
// restart the next call connects afresh instead of failing once per stale
// connection. An idle connection whose socket turned readable (peer closed
// it) is dropped before use; a connection used within the last millisecond
// skips that check (see Connection::idle_healthy), so a server that dies in
// that millisecond costs its callers one IoError.
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
#include "redkit/error.hpp"
#include "redkit/options.hpp"

namespace redkit::detail {

class Pool {
 public:
  using Connector = std::function<std::unique_ptr<Connection>()>;

  Pool(std::size_t limit, std::chrono::milliseconds wait, std::string name, Connector connect)
      : limit_(limit == 0 ? 1 : limit), wait_(wait), name_(std::move(name)), connect_(std::move(connect)) {}

  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// A connection for exclusive use; give it back with release().
  /// @throws TimeoutError if none frees up within the pool wait timeout;
  /// whatever connecting throws.
  std::unique_ptr<Connection> acquire() {
    std::unique_lock<std::mutex> lk(m_);
    const auto deadline = std::chrono::steady_clock::now() + wait_;
    for (;;) {
      while (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        if (c->generation == generation_ && c->idle_healthy()) return c;
        --open_;
      }
      if (open_ < limit_) {
        ++open_;
        const std::uint64_t gen = generation_;
        lk.unlock();
        try {
          auto c = connect_();
          c->generation = gen;
          return c;
        } catch (...) {
          lk.lock();
          --open_;
          cv_.notify_one();
          throw;
        }
      }
      if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= limit_) {
        throw TimeoutError("redkit: no free connection to " + name_ + " within " +
                           std::to_string(wait_.count()) + " ms (pool size " +
                           std::to_string(limit_) + ")");
      }
    }
  }

  /// Returns a connection; a broken or outdated one is closed.
  void release(std::unique_ptr<Connection> c) noexcept {
    std::unique_lock<std::mutex> lk(m_);
    if (c->broken() || c->generation != generation_) {
      --open_;
      lk.unlock();
      c.reset();
    } else {
      c->touch();
      idle_.push_back(std::move(c));
      lk.unlock();
    }
    cv_.notify_one();
  }

  /// Drops every idle connection; those in use are dropped on release.
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

 private:
  const std::size_t limit_;
  const std::chrono::milliseconds wait_;
  const std::string name_;
  const Connector connect_;

  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;
  std::uint64_t generation_ = 0;
};

/// Runs f(Connection&) on c, which came from pool.acquire(), and gives it
/// back to the pool whatever happens. A timeout leaves the connection
/// unusable (a reply may still arrive on it); any other I/O error usually
/// means the server went away, so it invalidates the whole pool. Taking an
/// acquired connection, rather than acquiring here, lets a caller tell a
/// failed connect (nothing was sent) from a failure after sending.
template <class F>
auto run_on(Pool& pool, std::unique_ptr<Connection> c, F&& f) -> decltype(f(std::declval<Connection&>())) {
  try {
    auto result = f(*c);
    pool.release(std::move(c));
    return result;
  } catch (const TimeoutError&) {
    c->mark_broken();
    pool.release(std::move(c));
    throw;
  } catch (const IoError&) {
    pool.release(std::move(c));
    pool.invalidate();
    throw;
  } catch (...) {
    pool.release(std::move(c));
    throw;
  }
}

}  // namespace redkit::detail
