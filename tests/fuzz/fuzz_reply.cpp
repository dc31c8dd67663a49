// The reply path: bytes from a server -> detail::ReplyReader -> Reply, then
// every accessor of the reply and of each element, recursively. Bytes that
// are not RESP must give ProtocolError; a reply's accessors give its data
// or a redkit::Error (ReplyError, ProtocolError), never anything else, and
// agree with each other.
//
// The first input byte sets the size of the chunks the rest is fed in
// (1..64 bytes), as a socket would hand them over.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <redkit/detail/reply_reader.hpp>
#include <redkit/reply.hpp>

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_reply: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// Calls f; true if it returned, false if it threw a redkit::Error.
template <class F>
bool returns(F&& f) {
  try {
    f();
    return true;
  } catch (const redkit::Error&) {
    return false;
  }
}

void walk(const redkit::ReplyView& r, int depth) {
  check(depth <= 16, "nesting beyond what the reader allows");
  using Type = redkit::ReplyView::Type;
  const Type type = r.type();
  const int kinds = r.is_nil() + r.is_error() + r.is_integer() + r.is_array() + r.is_string() + r.is_status();
  check(kinds == 1, "not exactly one kind");
  check(r.raw() != nullptr || r.is_nil(), "no raw reply");

  check(returns([&] { r.check(); }) != r.is_error(), "check() disagrees with is_error()");
  if (r.is_error()) {
    check(r.error().size() == r.raw()->len, "error text length");
    try {
      r.check();
    } catch (const redkit::ReplyError& e) {
      // (what() stops at a NUL byte; the prefix is taken from the whole text)
      check(r.error().substr(0, e.prefix().size()) == e.prefix(), "prefix is not the error's first word");
      check(e.prefix().find(' ') == std::string::npos, "prefix holds a space");
    }
  } else {
    check(r.error().empty(), "error text on a non-error");
  }

  long long n = 0;
  check(returns([&] { n = r.integer(); }) == r.is_integer(), "integer() disagrees with is_integer()");
  if (r.is_integer()) check(n == r.raw()->integer, "integer value");

  std::string_view text;
  const bool has_text = returns([&] { text = r.string(); });
  check(has_text == (r.is_string() || r.is_status()), "string() disagrees with the type");
  if (has_text) check(text.size() == r.raw()->len && text.data() == r.raw()->str, "string view");

  std::optional<std::string_view> maybe;
  const bool optional_ok = returns([&] { maybe = r.optional_string(); });
  check(optional_ok == (has_text || r.is_nil()), "optional_string() disagrees with the type");
  if (optional_ok) check(maybe.has_value() == has_text, "optional_string() of nil");

  bool ok = false;
  check(returns([&] { ok = r.ok(); }), "ok() threw");
  check(ok == (r.is_status() && text == "OK"), "ok()");

  std::size_t size = 0;
  check(returns([&] { size = r.size(); }) == r.is_array(), "size() disagrees with is_array()");
  check(type == Type::Array || size == 0, "size of a non-array");
  for (std::size_t i = 0; i < size; ++i) walk(r[i], depth + 1);
  check(!returns([&] { (void)r[size]; }), "operator[] past the end did not throw");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 64;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  redkit::detail::ReplyReader reader;
  try {
    for (std::size_t at = 0; at < bytes.size(); at += chunk) {
      const std::string_view piece = bytes.substr(at, chunk);
      reader.feed(piece.data(), piece.size());
      while (std::optional<redkit::Reply> reply = reader.next()) {
        walk(*reply, 0);
        redkit::Reply moved(std::move(*reply));  // moving keeps one owner
        walk(moved, 0);
        check(reply->is_nil() && reply->raw() == nullptr, "a moved-from reply is not nil");
        walk(*reply, 0);
      }
    }
  } catch (const redkit::ProtocolError&) {
    // Not RESP, or an array over the cap: the reader is done.
  }
  return 0;
}
