/// @file lock/hold.hpp
/// What a process knows of a lock name: its holds (HoldState, one per
/// acquisition, renewed through the client's Renewer) and its local waiters
/// (LocalName, one per client, process and name, shared by every RedisLock
/// object on that name). Internals of RedisLock and RedisRedlock.
/// Thread safety: every member is thread-safe as documented per field.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "redkit/detail/name_registry.hpp"
#include "redkit/detail/renewer.hpp"
#include "redkit/lock/keys.hpp"
#include "redkit/lock/options.hpp"
#include "redkit/script.hpp"

namespace redkit::detail {

using LockClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// The name and options of one lock object, shared with its holds.
struct LockConfig {
  std::string name;
  LockOptions options;
};

/// One acquisition: its token, who holds it (a thread, through one lock
/// object), its validity and its renewal. Shared by the process's LocalName,
/// the Renewer that renews it and renewals in flight. It holds no client.
class HoldState : public RenewalEntry, public std::enable_shared_from_this<HoldState> {
 public:
  HoldState(std::string token_, std::thread::id thread_, std::uint64_t engine_,
            std::shared_ptr<const LockConfig> config_, LockClock::time_point valid_until_, std::int64_t fence_)
      : token(std::move(token_)),
        thread(thread_),
        engine(engine_),
        config(std::move(config_)),
        fence(fence_),
        valid_until(valid_until_.time_since_epoch().count()),
        ttl(config->options.ttl) {
    if (config->options.max_hold) hold_until = LockClock::now() + *config->options.max_hold;
  }

  const std::string token;
  const std::thread::id thread;              // the holder
  const std::uint64_t engine;                // the lock object it was taken through
  const std::shared_ptr<const LockConfig> config;
  std::int64_t fence;                        // 0 until issued; touched by the holder thread only
  std::atomic<bool> lost{false};             // a renewal or fence found the key gone, or it ran out
  std::atomic<LockClock::rep> valid_until;   // steady ticks: the end of our validity

  // Renewal state, guarded by m.
  std::mutex m;
  std::condition_variable cv;
  milliseconds ttl;                             // the lifetime renewals set (extend() changes it)
  std::optional<LockClock::time_point> hold_until;  // acquired + max_hold
  int in_flight = 0;                            // renewal work that may still use the lock's client
  bool extending = false;                       // the holder is in extend()
  bool ended = false;                           // no more renewals (released or lost)

  /// Held in the eyes of this process: not lost, within our validity.
  bool valid(LockClock::time_point now = LockClock::now()) const noexcept {
    return !lost.load(std::memory_order_acquire) && now.time_since_epoch().count() < valid_until.load();
  }

  static milliseconds renew_period(milliseconds ttl) { return std::max(ttl / 3, milliseconds(1)); }

  /// A renewal's outcome (lane thread): new validity, loss, or try again soon.
  void completed(RenewOutcome outcome, LockClock::time_point valid_if_ours) noexcept {
    bool report = false;
    {
      std::lock_guard<std::mutex> lk(m);
      if (ended) return;
      const auto now = LockClock::now();
      switch (outcome) {
        case RenewOutcome::Ours: {
          valid_until = valid_if_ours.time_since_epoch().count();
          milliseconds next = renew_period(ttl);
          // Near max_hold: run again when it ends, to report it.
          if (hold_until) next = std::min(next, std::chrono::ceil<milliseconds>(*hold_until - now));
          set_due(now + std::max(next, milliseconds(1)));
          break;
        }
        case RenewOutcome::NotOurs:
          report = lose_locked();
          break;
        case RenewOutcome::Failed: {
          // I/O trouble: try again soon, until our own deadline passes.
          const auto left = std::chrono::duration_cast<milliseconds>(
              LockClock::time_point(LockClock::duration(valid_until.load())) - now);
          const milliseconds retry = std::min(ttl, config->options.ttl) / 10;
          set_due(now + std::clamp(retry, milliseconds(1), std::max(left, milliseconds(1))));
          break;
        }
      }
    }
    if (report) report_lost();
  }

  /// One piece of renewal work is done with the lock's client.
  void job_done() noexcept {
    std::lock_guard<std::mutex> lk(m);
    if (--in_flight == 0) cv.notify_all();
  }

  /// Stops renewal for good and waits until no renewal in flight can use
  /// the lock's client any more (each is bounded by command_timeout).
  void end() noexcept {
    std::unique_lock<std::mutex> lk(m);
    ended = true;
    set_due_raw(kIdle);
    cv.wait(lk, [&] { return in_flight == 0; });
  }

 protected:
  // Caller holds m. True if the loss is news (on_lost is then due).
  bool lose_locked() noexcept {
    const bool news = !lost.exchange(true);
    ended = true;
    set_due_raw(kIdle);
    return news;
  }

  void report_lost() noexcept {
    if (!config->options.on_lost) return;
    try {
      config->options.on_lost(config->name);
    } catch (...) {
      // The user's callback must not stop a background thread.
    }
  }

  // The scheduler-thread half of fire(): checks, then starts `jobs` pieces
  // of renewal work (plus one for the caller, who calls job_done() when it
  // has posted them). Returns the ttl to renew with, or nullopt.
  std::optional<milliseconds> begin_renewal(LockClock::time_point now, int jobs) noexcept {
    bool report = false;
    std::optional<milliseconds> t;
    {
      std::lock_guard<std::mutex> lk(m);
      if (ended) {
        set_due_raw(kIdle);
        return std::nullopt;
      }
      if (extending || in_flight > 0) {
        set_due(now + milliseconds(10));
        return std::nullopt;
      }
      milliseconds ttl_now = ttl;
      if (hold_until) ttl_now = std::min(ttl_now, std::chrono::floor<milliseconds>(*hold_until - now));
      if (ttl_now.count() <= 0 || now.time_since_epoch().count() >= valid_until.load()) {
        report = lose_locked();  // max_hold ran out, or renewals failed until our deadline
      } else {
        in_flight = jobs + 1;
        t = ttl_now;
      }
    }
    if (report) report_lost();
    return t;
  }
};

/// A hold renewed through Backend (one server, or the Redlock masters).
template <class Backend>
class Hold final : public HoldState {
 public:
  using HoldState::HoldState;

  std::weak_ptr<Backend> backend;          // the lock object's; never the last owner (see end())
  typename Backend::RenewalRoute route;   // where its renewals go, set by Backend::start_renewal

  void fire(LockClock::time_point now) noexcept override {
    std::shared_ptr<Backend> b = backend.lock();
    if (!b) {
      std::lock_guard<std::mutex> lk(m);
      ended = true;
      set_due_raw(kIdle);
      return;
    }
    const auto ttl_now = begin_renewal(now, b->renewal_jobs());
    if (!ttl_now) return;
    b->post_renewal(std::static_pointer_cast<Hold>(shared_from_this()), *ttl_now);
    b.reset();    // before job_done(): the lock object may let its backend go once in_flight is 0
    job_done();  // the one begin_renewal() counted for this call
  }
};

/// Where a hold's renewals go when they are one script on the node that
/// serves the key (the lock and the semaphore on one server): this
/// process's Renewer of the client, and that node's lane.
template <class Client>
struct NodeRenewalRoute {
  Renewer<Client>* renewer = nullptr;  // owned by the client's per-process state (the backend keeps the client)
  std::string node;
};

/// Registers h with the client's Renewer of this process, first due at
/// ttl/3, routed to the lane of the node that serves key (Backend's
/// RenewalRoute is a NodeRenewalRoute). Shared by the lock and the
/// semaphore on one server. @throws what finding the node throws.
template <class Backend, class Client>
void start_node_renewal(const std::shared_ptr<Hold<Backend>>& h, Client& client, const std::string& key) {
  auto renewer = client.template process_local<Renewer<Client>>();
  if constexpr (Client::shards_keys) {
    h->route.node = client.node_name(key);
  } else {
    h->route.node = renewer->single_node([&] { return client.node_name(key); });
  }
  h->route.renewer = renewer.get();
  h->set_due(LockClock::now() + HoldState::renew_period(h->ttl));
  renewer->add(h, client.scheduler());
}

/// Takes h (a Hold<Backend> started by start_node_renewal) out of its
/// Renewer, if it was put there. Never throws.
template <class Backend>
void stop_node_renewal(HoldState& h) noexcept {
  if (auto* r = static_cast<Hold<Backend>&>(h).route.renewer) r->remove(h);
}

/// Scheduler thread: queues one renewal of h on its node's lane, the
/// token-checked script on key with ARGV token, ttl ms, extra... (EVALSHA,
/// its source after NOSCRIPT). The answer completes h, valid for ttl from
/// when it was sent; a failure to queue it completes h as Failed. Shared by
/// the lock and the semaphore on one server.
template <class Backend, class Client>
void post_script_renewal(const std::shared_ptr<Hold<Backend>>& h, const std::shared_ptr<Client>& client,
                         const Script& script, std::string_view key, milliseconds ttl,
                         std::initializer_list<std::string_view> extra = {}) noexcept {
  try {
    const std::string ttl_text = std::to_string(ttl.count());
    std::vector<std::string_view> args{h->token, ttl_text};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::initializer_list<std::string_view> keys = {key};
    typename Renewer<Client>::Job job;
    job.client = client;
    job.by_sha = script.command(keys, args, true);
    job.by_source = script.command(keys, args, false);
    job.done = [h, ttl](RenewOutcome outcome, LockClock::time_point sent) {
      h->job_done();
      h->completed(outcome, sent + ttl);
    };
    h->route.renewer->post(h->route.node, std::move(job));
  } catch (...) {
    h->job_done();
    h->completed(RenewOutcome::Failed, LockClock::now());
  }
}

/// This process's state of one lock name, for one client: shared by every
/// lock object on the name (made through that client), so that its threads
/// exclude each other here and only one of them waits in Redis.
template <class Backend>
class LocalName {
 public:
  explicit LocalName(const LockKeys& keys) : wait(keys) {}
  LocalName(const LocalName&) = delete;
  LocalName& operator=(const LocalName&) = delete;

  std::mutex m;                // guards the fields below (not wait)
  std::condition_variable cv;  // a hold ended or the acquiring thread left
  std::vector<std::shared_ptr<HoldState>> holds;  // this process's holds (two only after an expiry race)
  bool acquiring = false;      // a thread is acquiring in Redis for a blocking call
  int waiting = 0;             // threads waiting on cv
  std::uint64_t next_engine = 1;

  /// The Redis side of waiting: used only by the thread that has
  /// `acquiring` set, handed over with it.
  typename Backend::WaitState wait;

  /// The hold of the calling thread through engine, if any. Caller holds m.
  std::shared_ptr<HoldState> mine(std::uint64_t engine) const {
    const auto me = std::this_thread::get_id();
    for (const auto& h : holds) {
      if (h->thread == me && h->engine == engine) return h;
    }
    return nullptr;
  }
};

/// The LocalNames of one client in this process, by name (its
/// process_local; see detail/name_registry.hpp).
template <class Backend>
using LockRegistry = NameRegistry<LocalName<Backend>>;

}  // namespace redkit::detail
