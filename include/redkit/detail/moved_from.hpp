// The moved-from state of redkit's movable types: "may be destroyed or
// assigned to; any other use throws redkit::Error saying so", instead of
// reaching through a handle the move emptied. Thread safety: as the owner.
#pragma once

#include <string>

#include "redkit/error.hpp"

namespace redkit::detail {

/// @throws Error naming type unless live.
inline void check_not_moved_from(bool live, const char* type) {
  if (!live) {
    throw Error(std::string("redkit: this ") + type +
                " was moved from; a moved-from object may only be destroyed or assigned to");
  }
}

/// A member that is true until its owner is moved from (copies keep the
/// state), for types whose other members do not tell.
class MovedFromFlag {
 public:
  MovedFromFlag() noexcept = default;
  MovedFromFlag(const MovedFromFlag&) noexcept = default;
  MovedFromFlag& operator=(const MovedFromFlag&) noexcept = default;
  MovedFromFlag(MovedFromFlag&& other) noexcept : live_(other.live_) { other.live_ = false; }
  MovedFromFlag& operator=(MovedFromFlag&& other) noexcept {
    if (this != &other) {
      live_ = other.live_;
      other.live_ = false;
    }
    return *this;
  }
  bool live() const noexcept { return live_; }

 private:
  bool live_ = true;
};

}  // namespace redkit::detail
