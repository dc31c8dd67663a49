// A view into a temporary Reply must not compile: the Reply is freed at the
// end of the statement, and the view would dangle (a heap-use-after-free).
// CTest builds one target per REDKIT_CASE_* on demand and passes only if the
// compiler rejects that line for the deleted rvalue accessor
// (tests/compile_fail/CMakeLists.txt). The control target defines none of
// them, keeps the safe forms below, and must compile: so each failure is the
// dangling line and nothing else.
#include <optional>
#include <string>
#include <string_view>

#include <redkit/redis.hpp>
#include <redkit/reply.hpp>

int main() {
  redkit::Redis redis;  // connects lazily: nothing here contacts a server
  const std::string k = "k";

#if defined(REDKIT_CASE_STRING)
  std::string_view v = redis.command({"GET", k}).string();
  (void)v;
#elif defined(REDKIT_CASE_OPTIONAL_STRING)
  std::optional<std::string_view> v = redis.command({"GET", k}).optional_string();
  (void)v;
#elif defined(REDKIT_CASE_ELEMENT)
  redkit::ReplyView role = redis.command({"ROLE"})[0];
  (void)role;
#elif defined(REDKIT_CASE_VIEW_OF_TEMPORARY)
  redkit::ReplyView v = redis.command({"GET", k});
  (void)v;
#else
  // The safe forms: a Reply kept in a variable gives zero-copy views, and
  // the owning accessors work on a temporary.
  redkit::Reply reply = redis.command({"GET", k});
  std::string_view view = reply.string();
  std::optional<std::string_view> maybe = reply.optional_string();
  std::string copy = redis.command({"GET", k}).string_copy();
  std::optional<std::string> maybe_copy = redis.command({"GET", k}).optional_string_copy();
  redkit::Reply role = redis.command({"ROLE"});
  redkit::ReplyView first = role[0];
  const redkit::ReplyView& whole = redis.command({"GET", k});  // binds, and keeps the temporary alive
  long long n = redis.command({"INCR", k}).integer();          // a value, not a view
  (void)view, (void)maybe, (void)copy, (void)maybe_copy, (void)first, (void)whole, (void)n;
#endif
  return 0;
}
