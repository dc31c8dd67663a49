/// @file reply.hpp
/// Owning, typed access to a hiredis reply.
/// Thread safety: a Reply is a value; distinct replies may be used from
/// distinct threads, one reply must not be shared without synchronisation.
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

/// A non-owning view of one reply node (a whole reply or an array element).
/// Nil is a value (is_nil()), not an error. An error reply is also a value
/// here; the typed accessors throw ReplyError when asked for data it has not.
class ReplyView {
 public:
  enum class Type { String, Array, Integer, Nil, Status, Error };

  explicit ReplyView(const redisReply* r) noexcept : r_(r) {}

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
  bool is_nil() const noexcept { return type() == Type::Nil; }
  bool is_error() const noexcept { return has(REDIS_REPLY_ERROR); }
  bool is_integer() const noexcept { return has(REDIS_REPLY_INTEGER); }
  bool is_array() const noexcept { return has(REDIS_REPLY_ARRAY); }
  bool is_string() const noexcept { return has(REDIS_REPLY_STRING); }
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

  /// Bulk string or status text. Throws ReplyError / ProtocolError otherwise
  /// (including for nil: use optional_string() where nil is possible).
  std::string_view string() const {
    expect(is_string() || is_status(), "a string");
    return std::string_view(r_->str, r_->len);
  }

  /// A bulk string, or nullopt for nil.
  std::optional<std::string_view> optional_string() const {
    if (is_nil()) return std::nullopt;
    return string();
  }

  /// True for a "+OK" status reply.
  bool ok() const { return is_status() && string() == "OK"; }

  /// Array element count. Throws ReplyError / ProtocolError unless an array.
  std::size_t size() const {
    expect(is_array(), "an array");
    return r_->elements;
  }

  /// Element i of an array (bounds-checked).
  ReplyView operator[](std::size_t i) const {
    if (i >= size()) throw ProtocolError("redkit: reply array index out of range");
    return ReplyView(r_->element[i]);
  }

  /// The hiredis reply; nullptr for a moved-from Reply.
  const redisReply* raw() const noexcept { return r_; }

 protected:
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
class Reply : public ReplyView {
 public:
  explicit Reply(redisReply* r) noexcept : ReplyView(r) {}
  Reply(Reply&& o) noexcept { std::swap(r_, o.r_); }
  Reply& operator=(Reply&& o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply() {
    if (r_) freeReplyObject(const_cast<redisReply*>(r_));
  }
};

}  // namespace redkit
