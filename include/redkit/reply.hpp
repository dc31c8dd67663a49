/// @file reply.hpp
/// Owning, typed access to a hiredis reply.
/// Thread safety: a Reply is a value; distinct replies may be used from
/// distinct threads, one reply must not be shared without synchronisation.
///
/// Views cannot dangle by accident: string(), optional_string(), error(),
/// operator[] and raw() of a temporary Reply (`redis.command(...).string()`)
/// do not compile, because the Reply is freed at the end of the statement;
/// string_copy() and optional_string_copy() return owning copies and work on
/// any Reply. On a Reply kept in a variable every accessor is zero-copy.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "redkit/error.hpp"

namespace redkit {

class Reply;

/// A non-owning view of one reply node (a whole reply or an array element).
/// Nil is a value (is_nil()), not an error. An error reply is also a value
/// here; the typed accessors throw ReplyError when asked for data it has not.
/// A view is valid while the Reply it came from lives.
class ReplyView {
 public:
  /// The RESP type of a reply node.
  enum class Type {
    String,   ///< bulk string
    Array,    ///< array (also a set or map reply under RESP2)
    Integer,  ///< integer
    Nil,      ///< nil bulk string or nil array
    Status,   ///< simple string such as "OK" or "PONG"
    Error     ///< error reply (ERR, WRONGTYPE, ...)
  };

  /// Views r, which must not be null and must outlive the view.
  explicit ReplyView(const redisReply* r) noexcept : r_(r) {}
  /// Views of a temporary Reply would dangle at the end of the statement:
  /// keep the Reply in a variable and view that.
  ReplyView(const Reply&&) = delete;

  /// This node's RESP type. Never throws.
  Type type() const noexcept {
    if (r_ == nullptr) return Type::Nil;  // a moved-from Reply
    switch (r_->type) {
      case REDIS_REPLY_STRING: return Type::String;
      case REDIS_REPLY_ARRAY: return Type::Array;
      case REDIS_REPLY_INTEGER: return Type::Integer;
      case REDIS_REPLY_STATUS: return Type::Status;
      case REDIS_REPLY_ERROR: return Type::Error;
      default: return Type::Nil;
    }
  }
  /// True for a nil reply (a missing key's GET, a timed-out BLPOP).
  bool is_nil() const noexcept { return type() == Type::Nil; }
  /// True for an error reply.
  bool is_error() const noexcept { return has(REDIS_REPLY_ERROR); }
  /// True for an integer reply.
  bool is_integer() const noexcept { return has(REDIS_REPLY_INTEGER); }
  /// True for an array reply.
  bool is_array() const noexcept { return has(REDIS_REPLY_ARRAY); }
  /// True for a bulk string reply.
  bool is_string() const noexcept { return has(REDIS_REPLY_STRING); }
  /// True for a status (simple string) reply.
  bool is_status() const noexcept { return has(REDIS_REPLY_STATUS); }

  /// The error text of an error reply ("" otherwise).
  std::string_view error() const noexcept {
    return is_error() ? std::string_view(r_->str, r_->len) : std::string_view();
  }

  /// Throws ReplyError if this is an error reply.
  void check() const {
    if (is_error()) throw ReplyError(std::string(r_->str, r_->len));
  }

  /// Integer reply. Throws ReplyError / ProtocolError otherwise.
  long long integer() const {
    expect(is_integer(), "an integer");
    return r_->integer;
  }

  /// Bulk string or status text, without copying (valid while the Reply
  /// lives). Throws ReplyError / ProtocolError otherwise (including for nil:
  /// use optional_string() where nil is possible).
  std::string_view string() const {
    expect(is_string() || is_status(), "a string");
    return std::string_view(r_->str, r_->len);
  }

  /// A bulk string (without copying), or nullopt for nil. Throws like string().
  std::optional<std::string_view> optional_string() const {
    if (is_nil()) return std::nullopt;
    return string();
  }

  /// string() copied into an owning std::string; safe on a temporary Reply
  /// (`std::string v = redis.command({"GET", k}).string_copy();`).
  /// Throws like string().
  std::string string_copy() const { return std::string(string()); }

  /// optional_string() copied into an owning std::string; safe on a
  /// temporary Reply. Throws like string().
  std::optional<std::string> optional_string_copy() const {
    if (is_nil()) return std::nullopt;
    return string_copy();
  }

  /// True for a "+OK" status reply.
  bool ok() const { return is_status() && string() == "OK"; }

  /// Array element count. Throws ReplyError / ProtocolError unless an array.
  std::size_t size() const {
    expect(is_array(), "an array");
    return r_->elements;
  }

  /// Element i of an array (bounds-checked: ProtocolError past the end).
  ReplyView operator[](std::size_t i) const {
    if (i >= size()) throw ProtocolError("redkit: reply array index out of range");
    return ReplyView(r_->element[i]);
  }

  /// The hiredis reply this views, for code that needs hiredis's own API;
  /// nullptr for a moved-from Reply.
  const redisReply* raw() const noexcept { return r_; }

 private:
  friend class Reply;
  ReplyView() noexcept = default;
  bool has(int hiredis_type) const noexcept { return r_ != nullptr && r_->type == hiredis_type; }
  void expect(bool cond, const char* what) const {
    if (cond) return;
    check();
    throw ProtocolError(std::string("redkit: expected ") + what + " reply, got " + type_name());
  }
  const char* type_name() const noexcept {
    switch (type()) {
      case Type::String: return "a string";
      case Type::Array: return "an array";
      case Type::Integer: return "an integer";
      case Type::Status: return "a status";
      case Type::Error: return "an error";
      default: return "nil";
    }
  }

  const redisReply* r_ = nullptr;
};

/// Owns a reply from hiredis (freed with freeReplyObject). Move-only; a
/// moved-from Reply reads as nil (is_nil(), optional_string() empty).
///
/// The views it hands out (string(), optional_string(), error(),
/// operator[], raw()) point into it, so on a temporary Reply they are
/// deleted: keep the Reply in a variable, or use string_copy() /
/// optional_string_copy(), which return owning copies.
class Reply : public ReplyView {
 public:
  /// Takes ownership of r (not null; from redisGetReply or a reply reader).
  explicit Reply(redisReply* r) noexcept : ReplyView(r) {}
  /// Takes o's reply; o is left empty and reads as nil.
  Reply(Reply&& o) noexcept { std::swap(r_, o.r_); }
  /// Swaps replies with o; o frees this one's old reply.
  Reply& operator=(Reply&& o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply() {
    if (r_) freeReplyObject(const_cast<redisReply*>(r_));
  }

  /// See ReplyView::string(). A view into this Reply.
  std::string_view string() const& { return ReplyView::string(); }
  /// Deleted: the view would outlive the temporary Reply.
  std::string_view string() const&& = delete;  // dangles: keep the Reply in a variable, or use string_copy()

  /// See ReplyView::optional_string(). A view into this Reply.
  std::optional<std::string_view> optional_string() const& { return ReplyView::optional_string(); }
  /// Deleted: the view would outlive the temporary Reply.
  std::optional<std::string_view> optional_string() const&& = delete;  // dangles: use optional_string_copy()

  /// See ReplyView::error(). A view into this Reply.
  std::string_view error() const& noexcept { return ReplyView::error(); }
  /// Deleted: the view would outlive the temporary Reply.
  std::string_view error() const&& = delete;  // dangles: keep the Reply in a variable

  /// See ReplyView::operator[]. A view into this Reply.
  ReplyView operator[](std::size_t i) const& { return ReplyView::operator[](i); }
  /// Deleted: the element view would outlive the temporary Reply.
  ReplyView operator[](std::size_t) const&& = delete;  // dangles: keep the Reply in a variable

  /// See ReplyView::raw(). Owned by this Reply.
  const redisReply* raw() const& noexcept { return ReplyView::raw(); }
  /// Deleted: the pointer would outlive the temporary Reply.
  const redisReply* raw() const&& = delete;  // dangles: keep the Reply in a variable
};

}  // namespace redkit
