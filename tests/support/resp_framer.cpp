#include "support/resp_framer.hpp"

#include <algorithm>
#include <charconv>
#include <system_error>

namespace redkit::test {
namespace {

bool parse_count(std::string_view text, long long* out) {
  const char* end = text.data() + text.size();
  const auto res = std::from_chars(text.data(), end, *out);
  return res.ec == std::errc() && res.ptr == end;
}

bool starts_resp(char c) { return c == '+' || c == '-' || c == ':' || c == '$' || c == '*'; }

}  // namespace

std::size_t RespFramer::feed(std::string_view bytes) {
  ended_ = false;
  std::size_t i = 0;
  while (i < bytes.size() && !failed_) {
    if (skip_ > 0) {
      const auto take = static_cast<long long>(std::min<std::size_t>(static_cast<std::size_t>(skip_), bytes.size() - i));
      i += static_cast<std::size_t>(take);
      skip_ -= take;
      if (skip_ == 0) value_done();
      if (ended_) return i;
      continue;
    }
    const char c = bytes[i++];
    if (!in_line_) {
      in_line_ = true;
      if (open_.empty()) inline_command_ = !starts_resp(c);
    }
    if (c != '\n') {
      line_.push_back(c);
      if (line_.size() > kMaxLine) failed_ = true;
      continue;
    }
    std::string_view line = line_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool ok = header(line);
    line_.clear();
    in_line_ = false;
    if (!ok) failed_ = true;
    if (ended_) return i;
  }
  return bytes.size();
}

bool RespFramer::header(std::string_view line) {
  if (inline_command_) {
    inline_command_ = false;
    if (!line.empty()) value_done();  // the server skips empty inline lines
    return true;
  }
  if (line.empty()) return false;
  const char type = line.front();
  const std::string_view rest = line.substr(1);
  long long n = 0;
  switch (type) {
    case '+':
    case '-':
      value_done();
      return true;
    case ':':
      if (!parse_count(rest, &n)) return false;
      value_done();
      return true;
    case '$':
      if (!parse_count(rest, &n) || n < -1) return false;
      if (n == -1) {
        value_done();
      } else {
        skip_ = n + 2;  // payload and its CR LF
      }
      return true;
    case '*':
      if (!parse_count(rest, &n) || n < -1) return false;
      if (n <= 0) {
        value_done();
      } else {
        open_.push_back(n);
      }
      return true;
    default:
      return false;
  }
}

// A value ended: it counts against the innermost open array, which may end
// with it (and so on outwards); with no array open, the frame ended.
void RespFramer::value_done() {
  while (!open_.empty()) {
    if (--open_.back() > 0) return;
    open_.pop_back();
  }
  ended_ = true;
}

}  // namespace redkit::test
