// Where a client's connections report events and count what they did:
// calls Options::on_event and keeps the ClientStats counters. One per
// client per process. Thread safety: thread-safe (relaxed atomics; the
// handler is the user's and must be thread-safe itself).
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <utility>

#include "redkit/event.hpp"

namespace redkit::detail {

class EventSink {
 public:
  explicit EventSink(EventHandler handler = {}) : handler_(std::move(handler)) {}

  /// Counts the event and calls the handler; whatever it throws is dropped.
  void emit(EventType type, std::string_view endpoint, std::string_view detail = {}) noexcept {
    switch (type) {
      case EventType::ConnectionOpened:
        bump(created_);
        bump(open_);
        break;
      case EventType::ConnectionClosed:
      case EventType::ConnectionBroken:
        open_.fetch_sub(1, std::memory_order_relaxed);
        break;
      case EventType::ConnectFailed: bump(connect_failures_); break;
      case EventType::PoolWaitExhausted: bump(timeouts_); break;
      case EventType::SlotMapReloaded: bump(reloads_); break;
      case EventType::RedirectFollowed: bump(redirects_); break;
      case EventType::FailoverFollowed: bump(failovers_); break;
      case EventType::TlsHandshakeFailed: break;
    }
    if (!handler_) return;
    try {
      handler_(Event{type, endpoint, detail});
    } catch (...) {
    }
  }

  void count_commands(std::size_t n) noexcept { commands_.fetch_add(n, std::memory_order_relaxed); }
  void count_io_error(bool timeout) noexcept {
    bump(io_errors_);
    if (timeout) bump(timeouts_);
  }

  ClientStats snapshot() const noexcept {
    ClientStats s;
    s.connections_open = open_.load(std::memory_order_relaxed);
    s.connections_created = created_.load(std::memory_order_relaxed);
    s.connect_failures = connect_failures_.load(std::memory_order_relaxed);
    s.commands_sent = commands_.load(std::memory_order_relaxed);
    s.io_errors = io_errors_.load(std::memory_order_relaxed);
    s.timeouts = timeouts_.load(std::memory_order_relaxed);
    s.redirects = redirects_.load(std::memory_order_relaxed);
    s.slot_map_reloads = reloads_.load(std::memory_order_relaxed);
    s.failovers = failovers_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  using Counter = std::atomic<std::uint64_t>;
  static void bump(Counter& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

  const EventHandler handler_;
  Counter open_{0}, created_{0}, connect_failures_{0}, commands_{0}, io_errors_{0}, timeouts_{0}, redirects_{0},
      reloads_{0}, failovers_{0};
};

}  // namespace redkit::detail
