/// @file semaphore/permit.hpp
/// redkit::SemaphorePermit, the RAII handle of one permit of a
/// RedisSemaphore. It is one type for every client kind.
///
/// Thread safety: like any object, one permit is used by one thread at a
/// time (it may be moved to, and released by, another thread); owns() may
/// run while the permit's renewal runs in the background.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "redkit/detail/fork.hpp"
#include "redkit/error.hpp"
#include "redkit/lock/hold.hpp"

namespace redkit {

namespace detail {

/// What a permit releases itself through: the semaphore's backend, kept
/// alive (and its client with it) for as long as the permit is held.
class PermitOwner {
 public:
  virtual ~PermitOwner() = default;
  /// Stops the permit's renewal and removes it in Redis. Never throws.
  virtual void release_permit(const std::shared_ptr<HoldState>& hold) noexcept = 0;
};

}  // namespace detail

/// One permit of a RedisSemaphore: a lease on the server with a TTL,
/// renewed in the background (SemaphoreOptions::auto_renew), released by
/// release() or the destructor. Movable, not copyable. A default-built or
/// moved-from permit holds nothing.
class SemaphorePermit {
 public:
  /// A permit that holds nothing (as a moved-from one).
  SemaphorePermit() noexcept = default;
  /// Takes over o's permit; o is left holding nothing.
  SemaphorePermit(SemaphorePermit&& o) noexcept
      : owner_(std::move(o.owner_)), hold_(std::move(o.hold_)), generation_(o.generation_) {}
  /// Releases the permit this one holds, then takes over o's.
  SemaphorePermit& operator=(SemaphorePermit&& o) noexcept {
    if (this != &o) {
      release();
      owner_ = std::move(o.owner_);
      hold_ = std::move(o.hold_);
      generation_ = o.generation_;
    }
    return *this;
  }
  SemaphorePermit(const SemaphorePermit&) = delete;
  SemaphorePermit& operator=(const SemaphorePermit&) = delete;
  /// Releases the permit (as release()). Never throws.
  ~SemaphorePermit() { release(); }

  /// Gives the permit back: stops its renewal, then removes it from the
  /// semaphore and wakes one waiting process (one EVALSHA: ZREM, GET of the
  /// waiting count, and when it is above 0: DECR, RPUSH to the wake list). A
  /// permit that expired or was taken away is left alone. Never throws: a
  /// permit it could not reach (server down) is free again after its TTL.
  /// No-op when the permit holds nothing (already released, moved from),
  /// and in a fork child for a permit the parent took (it is the parent's).
  void release() noexcept {
    if (!owner_) return;
    std::shared_ptr<detail::PermitOwner> owner = std::move(owner_);  // leaves owner_ empty
    if (generation_ != detail::fork_generation()) {
      // The parent's permit: its renewal state may be locked by a parent
      // thread that does not exist here. Left alone (never destroyed).
      (void)new std::shared_ptr<detail::PermitOwner>(std::move(owner));
      (void)new std::shared_ptr<detail::HoldState>(std::move(hold_));
      return;
    }
    owner->release_permit(hold_);
  }

  /// True while this permit is held: acquired, not released, not found lost
  /// by a renewal, and within its deadline on the steady clock (the time the
  /// last acquire or renewal was sent, plus the TTL). No round trip.
  bool owns() const noexcept {
    return owner_ && hold_ && generation_ == detail::fork_generation() && hold_->valid();
  }

  /// The permit's id (32 hex characters from the OS CSPRNG): its member in
  /// the semaphore's holder set. Still answers after release().
  /// @throws Error if the permit is default-built or moved from.
  const std::string& id() const {
    if (!hold_) throw Error("redkit: this SemaphorePermit holds nothing (moved from or default-built)");
    return hold_->token;
  }

 private:
  template <class>
  friend class RedisSemaphore;
  SemaphorePermit(std::shared_ptr<detail::PermitOwner> owner, std::shared_ptr<detail::HoldState> hold) noexcept
      : owner_(std::move(owner)), hold_(std::move(hold)), generation_(detail::fork_generation()) {}

  std::shared_ptr<detail::PermitOwner> owner_;  // null: released, moved from or empty
  std::shared_ptr<detail::HoldState> hold_;     // kept after release() for id()
  std::uint32_t generation_ = 0;
};

}  // namespace redkit
