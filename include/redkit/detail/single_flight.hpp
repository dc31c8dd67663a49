// In-process single flight: at most one call of a function per key at a
// time; callers that arrive while it runs wait for it and share its result
// or its exception. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace redkit::detail {

template <class R>
class SingleFlight {
 public:
  /// Runs fn() for key, unless a run for key is under way: then waits for
  /// that run and returns a copy of its result, or rethrows its exception.
  /// joined counts the callers that waited; it is incremented before they
  /// start waiting, under the same lock that admits them to the flight.
  template <class F>
  R run(const std::string& key, F&& fn, std::atomic<std::uint64_t>& joined) {
    std::unique_lock<std::mutex> lk(m_);
    auto it = flights_.find(key);
    if (it != flights_.end()) {
      std::shared_future<R> result = it->second;
      joined.fetch_add(1, std::memory_order_relaxed);
      lk.unlock();
      return result.get();
    }
    return lead(lk, key, std::forward<F>(fn));
  }

  /// Like run(), but when a run for key is under way returns nullopt at
  /// once instead of waiting for it.
  template <class F>
  std::optional<R> run_unless_busy(const std::string& key, F&& fn) {
    std::unique_lock<std::mutex> lk(m_);
    if (flights_.count(key) != 0) return std::nullopt;
    return lead(lk, key, std::forward<F>(fn));
  }

  /// True while a run for key is under way.
  bool busy(const std::string& key) const {
    std::lock_guard<std::mutex> lk(m_);
    return flights_.count(key) != 0;
  }

 private:
  // Registers the flight, runs fn without the lock, then removes the flight
  // before publishing: a caller that comes after the removal starts afresh
  // (and finds the stored value), one that came before gets this result.
  template <class F>
  R lead(std::unique_lock<std::mutex>& lk, const std::string& key, F&& fn) {
    std::promise<R> promise;
    flights_.emplace(key, promise.get_future().share());
    lk.unlock();
    try {
      R result = fn();
      finish(key);
      promise.set_value(result);
      return result;
    } catch (...) {
      finish(key);
      promise.set_exception(std::current_exception());
      throw;
    }
  }

  void finish(const std::string& key) noexcept {
    std::lock_guard<std::mutex> lk(m_);
    flights_.erase(key);
  }

  mutable std::mutex m_;
  std::unordered_map<std::string, std::shared_future<R>> flights_;
};

}  // namespace redkit::detail
