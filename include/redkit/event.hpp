/// @file event.hpp
/// Connection and topology events (Options::on_event) and client counters
/// (Redis::stats(), Cluster::stats()).
///
/// Thread safety: Event and ClientStats are plain values. The handler in
/// Options::on_event is called on whichever thread hit the event (the caller
/// of a command, or the client's scheduler thread), possibly on several
/// threads at once: it must be thread-safe. It runs inline, so a slow
/// handler slows the command that raised the event. An exception it throws
/// is swallowed (events never change what a command does).
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace redkit {

/// What happened. Each value names the Redis-side fact it reports.
enum class EventType {
  ConnectionOpened,    ///< a connection was set up (connect, TLS handshake, AUTH/SELECT done)
  ConnectionClosed,    ///< a healthy connection was closed (pool shrink, client destroyed, state left dirty)
  ConnectionBroken,    ///< a connection was discarded after an I/O or protocol error (detail: the error)
  ConnectFailed,       ///< connecting or its setup failed (detail: the error)
  PoolWaitExhausted,   ///< no free connection within pool_wait_timeout (detail: the pool)
  SlotMapReloaded,     ///< Cluster: CLUSTER SLOTS was read and installed (detail: node asked)
  RedirectFollowed,    ///< Cluster: a MOVED or ASK was followed (detail: the redirect)
  FailoverFollowed,    ///< sentinel mode: the sentinels named a new master (detail: old -> new)
  TlsHandshakeFailed,  ///< the TLS handshake failed (detail: the reason); ConnectFailed follows
};

/// One event. The string views are valid only during the handler's call.
struct Event {
  EventType type;             ///< what happened
  std::string_view endpoint;  ///< "host:port" or "unix:/path" of the server concerned
  std::string_view detail;    ///< error text, redirect, pool name; may be empty; never a password
};

/// The type of Options::on_event.
using EventHandler = std::function<void(const Event&)>;

/// The name of an event type ("ConnectionOpened", ...), for logs.
constexpr std::string_view event_name(EventType t) noexcept {
  switch (t) {
    case EventType::ConnectionOpened: return "ConnectionOpened";
    case EventType::ConnectionClosed: return "ConnectionClosed";
    case EventType::ConnectionBroken: return "ConnectionBroken";
    case EventType::ConnectFailed: return "ConnectFailed";
    case EventType::PoolWaitExhausted: return "PoolWaitExhausted";
    case EventType::SlotMapReloaded: return "SlotMapReloaded";
    case EventType::RedirectFollowed: return "RedirectFollowed";
    case EventType::FailoverFollowed: return "FailoverFollowed";
    case EventType::TlsHandshakeFailed: return "TlsHandshakeFailed";
  }
  return "unknown";
}

/// Counters of one client (all its copies) in this process since it was
/// made (a forked child starts again from zero). Read with stats().
struct ClientStats {
  std::uint64_t connections_open = 0;     ///< connections open now (pooled, leased, in use)
  std::uint64_t connections_created = 0;  ///< connections set up successfully
  std::uint64_t connect_failures = 0;     ///< connects (or their setup) that failed
  std::uint64_t commands_sent = 0;        ///< commands written (a pipeline of n counts n)
  std::uint64_t io_errors = 0;            ///< I/O and protocol errors, timeouts included
  std::uint64_t timeouts = 0;             ///< of which timeouts (connect, command, pool wait)
  std::uint64_t redirects = 0;            ///< Cluster: MOVED/ASK followed
  std::uint64_t slot_map_reloads = 0;     ///< Cluster: slot maps installed
  std::uint64_t failovers = 0;            ///< sentinel mode: new masters followed
};

}  // namespace redkit
