// State a primitive keeps per client per process (the lock's local wait
// lists, the near cache's invalidation connection): one object of each type
// T, made on first use, kept in the client's per-process core, so a forked
// child gets fresh ones and never the parent's. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <typeindex>
#include <unordered_map>

namespace redkit::detail {

class ProcessLocal {
 public:
  /// The T of this client in this process, made with T() on first use.
  template <class T>
  std::shared_ptr<T> get() {
    std::lock_guard<std::mutex> lk(m_);
    std::shared_ptr<void>& slot = items_[std::type_index(typeid(T))];
    if (!slot) slot = std::make_shared<T>();
    return std::static_pointer_cast<T>(slot);
  }

 private:
  std::mutex m_;
  std::unordered_map<std::type_index, std::shared_ptr<void>> items_;
};

}  // namespace redkit::detail
