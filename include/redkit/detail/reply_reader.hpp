// The RESP parser: hiredis's reader (redisReaderCreate / Feed / GetReply,
// the same API in hiredis 0.14 and 1.x) behind a small owning type, with
// redkit's own limit on array sizes. Everything fed to it is untrusted
// bytes from a socket. Thread safety: one reader belongs to one connection.
#pragma once

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <hiredis/sds.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "redkit/error.hpp"
#include "redkit/reply.hpp"

// hiredis.h includes sds.h outside its extern "C", so sds functions are
// declared with C++ linkage wherever hiredis.h is included. This alias
// names the C symbol itself (GCC and Clang asm labels).
extern "C" sds redkit_sds_make_room_for(sds s, size_t addlen) __asm__("sdsMakeRoomFor");

namespace redkit::detail {

/// The most array elements one reply may claim, all its nested arrays
/// together. hiredis allocates an array's element table as soon as it reads
/// the header, before any element arrives, so `*500000000` from a hostile
/// server would cost 4 GB up front, and seven nested headers seven tables.
/// 2^24 elements (128 MiB of tables) is far beyond any sane reply.
inline constexpr long long kMaxReplyElements = 1LL << 24;

/// What the array guard counts for the reply being read (the reader's
/// privdata, which hiredis hands to every task).
struct ReplyBudget {
  long long claimed = 0;
};

/// hiredis's own reply builders, with the array builder guarded by
/// kMaxReplyElements. Copied from a default reader, because hiredis keeps
/// its defaults private; the struct's layout is the library's own, so this
/// works for 0.14 and 1.x alike.
class GuardedReplyFunctions {
 public:
  static redisReplyObjectFunctions* get() {
    static GuardedReplyFunctions instance;
    return &instance.functions_;
  }

 private:
  GuardedReplyFunctions() {
    redisReader* probe = redisReaderCreate();
    if (probe == nullptr || probe->fn == nullptr) throw Error("redkit: cannot create a hiredis reader");
    functions_ = *probe->fn;
    redisReaderFree(probe);
    create_array() = functions_.createArray;
    functions_.createArray = &guarded_array;
  }

  using CreateArray = decltype(redisReplyObjectFunctions::createArray);
  static CreateArray& create_array() {
    static CreateArray original = nullptr;
    return original;
  }

  // The element count is an int in hiredis 0.14 and a size_t in 1.x.
#if defined(HIREDIS_MAJOR) && HIREDIS_MAJOR >= 1
  using Count = size_t;
#else
  using Count = int;
#endif
  static void* guarded_array(const redisReadTask* task, Count elements) {
    const auto n = static_cast<long long>(elements);
    auto* budget = static_cast<ReplyBudget*>(task->privdata);
    const long long claimed = budget ? budget->claimed : 0;
    if (n > kMaxReplyElements - claimed) return nullptr;  // the reader reports "Out of memory"
    if (budget) budget->claimed = claimed + n;
    return create_array()(task, elements);
  }

  redisReplyObjectFunctions functions_{};
};

/// Turns bytes into replies. feed() takes what the socket gave; next()
/// returns a complete reply when one is there.
class ReplyReader {
 public:
  ReplyReader() : r_(redisReaderCreateWithFunctions(GuardedReplyFunctions::get())) {
    if (!r_) throw Error("redkit: cannot create a hiredis reader");
    r_->privdata = &budget_;
  }
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  /// Adds bytes read from the server. @throws ProtocolError (out of memory).
  void feed(const char* data, std::size_t n) {
    if (n == 0) return;
    grow_for(n);
    if (redisReaderFeed(r_.get(), data, n) != REDIS_OK) fail();
  }

  /// The next complete reply, or nullopt when more bytes are needed.
  /// @throws ProtocolError for bytes that are not RESP (the reader, and so
  /// the connection, is unusable afterwards).
  std::optional<Reply> next() {
    void* reply = nullptr;
    if (redisReaderGetReply(r_.get(), &reply) != REDIS_OK) fail();
    if (reply == nullptr) return std::nullopt;
    budget_.claimed = 0;  // the next reply has a budget of its own
    return std::optional<Reply>(std::in_place, static_cast<redisReply*>(reply));
  }

  /// Bytes fed that no complete reply has taken yet.
  std::size_t pending() const noexcept { return r_->len - r_->pos; }

 private:
  struct Free {
    void operator()(redisReader* r) const noexcept { redisReaderFree(r); }
  };

  // hiredis grows its buffer by 1 MiB at a time past 1 MiB, so a 100 MiB
  // reply is copied about 100 times where realloc cannot move pages
  // (sanitizers, some allocators). Doubling ahead of it makes the copying
  // linear. The buffer is hiredis's sds (buf is a public field of the
  // reader in 0.14 and 1.x); on failure the old buffer stays.
  void grow_for(std::size_t n) noexcept {
    redisReader* r = r_.get();
    if (r->buf == nullptr) return;
    const std::size_t len = sdslen(r->buf);
    if (len < (std::size_t{1} << 20) || sdsavail(r->buf) >= n) return;
    if (sds bigger = redkit_sds_make_room_for(r->buf, len + n)) r->buf = bigger;
  }

  [[noreturn]] void fail() {
    const std::string what = r_->errstr[0] ? r_->errstr : "invalid reply";
    if (what == "Out of memory") {
      throw ProtocolError("redkit: the server sent a reply redkit will not hold (arrays of more than " +
                          std::to_string(kMaxReplyElements) + " elements in all, or memory ran out)");
    }
    throw ProtocolError("redkit: the server sent bytes that are not RESP: " + what);
  }

  std::unique_ptr<redisReader, Free> r_;
  ReplyBudget budget_;
};

}  // namespace redkit::detail
