/// @file cache/tracker.hpp
/// The invalidation side of the near cache: for one client in one process,
/// one connection per master that runs
///
///     CLIENT TRACKING on REDIRECT <its own id> BCAST PREFIX <p>...
///     SUBSCRIBE __redis__:invalidate
///
/// and a background thread that reads what those connections receive and
/// tells every near cache of that client. Because each connection redirects
/// to itself, tracking and the invalidation stream live and die together
/// (Redis does not tell a redirect target when tracking is lost,
/// redis/redis#11767). Part of <redkit/cache.hpp>.
///
/// The thread keeps an epoch (TrackingState): even while every master is
/// tracked and confirmed, odd otherwise. It moves to an odd epoch, which
/// makes every copy untrusted at once, and then empties the near caches,
/// when a connection breaks or closes (server restart, CLIENT KILL,
/// failover), when a PING gets no PONG within the client's command_timeout
/// (a dead connection that says nothing; PINGs go every max_age / 4, at most
/// every second), when a master it tracks is no longer a master (Cluster
/// failover), when the client follows a sentinel failover, and when a new
/// prefix must be tracked. It reconnects with backoff and moves to the next
/// even epoch once every master answered the SUBSCRIBE. A nil invalidation
/// (FLUSHALL, FLUSHDB) empties the near caches without changing the epoch.
///
/// Topology: a read stores its value only if the client's topology
/// generation (redirects + slot map reloads + failovers followed, from
/// ClientStats) is the one the thread last verified, both when it starts
/// and when it ends. A read that sees it moved pokes the thread, which
/// checks the masters again (and tracks a new one before stores resume).
///
/// Thread safety: every member is thread-safe. Exceptions: attach() and
/// start() may throw std::bad_alloc or std::system_error (no thread); the
/// thread itself never lets an exception out (a failure means "reconnect").
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "redkit/cache/near_store.hpp"
#include "redkit/command.hpp"
#include "redkit/connection.hpp"
#include "redkit/detail/fork.hpp"
#include "redkit/detail/retry.hpp"
#include "redkit/detail/socket.hpp"
#include "redkit/error.hpp"
#include "redkit/event.hpp"
#include "redkit/lease.hpp"
#include "redkit/redis.hpp"
#include "redkit/reply.hpp"

namespace redkit::detail::cache {

/// The channel tracking sends invalidations on (RESP2 redirect mode).
inline constexpr std::string_view kInvalidateChannel = "__redis__:invalidate";

/// A client's topology generation: it changes whenever the client follows a
/// redirect, reloads a slot map or follows a sentinel failover.
inline std::uint64_t topology_of(const ClientStats& s) noexcept {
  return s.redirects + s.slot_map_reloads + s.failovers;
}

/// The prefixes to track so that every prefix in wanted is covered: a
/// prefix that another one starts with is left out (Redis refuses
/// overlapping prefixes on one connection); empty means "every key".
inline std::vector<std::string> covering_prefixes(std::vector<std::string> wanted) {
  std::sort(wanted.begin(), wanted.end());
  std::vector<std::string> out;
  for (std::string& p : wanted) {
    if (p.empty()) return {};
    if (!out.empty() && std::string_view(p).substr(0, out.back().size()) == out.back()) continue;
    out.push_back(std::move(p));
  }
  return out;
}

/// True if every prefix in wanted is covered by tracked (as
/// covering_prefixes makes it; empty tracked covers all).
inline bool covers(const std::vector<std::string>& tracked, bool tracking_all, std::string_view prefix) {
  if (tracking_all) return true;
  for (const std::string& t : tracked) {
    if (prefix.substr(0, t.size()) == t) return true;
  }
  return false;
}

/// How long the near cache waits for a server (tracking confirmed on first
/// use, a PING's PONG): the client's command_timeout, or 1 s when that is
/// 0 (no limit).
template <class Client>
std::chrono::milliseconds reply_wait(const Client& client) {
  const std::chrono::milliseconds t = client.options().command_timeout;
  return t.count() > 0 ? t : std::chrono::milliseconds(1000);
}

/// The tracker of one client in one process (client.process_local<Tracker>()).
template <class Client>
class Tracker {
  class Inner;

 public:
  using Clock = std::chrono::steady_clock;

  Tracker() : inner_(std::make_shared<Inner>()) {}
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  /// Stops the thread. It may run on the thread itself (when it held the
  /// last handle of the client): the thread then finishes on its own.
  ~Tracker() {
    inner_->stop();
    if (!thread_.joinable()) return;
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

  /// The epoch and verified topology the near caches check.
  const TrackingState& state() const noexcept { return *inner_; }

  /// Adds a near cache of keys starting with prefix. The tracker keeps a
  /// copy of client while it has near caches (given back by detach()).
  /// Sends nothing; a prefix not tracked yet makes the thread start over.
  void attach(NearListener* listener, const std::string& prefix, std::chrono::milliseconds max_age,
              const Client& client) {
    inner_->attach(listener, prefix, max_age, client);
  }

  /// Removes a near cache; no invalidation reaches it once this returns.
  /// The last one takes the tracker's copy of the client with it (to be
  /// destroyed by the caller, outside the tracker).
  std::optional<Client> detach(NearListener* listener) noexcept { return inner_->detach(listener); }

  /// Starts the thread if it is not running, and waits until tracking is
  /// confirmed or timeout passes. True when confirmed.
  bool start(std::chrono::milliseconds timeout) {
    {
      std::lock_guard<std::mutex> lk(m_);
      if (!thread_.joinable()) thread_ = std::thread([inner = inner_] { inner->run(); });
    }
    return inner_->wait_confirmed(timeout);
  }

  /// Asks the thread to check the masters again (a read saw the topology
  /// generation move).
  void poke() noexcept { inner_->poke(); }

 private:
  // Everything the thread uses, shared with it so that it outlives a
  // Tracker destroyed on the thread itself.
  class Inner : public TrackingState {
   public:
    Inner() {
      int fds[2];
      if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "redkit: near cache wake-up pipe");
      }
      wake_read_ = fds[0];
      wake_write_ = fds[1];
      SocketRegistry::instance().add(wake_read_);  // a fork child closes its copies
      SocketRegistry::instance().add(wake_write_);
    }
    ~Inner() {
      links_.clear();
      if (generation_ != fork_generation()) return;  // never: a child leaks the parent's
      SocketRegistry::instance().remove(wake_read_);
      SocketRegistry::instance().remove(wake_write_);
      ::close(wake_read_);
      ::close(wake_write_);
    }

    void attach(NearListener* listener, const std::string& prefix, std::chrono::milliseconds max_age,
                const Client& client) {
      {
        std::unique_lock<std::shared_mutex> lk(listeners_m_);
        listeners_.push_back(Listener{listener, prefix, max_age});
      }
      {
        std::lock_guard<std::mutex> lk(m_);
        if (!client_) client_.emplace(client);
        if (!covers(tracked_, tracking_all_, prefix)) rebuild_ = true;
      }
      wake();
    }

    std::optional<Client> detach(NearListener* listener) noexcept {
      std::optional<Client> last;
      bool none_left = false;
      {
        std::unique_lock<std::shared_mutex> lk(listeners_m_);
        listeners_.erase(std::remove_if(listeners_.begin(), listeners_.end(),
                                        [&](const Listener& l) { return l.listener == listener; }),
                         listeners_.end());
        none_left = listeners_.empty();
      }
      if (none_left) {
        std::lock_guard<std::mutex> lk(m_);
        last.swap(client_);
      }
      wake();
      return last;
    }

    bool wait_confirmed(std::chrono::milliseconds timeout) {
      std::unique_lock<std::mutex> lk(m_);
      return confirmed_cv_.wait_for(lk, timeout, [&] { return stop_ || confirmed(epoch()); });
    }

    void poke() noexcept {
      if (!poked_.exchange(true, std::memory_order_acq_rel)) wake();
    }

    void stop() noexcept {
      {
        std::lock_guard<std::mutex> lk(m_);
        stop_ = true;
      }
      confirmed_cv_.notify_all();
      wake();
    }

    // The thread.
    void run() noexcept {
      while (!stopping()) {
        try {
          step();
        } catch (const ReplyError&) {
          // Refused (no CLIENT TRACKING before Redis 6, an ACL without it):
          // no near copies meanwhile; ask again now and then.
          lose();
          links_.clear();
          pause(std::chrono::seconds(1));
        } catch (...) {
          lose();
          links_.clear();
          pause(backoff_.next_delay());
        }
      }
      lose();
      links_.clear();
    }

   private:
    struct Listener {
      NearListener* listener;
      std::string prefix;
      std::chrono::milliseconds max_age;
    };

    // One master's invalidation connection.
    struct Link {
      std::string name;  // the master as masters() names it
      Lease lease;
      std::optional<Clock::time_point> ping_sent;  // a PING with no PONG yet
    };

    bool stopping() {
      std::lock_guard<std::mutex> lk(m_);
      return stop_;
    }

    void wake() noexcept {
      const char byte = 1;
      while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
      }
    }

    void drain_wake() noexcept {
      char buf[64];
      while (::read(wake_read_, buf, sizeof buf) > 0) {
      }
    }

    // Waits for up to d, or until woken.
    void pause(std::chrono::milliseconds d) {
      pollfd p{wake_read_, POLLIN, 0};
      const int n = ::poll(&p, 1, static_cast<int>(d.count()));
      if (n > 0) drain_wake();
    }

    // One turn of the thread: (re)build when needed, then wait for
    // messages, a heartbeat or a wake-up, and handle what came.
    void step() {
      std::optional<Client> client;
      bool rebuild = false;
      {
        std::lock_guard<std::mutex> lk(m_);
        client = client_;
        rebuild = rebuild_;
        rebuild_ = false;
      }
      if (!client) {  // no near cache: nothing to track
        lose();
        links_.clear();
        pause(std::chrono::seconds(1));
        return;
      }
      if (rebuild || links_.empty()) {
        build(*client);
        return;
      }
      const ClientStats now_stats = client->stats();
      if (now_stats.failovers != failovers_at_build_) {
        build(*client);  // the sentinels named another master
        return;
      }
      if (poked_.exchange(false, std::memory_order_acq_rel) || topology_of(now_stats) != verified_topology()) {
        verify(*client);
      }
      wait_and_read();
    }

    // Drops trust at once (new odd epoch), then the copies.
    void lose() noexcept {
      const std::uint64_t e = epoch();
      if (!confirmed(e)) return;
      epoch_.store(e + 1, std::memory_order_release);
      flush_all();
    }

    void flush_all() noexcept {
      std::shared_lock<std::shared_mutex> lk(listeners_m_);
      for (const Listener& l : listeners_) l.listener->flush();
    }

    // New connections to every master, then a new even epoch.
    void build(Client& client) {
      lose();
      links_.clear();
      std::vector<std::string> prefixes;
      {
        std::shared_lock<std::shared_mutex> lk(listeners_m_);
        for (const Listener& l : listeners_) prefixes.push_back(l.prefix);
      }
      const bool all = std::find(prefixes.begin(), prefixes.end(), std::string()) != prefixes.end();
      prefixes = covering_prefixes(std::move(prefixes));
      {
        std::lock_guard<std::mutex> lk(m_);
        tracked_ = prefixes;
        tracking_all_ = all;
      }
      timeout_ = reply_wait(client);
      const ClientStats before = client.stats();
      std::vector<Redis> masters = client.masters();
      for (Redis& m : masters) links_.push_back(open(m, prefixes));
      const ClientStats after = client.stats();
      if (topology_of(after) != topology_of(before)) {
        // It moved while we connected (our own connect may have followed a
        // failover): once more, with what the client knows now.
        std::lock_guard<std::mutex> lk(m_);
        rebuild_ = true;
        return;
      }
      failovers_at_build_ = after.failovers;
      next_ping_ = Clock::now() + heartbeat_period();
      backoff_.reset();
      confirm(topology_of(after));
    }

    void confirm(std::uint64_t topology) {
      topology_.store(topology, std::memory_order_release);
      {
        std::lock_guard<std::mutex> lk(m_);
        const std::uint64_t e = epoch();
        epoch_.store(confirmed(e) ? e + 2 : e + 1, std::memory_order_release);
      }
      confirmed_cv_.notify_all();
    }

    // The client's topology moved: still the same masters? A master gone
    // means the keys it served may now live where nothing tracked them:
    // start over. New masters only: track them too, then carry on.
    void verify(Client& client) {
      const ClientStats before = client.stats();
      std::vector<Redis> masters = client.masters();
      std::vector<std::string> names;
      for (Redis& m : masters) names.push_back(endpoint_name(m.options()));
      for (const Link& l : links_) {
        if (std::find(names.begin(), names.end(), l.name) == names.end()) {
          build(client);
          return;
        }
      }
      std::vector<std::string> prefixes;
      {
        std::lock_guard<std::mutex> lk(m_);
        prefixes = tracked_;
      }
      for (std::size_t i = 0; i < masters.size(); ++i) {
        const bool known = std::any_of(links_.begin(), links_.end(), [&](const Link& l) { return l.name == names[i]; });
        if (!known) links_.push_back(open(masters[i], prefixes));
      }
      const ClientStats after = client.stats();
      if (after.failovers != failovers_at_build_) {
        build(client);
        return;
      }
      if (topology_of(after) == topology_of(before)) {
        topology_.store(topology_of(after), std::memory_order_release);
      } else {
        poked_.store(true, std::memory_order_release);  // look again next turn
      }
    }

    // One invalidation connection: tracking redirected to itself, then the
    // subscription, both confirmed before this returns.
    Link open(Redis& master, const std::vector<std::string>& prefixes) {
      Link link{endpoint_name(master.options()), master.lease(), std::nullopt};
      Connection& c = link.lease.connection();
      const Command setup[] = {Command{"CLIENT", "ID"}, Command{"ROLE"}};
      const detail::Deadline d = detail::Deadline::after(timeout_);
      std::vector<Reply> first = c.pipeline(setup, 2, d);
      const long long id = first[0].integer();
      // A connection to a server that is no longer a master (a pooled one
      // from before a failover) would track the wrong node.
      if (first[1].is_array() && first[1].size() > 0 && first[1][0].string() != "master") {
        c.mark_broken();
        throw IoError("redkit: near cache: " + c.endpoint() + " is not a master any more");
      }
      Command tracking{"CLIENT", "TRACKING", "on", "REDIRECT"};
      tracking.arg(id).arg("BCAST");
      for (const std::string& p : prefixes) tracking.arg("PREFIX").arg(p);
      const Command subscribe = Command{"SUBSCRIBE"}.arg(kInvalidateChannel);
      link.lease.send(tracking);
      link.lease.send(subscribe);
      Reply ok = c.read(d);
      Reply sub = c.read(d);
      if (ok.is_error()) {
        throw ReplyError("redkit: near cache: " + c.endpoint() + " refused CLIENT TRACKING: " +
                         std::string(ok.error()));
      }
      if (!sub.is_array() || sub.size() < 2 || sub[0].string() != "subscribe" || sub[1].string() != kInvalidateChannel) {
        sub.check();
        throw ProtocolError("redkit: near cache: unexpected answer to SUBSCRIBE from " + c.endpoint());
      }
      return link;
    }

    // Waits for messages on the links, the next heartbeat or a wake-up.
    void wait_and_read() {
      auto now = Clock::now();
      auto until = next_ping_;
      for (const Link& l : links_) {
        if (l.ping_sent) until = std::min(until, *l.ping_sent + timeout_);
      }
      std::vector<pollfd> fds;
      fds.push_back(pollfd{wake_read_, POLLIN, 0});
      for (Link& l : links_) fds.push_back(pollfd{l.lease.connection().fd(), POLLIN, 0});
      const auto wait_ms = until > now ? std::chrono::ceil<std::chrono::milliseconds>(until - now).count() : 0;
      const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(wait_ms, 1000)));
      if (n < 0 && errno != EINTR) throw IoError("redkit: near cache: poll failed");
      if (n > 0 && fds[0].revents) drain_wake();
      for (std::size_t i = 0; i < links_.size(); ++i) {
        if (n > 0 && fds[i + 1].revents) read_all(links_[i]);
      }
      heartbeat();
    }

    // Every message that has arrived on link, in order.
    void read_all(Link& link) {
      Connection& c = link.lease.connection();
      while (std::optional<Reply> r = c.try_read(detail::Deadline::at(Clock::now()))) handle(link, *r);
    }

    void handle(Link& link, const Reply& r) {
      if (!r.is_array() || r.size() < 2) {
        r.check();
        throw ProtocolError("redkit: near cache: unexpected message on the invalidation connection");
      }
      const std::string_view kind = r[0].string();
      if (kind == "message" && r.size() == 3 && r[1].string() == kInvalidateChannel) {
        invalidate(r[2]);
      } else if (kind == "pong") {
        link.ping_sent.reset();
      } else if (kind != "subscribe") {
        throw ProtocolError("redkit: near cache: unexpected '" + std::string(kind.substr(0, 32)) +
                            "' on the invalidation connection");
      }
    }

    // The keys of one invalidation message; nil means the database was
    // flushed.
    void invalidate(const ReplyView& keys) {
      if (keys.is_nil()) {
        flush_all();
        return;
      }
      if (!keys.is_array()) throw ProtocolError("redkit: near cache: invalidation message without keys");
      std::shared_lock<std::shared_mutex> lk(listeners_m_);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        const std::string_view key = keys[i].string();
        for (const Listener& l : listeners_) {
          if (key.substr(0, l.prefix.size()) == l.prefix) l.listener->invalidate(key.substr(l.prefix.size()));
        }
      }
    }

    // PING every period on each link; a PONG overdue means the connection
    // is dead, though it says nothing.
    void heartbeat() {
      const auto now = Clock::now();
      for (const Link& l : links_) {
        if (l.ping_sent && now - *l.ping_sent > timeout_) {
          throw TimeoutError("redkit: near cache: no PONG from " + l.name + " within " +
                             std::to_string(timeout_.count()) + " ms");
        }
      }
      if (now < next_ping_) return;
      for (Link& l : links_) {
        if (l.ping_sent) continue;
        l.lease.send(Command{"PING"});
        l.ping_sent = now;
      }
      next_ping_ = now + heartbeat_period();
    }

    // max_age / 4 of the most demanding near cache attached now, within
    // [10 ms, 1 s] (one that detached no longer counts).
    std::chrono::milliseconds heartbeat_period() {
      std::shared_lock<std::shared_mutex> lk(listeners_m_);
      std::chrono::milliseconds p{1000};
      for (const Listener& l : listeners_) p = std::min(p, l.max_age / 4);
      return std::max(p, std::chrono::milliseconds(10));
    }

    const std::uint32_t generation_ = fork_generation();
    int wake_read_ = -1;
    int wake_write_ = -1;

    std::shared_mutex listeners_m_;  // guards listeners_
    std::vector<Listener> listeners_;

    std::mutex m_;  // guards the members up to confirmed_cv_
    std::optional<Client> client_;
    std::vector<std::string> tracked_;
    bool tracking_all_ = false;
    bool rebuild_ = false;
    bool stop_ = false;
    std::condition_variable confirmed_cv_;

    std::atomic<bool> poked_{false};

    // The thread's own.
    std::vector<Link> links_;
    Clock::time_point next_ping_{};
    std::chrono::milliseconds timeout_{1000};
    std::uint64_t failovers_at_build_ = 0;
    Backoff backoff_{std::chrono::hours(24)};
  };

  std::shared_ptr<Inner> inner_;
  std::mutex m_;  // guards thread_
  std::thread thread_;
};

}  // namespace redkit::detail::cache
