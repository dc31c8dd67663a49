// Finds where RESP2 values end in a byte stream, without building them: the
// FaultProxy uses it to tell commands and replies apart, the ScriptedServer
// to read whole commands. Accepts the five RESP2 types (+ - : $ *) and, at
// the top level, inline commands (a line that starts with none of them).
//
// Thread safety: one framer belongs to one stream (one thread at a time).
// Exceptions: none. Bytes that are not RESP put the framer in a failed state
// (failed() is true; no frame ever ends again) instead of throwing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace redkit::test {

class RespFramer {
 public:
  /// Scans bytes, continuing the frame in progress. Stops just after the
  /// first frame that ends in them: returns how many bytes it took, and
  /// frame_ended() is then true. Returns bytes.size() (frame_ended() false)
  /// when no frame ends in them. The next feed() starts a new frame.
  std::size_t feed(std::string_view bytes);

  /// True when the last feed() stopped at the end of a frame.
  bool frame_ended() const { return ended_; }
  /// True once the stream held bytes that are not RESP.
  bool failed() const { return failed_; }
  /// True when no frame is in progress (the next byte starts a new one).
  bool at_frame_start() const { return !failed_ && line_.empty() && skip_ == 0 && open_.empty() && !in_line_; }

 private:
  void value_done();
  bool header(std::string_view line);

  static constexpr std::size_t kMaxLine = 64 * 1024;

  std::string line_;             // the header line read so far (without CR LF)
  bool in_line_ = false;         // a header line has started
  bool inline_command_ = false;  // the current top-level frame is an inline command
  long long skip_ = 0;           // bulk payload bytes (with its CR LF) still to pass
  std::vector<long long> open_;  // elements still owed by each open array, outermost first
  bool ended_ = false;
  bool failed_ = false;
};

}  // namespace redkit::test
