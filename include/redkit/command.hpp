/// @file command.hpp
/// A Redis command as an argv of binary-safe strings, plus the key that
/// routes it in a cluster. Thread safety: plain value type.
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redkit/error.hpp"

namespace redkit {

namespace detail {

/// The bytes of a request on their way to the socket: RESP headers and
/// small arguments copied into one buffer, large arguments referenced where
/// they lie (written with one sendmsg of several iovecs, never copied).
/// Thread safety: belongs to one connection.
class RequestBuffer {
 public:
  /// Arguments at least this long are referenced, not copied.
  static constexpr std::size_t kBorrowThreshold = 16 * 1024;

  void clear() noexcept {
    bytes_.clear();
    pieces_.clear();
    copied_from_ = 0;
  }
  void append(const char* p, std::size_t n) { bytes_.append(p, n); }
  /// n more bytes at the end, to be written through the pointer; give back
  /// what was not used with unused().
  char* grow(std::size_t n) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    return bytes_.data() + at;
  }
  /// Drops the last n bytes (the unused part of the last grow()).
  void unused(std::size_t n) noexcept { bytes_.resize(bytes_.size() - n); }
  /// References n bytes at p, which must stay valid until the write ends.
  void reference(const char* p, std::size_t n) {
    seal();
    pieces_.push_back(Piece{p, 0, n});
  }
  /// The pieces in order: (pointer, length), valid until the next change.
  template <class F>
  void for_each_piece(F&& f) {
    seal();
    for (const Piece& piece : pieces_) {
      f(piece.borrowed ? piece.borrowed : bytes_.data() + piece.offset, piece.length);
    }
  }
  /// Total bytes.
  std::size_t size() const noexcept {
    std::size_t n = bytes_.size();
    for (const Piece& p : pieces_) n += p.borrowed ? p.length : 0;
    return n;
  }
  /// Drops a buffer that grew large, so an idle connection does not pin it.
  void shrink() {
    if (bytes_.capacity() > (1u << 20)) std::string().swap(bytes_);
    if (pieces_.capacity() > 1024) std::vector<Piece>().swap(pieces_);
  }

 private:
  struct Piece {
    const char* borrowed;  // null: bytes_[offset, offset + length)
    std::size_t offset;
    std::size_t length;
  };
  // Closes the run of copied bytes since the last piece.
  void seal() {
    if (bytes_.size() > copied_from_) pieces_.push_back(Piece{nullptr, copied_from_, bytes_.size() - copied_from_});
    copied_from_ = bytes_.size();
  }
  std::string bytes_;
  std::vector<Piece> pieces_;
  std::size_t copied_from_ = 0;
};

}  // namespace detail

/// One command. Arguments are copied into one buffer (or, with arg_view(),
/// referenced) and sent with explicit lengths, so any byte (NUL, CR LF) is
/// safe in keys and values.
///
///     Command{"SET"}.key("user:1").arg(value).arg("PX").arg(5000)
class Command {
 public:
  Command() = default;
  /// All arguments given at once; the routing key is not set (see key()).
  Command(std::initializer_list<std::string_view> args) {
    std::size_t bytes = 0;
    for (auto a : args) bytes += a.size();
    reserve(args.size(), bytes);
    for (auto a : args) arg(a);
  }

  /// Appends an argument (copied into the command).
  Command& arg(std::string_view a) {
    spans_.push_back(Span{nullptr, buf_.size(), a.size()});
    buf_.append(a.data(), a.size());
    return *this;
  }

  /// Appends an argument without copying it: the bytes must stay valid and
  /// unchanged until the command has been sent (the call that runs it has
  /// returned). For large values: a 100 MiB SET then costs no copy in the
  /// client; Connection writes it straight from where it lies.
  Command& arg_view(std::string_view a) {
    spans_.push_back(Span{a.data(), 0, a.size()});
    return *this;
  }
  /// Appends a C string argument (copied).
  Command& arg(const char* a) { return arg(std::string_view(a)); }
  /// Appends a string argument (copied).
  Command& arg(const std::string& a) { return arg(std::string_view(a)); }

  /// Appends an integer as decimal text.
  template <class Int, std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>, int> = 0>
  Command& arg(Int v) {
    char tmp[24];
    auto res = std::to_chars(tmp, tmp + sizeof tmp, v);
    return arg(std::string_view(tmp, static_cast<std::size_t>(res.ptr - tmp)));
  }

  /// Appends a floating point number in the shortest text that reads back
  /// exactly.
  Command& arg(double v) {
    char tmp[32];
    auto res = std::to_chars(tmp, tmp + sizeof tmp, v);
    return arg(std::string_view(tmp, static_cast<std::size_t>(res.ptr - tmp)));
  }

  /// Appends a key argument; the first key given this way routes the command.
  Command& key(std::string_view k) {
    if (!has_route_) route(k);
    return arg(k);
  }

  /// Appends a key argument made of two parts (a prefix and a name), with
  /// no string put together first; routes as key() does.
  Command& key(std::string_view head, std::string_view tail) {
    if (!has_route_) {
      route_.assign(head.data(), head.size()).append(tail.data(), tail.size());
      has_route_ = true;
    }
    spans_.push_back(Span{nullptr, buf_.size(), head.size() + tail.size()});
    buf_.append(head.data(), head.size()).append(tail.data(), tail.size());
    return *this;
  }

  /// Makes room for args more arguments of bytes bytes in all, so that a
  /// command of known shape (or of many keys) allocates once per buffer.
  Command& reserve(std::size_t args, std::size_t bytes) {
    spans_.reserve(spans_.size() + args);
    buf_.reserve(buf_.size() + bytes);
    return *this;
  }

  /// Sets the routing key without adding an argument.
  Command& route(std::string_view k) {
    route_.assign(k.data(), k.size());
    has_route_ = true;
    return *this;
  }

  /// Number of arguments, the command name included.
  std::size_t size() const noexcept { return spans_.size(); }
  /// True when no argument was given.
  bool empty() const noexcept { return spans_.empty(); }
  /// Argument i (0 is the command name); i < size().
  std::string_view operator[](std::size_t i) const noexcept {
    const Span& s = spans_[i];
    return std::string_view(s.borrowed ? s.borrowed : buf_.data() + s.offset, s.length);
  }
  /// The command name (first argument), or "" when empty.
  std::string_view name() const noexcept { return empty() ? std::string_view() : (*this)[0]; }
  /// True when a routing key was given (key() or route()).
  bool has_route() const noexcept { return has_route_; }
  /// The key that routes the command in a Cluster ("" when none).
  std::string_view route_key() const noexcept { return route_; }

  /// Appends the RESP encoding of this command to out.
  void encode(std::string& out) const {
    if (empty()) throw Error("redkit: empty command");
    header(out, '*', spans_.size());
    for (std::size_t i = 0; i < spans_.size(); ++i) {
      const std::string_view a = (*this)[i];
      header(out, '$', a.size());
      out.append(a.data(), a.size());
      out.append("\r\n", 2);
    }
  }

  /// Appends the RESP encoding to a request buffer, referencing arguments
  /// of RequestBuffer::kBorrowThreshold bytes or more instead of copying.
  void encode(detail::RequestBuffer& out) const {
    if (empty()) throw Error("redkit: empty command");
    // Nothing to reference (the common case): headers and arguments written
    // straight into room made once.
    std::size_t room = kHeaderRoom;
    bool small = true;
    for (const Span& s : spans_) {
      small = small && s.length < detail::RequestBuffer::kBorrowThreshold;
      room += kHeaderRoom + s.length + 2;
    }
    if (small) {
      char* const start = out.grow(room);
      char* p = start + header(start, '*', spans_.size());
      for (std::size_t i = 0; i < spans_.size(); ++i) {
        const std::string_view a = (*this)[i];
        p += header(p, '$', a.size());
        if (!a.empty()) std::memcpy(p, a.data(), a.size());
        p += a.size();
        *p++ = '\r';
        *p++ = '\n';
      }
      out.unused(room - static_cast<std::size_t>(p - start));
      return;
    }
    char tmp[24];
    out.append(tmp, header(tmp, '*', spans_.size()));
    for (std::size_t i = 0; i < spans_.size(); ++i) {
      const std::string_view a = (*this)[i];
      out.append(tmp, header(tmp, '$', a.size()));
      if (a.size() >= detail::RequestBuffer::kBorrowThreshold) {
        out.reference(a.data(), a.size());
      } else {
        out.append(a.data(), a.size());
      }
      out.append("\r\n", 2);
    }
  }

 private:
  // Room for one "<tag><n>\r\n" header.
  static constexpr std::size_t kHeaderRoom = 24;

  // Writes "<tag><n>\r\n" into tmp (24 bytes); returns its length.
  static std::size_t header(char* tmp, char tag, std::size_t n) noexcept {
    tmp[0] = tag;
    auto res = std::to_chars(tmp + 1, tmp + 22, n);
    res.ptr[0] = '\r';
    res.ptr[1] = '\n';
    return static_cast<std::size_t>(res.ptr + 2 - tmp);
  }
  static void header(std::string& out, char tag, std::size_t n) {
    char tmp[24];
    out.append(tmp, header(tmp, tag, n));
  }

  struct Span {
    const char* borrowed;  // null: buf_[offset, offset + length)
    std::size_t offset;
    std::size_t length;
  };
  std::string buf_;
  std::vector<Span> spans_;
  std::string route_;
  bool has_route_ = false;
};

namespace detail {

/// A blocking command's timeout argument (BLPOP): seconds with millisecond
/// decimals ("0.250"), at least 1 ms (0 would mean "block forever").
inline std::string seconds_text(std::chrono::milliseconds t) {
  const long long ms = t.count() < 1 ? 1 : static_cast<long long>(t.count());
  std::string frac = std::to_string(ms % 1000);
  return std::to_string(ms / 1000) + "." + std::string(3 - frac.size(), '0') + frac;
}

}  // namespace detail

}  // namespace redkit
