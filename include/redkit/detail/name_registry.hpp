// The per-name state a primitive keeps in one process for one client (the
// lock's LocalName, the semaphore's local waiters), found by name. It lives
// in the client's per-process state (client.process_local<NameRegistry<S>>()),
// so a fork child starts with none of the parent's. A name no object uses
// any more is kept until the next sweep, so that a fresh object per use (a
// common pattern) finds its name's state instead of making it again; a
// sweep, when the table has doubled since the last one, drops the unused.
// Thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace redkit::detail {

template <class State>
class NameRegistry {
 public:
  /// The state of name, made with State(args...) if there is none.
  template <class... Args>
  std::shared_ptr<State> get(const std::string& name, const Args&... args) {
    std::vector<std::shared_ptr<State>> unused;  // destroyed outside the lock
    std::lock_guard<std::mutex> lk(m_);
    auto it = names_.find(name);
    if (it != names_.end()) return it->second;
    // Swept before the new state is in the table: a sweep drops what only
    // the table holds, which a new state is until it is returned.
    if (names_.size() + 1 >= sweep_at_) sweep(unused);
    auto made = std::make_shared<State>(args...);
    names_.emplace(name, made);
    return made;
  }

 private:
  // Caller holds m_. Moves the states only the table holds into unused.
  void sweep(std::vector<std::shared_ptr<State>>& unused) {
    for (auto it = names_.begin(); it != names_.end();) {
      if (it->second.use_count() == 1) {
        unused.push_back(std::move(it->second));
        it = names_.erase(it);
      } else {
        ++it;
      }
    }
    sweep_at_ = std::max<std::size_t>(kMinSweep, 2 * names_.size());
  }

  static constexpr std::size_t kMinSweep = 64;
  std::mutex m_;
  std::unordered_map<std::string, std::shared_ptr<State>> names_;
  std::size_t sweep_at_ = kMinSweep;
};

}  // namespace redkit::detail
