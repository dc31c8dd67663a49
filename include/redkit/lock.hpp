/// @file lock.hpp
/// redkit::RedisLock, a distributed lock at one Redis key that behaves like
/// a std::timed_mutex: Lockable and TimedLockable, so std::lock_guard,
/// std::unique_lock and std::scoped_lock work with it. Its parts live in
/// lock/: options.hpp (LockOptions), keys.hpp, scripts.hpp, hold.hpp (what
/// a process knows of a name), engine.hpp (the shared logic),
/// basic_lock.hpp (the public members), single.hpp (the one-server
/// protocol).
///
/// Thread safety: like a std::mutex, one RedisLock object may be shared by
/// any number of threads; a hold belongs to the thread that took it
/// (owns_lock(), fencing_token(), token(), extend() and unlock() answer for
/// the calling thread; unlock() from a thread that does not hold it does
/// nothing). Threads of one process that want one name, whether they share
/// an object or each have their own on the same client, wait in the
/// process: one of them at a time acquires in Redis, on at most one
/// dedicated connection. A release always goes through Redis, so other
/// processes get their turn. on_lost runs on one of the client's
/// background threads.
///
/// Exceptions: acquiring throws IoError (TimeoutError, ClosedError) when the
/// server cannot be reached, ReplyError if it answers with an error,
/// NotReplicatedError when LockOptions::wait_replicas is set and too few
/// replicas acknowledged, Error when the calling thread already holds the
/// name or the object was moved from; fencing_token() throws LockLostError
/// when the hold is gone; the constructor throws ConfigError for options
/// out of range or bad names. unlock() and the destructor never throw.
///
/// Key layout: the lock's value (a random token) lives at exactly the key
/// named, set with `SET key token NX PX ttl`, so redis-py's Lock and other
/// clients that follow that protocol exclude and are excluded. Side keys
/// share its hash slot, each with a TTL: `{name}:fence` (the fencing
/// counter; 1 hour after its last use), `{name}:waiting` (one element per
/// process waiting in Redis; 60 s after the last registration) and
/// `{name}:wake` (wake-ups a release moves there; 2 s). When the name
/// already has a hash tag the side keys are `name:fence`, `name:waiting`
/// and `name:wake`.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "redkit/error.hpp"
#include "redkit/lock/basic_lock.hpp"
#include "redkit/lock/keys.hpp"
#include "redkit/lock/options.hpp"
#include "redkit/lock/scripts.hpp"
#include "redkit/lock/single.hpp"
#include "redkit/redis.hpp"

namespace redkit {

/// A distributed lock on one Redis key (see the file comment for the
/// protocol, key layout, thread safety and exceptions). Its members are
/// those of detail::BasicLock: lock, try_lock, try_lock_for, try_lock_until,
/// unlock, extend, owns_lock, fencing_token, token, name.
///
///     redkit::RedisLock<> lock(redis, "orders:42");   // share it between threads
///     std::lock_guard<redkit::RedisLock<>> guard(lock);
///     write_with_fence(lock.fencing_token());
///
/// Client is redkit::Redis or any client with the same interface (command,
/// eval, pipeline, lease, scheduler, process_local, node_name, options),
/// such as redkit::Cluster.
template <class Client = Redis>
class RedisLock : public detail::BasicLock<detail::SingleLockBackend<Client>> {
  using Backend = detail::SingleLockBackend<Client>;

 public:
  /// A lock named name on client's server; does not contact the server.
  /// @throws ConfigError for options out of range, an empty name, or a name
  /// with a '}' outside a hash tag.
  RedisLock(Client client, std::string name, LockOptions options = {})
      : detail::BasicLock<Backend>(make_backend(std::move(client), name, options), name, options) {}

 private:
  static std::shared_ptr<Backend> make_backend(Client client, const std::string& name,
                                               const LockOptions& options) {
    detail::check_lock_options(options);
    return std::make_shared<Backend>(std::move(client), detail::lock_keys(name), options.wait_replicas,
                                     options.wait_timeout);
  }
};

}  // namespace redkit
