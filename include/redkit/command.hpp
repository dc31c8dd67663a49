/// @file command.hpp
/// A Redis command as an argv of binary-safe strings, plus the key that
/// routes it in a cluster. Thread safety: plain value type.
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "redkit/error.hpp"

namespace redkit {

/// One command. Arguments are copied into one buffer and sent with explicit
/// lengths, so any byte (NUL, CR LF) is safe in keys and values.
///
///     Command{"SET"}.key("user:1").arg(value).arg("PX").arg(5000)
class Command {
 public:
  Command() = default;
  /// All arguments given at once; the routing key is not set (see key()).
  Command(std::initializer_list<std::string_view> args) {
    for (auto a : args) arg(a);
  }

  /// Appends an argument.
  Command& arg(std::string_view a) {
    spans_.emplace_back(buf_.size(), a.size());
    buf_.append(a.data(), a.size());
    return *this;
  }
  Command& arg(const char* a) { return arg(std::string_view(a)); }
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

  /// Sets the routing key without adding an argument.
  Command& route(std::string_view k) {
    route_.assign(k.data(), k.size());
    has_route_ = true;
    return *this;
  }

  std::size_t size() const noexcept { return spans_.size(); }
  bool empty() const noexcept { return spans_.empty(); }
  std::string_view operator[](std::size_t i) const noexcept {
    return std::string_view(buf_.data() + spans_[i].first, spans_[i].second);
  }
  /// The command name (first argument), or "" when empty.
  std::string_view name() const noexcept { return empty() ? std::string_view() : (*this)[0]; }
  bool has_route() const noexcept { return has_route_; }
  std::string_view route_key() const noexcept { return route_; }

  /// Appends the RESP encoding of this command to out.
  void encode(std::string& out) const {
    if (empty()) throw Error("redkit: empty command");
    header(out, '*', spans_.size());
    for (std::size_t i = 0; i < spans_.size(); ++i) {
      header(out, '$', spans_[i].second);
      out.append(buf_.data() + spans_[i].first, spans_[i].second);
      out.append("\r\n", 2);
    }
  }

 private:
  static void header(std::string& out, char tag, std::size_t n) {
    char tmp[24];
    tmp[0] = tag;
    auto res = std::to_chars(tmp + 1, tmp + sizeof tmp - 2, n);
    res.ptr[0] = '\r';
    res.ptr[1] = '\n';
    out.append(tmp, static_cast<std::size_t>(res.ptr + 2 - tmp));
  }

  std::string buf_;
  std::vector<std::pair<std::size_t, std::size_t>> spans_;
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
