/// @file cache/near.hpp
/// The near cache of one RedisCache in one process: its memory
/// (cache/near_store.hpp), attached to the client's tracker
/// (cache/tracker.hpp), and the reads that fill it: GET with PTTL in one
/// round trip, so that a copy never outlives the value in Redis. Part of
/// <redkit/cache.hpp>; the README's "Near cache" says what it guarantees.
///
/// Thread safety: every member is thread-safe.
/// Exceptions: as the client (IoError, ReplyError) for the reads;
/// std::bad_alloc.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redkit/cache/near_store.hpp"
#include "redkit/cache/options.hpp"
#include "redkit/cache/tracker.hpp"
#include "redkit/command.hpp"
#include "redkit/reply.hpp"

namespace redkit::detail::cache {

template <class T, class Client>
class Near {
 public:
  using Store = NearStore<T>;

  /// Attaches to client's tracker in this process. Sends nothing.
  Near(const Client& client, const std::string& prefix, const NearCacheOptions& options)
      : client_(client),
        tracker_(client_.template process_local<Tracker<Client>>()),
        store_(options, tracker_->state()),
        first_wait_(reply_wait(client)) {
    tracker_->attach(&store_, prefix, options.max_age, client);
  }
  Near(const Near&) = delete;
  Near& operator=(const Near&) = delete;
  ~Near() {
    std::optional<Client> last = tracker_->detach(&store_);  // destroyed here, outside the tracker
  }

  /// A trusted copy of key, or nullopt. Counts a near hit.
  std::optional<T> get(std::string_view key) {
    start();
    return store_.get(key);
  }
  /// A trusted copy of key with its time left and load time (not counted:
  /// get_or_set counts it if it serves it, with count_hit()).
  std::optional<typename Store::Hit> peek(std::string_view key) {
    start();
    return store_.get_hit(key);
  }
  void count_hit() noexcept { store_.count_hit(); }
  /// True if a trusted copy of key is here. Counts a near hit.
  bool contains(std::string_view key) {
    start();
    return store_.contains(key);
  }

  /// The reads of some keys through the near cache: each is marked before
  /// it is sent and settled (stored if still clean) when it came back; a
  /// mark not settled is dropped when the Reads goes (an exception).
  class Reads {
   public:
    Reads(Near& near, std::size_t n) : near_(near) {
      near_.start();
      tickets_.reserve(n);
    }
    Reads(const Reads&) = delete;
    Reads& operator=(const Reads&) = delete;
    ~Reads() {
      for (NearTicket& t : tickets_) near_.store_.abandon(t);
    }
    /// Marks a read of key; returns its index.
    std::size_t add(std::string_view key) {
      tickets_.push_back(near_.store_.begin(key, near_.topology()));
      if (!tickets_.back()) near_.maybe_poke();
      return tickets_.size() - 1;
    }
    /// True if any read may be stored (else PTTL is not worth asking).
    bool any() const noexcept {
      for (const NearTicket& t : tickets_) {
        if (t) return true;
      }
      return false;
    }
    /// Read i found bytes (nullptr: nil), decoded as value (nullptr: not
    /// decoded), with pttl_ms and load time delta_ms.
    void settle(std::size_t i, const std::string_view* bytes, const T* value, long long pttl_ms,
                long long delta_ms = 0) {
      near_.store_.settle(tickets_[i], bytes, value, pttl_ms, delta_ms, near_.topology());
    }

   private:
    Near& near_;
    std::vector<NearTicket> tickets_;
  };

  /// The value at full (key's Redis key) read with GET and PTTL in one round
  /// trip, and kept here if clean (plain GET when it cannot be kept).
  /// Calls decode(bytes) to make a T.
  template <class Decode>
  std::optional<T> fetch(std::string_view key, const std::string& full, Decode&& decode) {
    Reads reads(*this, 1);
    reads.add(key);
    if (!reads.any()) {
      Reply r = client_.command(Command{"GET"}.key(full));
      if (r.is_nil()) return std::nullopt;
      return std::optional<T>(decode(r.string()));
    }
    std::vector<Reply> replies = client_.pipeline({Command{"GET"}.key(full), Command{"PTTL"}.key(full)});
    for (const Reply& r : replies) r.check();
    const std::optional<std::string_view> bytes = replies[0].optional_string();
    if (!bytes) {
      reads.settle(0, nullptr, nullptr, -2);
      return std::nullopt;
    }
    std::optional<T> value(decode(*bytes));
    reads.settle(0, &*bytes, &*value, replies[1].integer());
    return value;
  }

  /// Drops near copies when it goes, whatever the outcome (after a write:
  /// the write may have reached Redis): of one key, of a list of keys (read
  /// when it goes: the list may grow meanwhile), or all of them. Does
  /// nothing for a null near cache.
  class DropOnExit {
   public:
    struct All {};
    DropOnExit(Near* near, std::string_view key) noexcept : near_(near), key_(key) {}
    DropOnExit(Near* near, const std::vector<std::string_view>& keys) noexcept : near_(near), keys_(&keys) {}
    DropOnExit(Near* near, All) noexcept : near_(near), all_(true) {}
    DropOnExit(const DropOnExit&) = delete;
    DropOnExit& operator=(const DropOnExit&) = delete;
    ~DropOnExit() {
      if (!near_) return;
      if (all_) {
        near_->drop_all();
      } else if (keys_) {
        for (std::string_view k : *keys_) near_->drop(k);
      } else {
        near_->drop(key_);
      }
    }

   private:
    Near* const near_;
    const std::string_view key_;
    const std::vector<std::string_view>* const keys_ = nullptr;
    const bool all_ = false;
  };

  /// Drops the copy of key and any read of it in flight (this process
  /// wrote or removed it).
  void drop(std::string_view key) noexcept { store_.drop(key); }
  /// Drops every copy (clear()).
  void drop_all() noexcept { store_.flush(); }

  /// Adds the near cache's counters to s.
  void add_stats(CacheStats& s) const noexcept {
    s.near_hits = store_.hits();
    s.near_entries = store_.entries();
    s.near_invalidations = store_.invalidations();
    s.near_flushes = store_.flushes();
  }


 private:
  // The first use in this process starts the tracker and waits (up to the
  // client's command_timeout) for tracking to be confirmed, so that the
  // first reads are already kept.
  void start() {
    if (started_.load(std::memory_order_acquire)) return;
    tracker_->start(first_wait_);
    started_.store(true, std::memory_order_release);
  }

  std::uint64_t topology() { return topology_of(client_.stats()); }

  // A read that could not be kept because the topology moved: ask the
  // tracker to look at the masters again.
  void maybe_poke() {
    const TrackingState& s = tracker_->state();
    if (TrackingState::confirmed(s.epoch()) && topology() != s.verified_topology()) tracker_->poke();
  }

  Client client_;
  std::shared_ptr<Tracker<Client>> tracker_;
  Store store_;
  const std::chrono::milliseconds first_wait_;
  std::atomic<bool> started_{false};
};

}  // namespace redkit::detail::cache
