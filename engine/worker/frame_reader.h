// Reassembles control frames (frame.h: 4-byte little-endian length + payload) from a byte stream without trusting
// their headers: the payload buffer grows only as bytes arrive, at most kReadPieceBytes (1 MiB) ahead of them, so a
// peer that announces a 200 MiB frame and then sends ten bytes costs about 1 MiB, not 200. The header is still
// checked against kMaxFrameBytes (256 MiB). No I/O of its own: the caller reads into prepare() and reports what
// arrived with commit(). Used by the worker's blocking read_frame and the worker pool's asynchronous reads.
// Not thread-safe (one reader per stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/asio/buffer.hpp>

#include "engine/core/status.h"
#include "engine/worker/frame.h"

namespace zi::worker {

class FrameReader {
 public:
  // Largest read the payload buffer is grown for ahead of the bytes that have arrived.
  static constexpr size_t kReadPieceBytes = size_t{1} << 20;

  // Where the next read goes: the rest of the 4-byte header, else the next piece of the payload (at most
  // kReadPieceBytes, never past the frame's end). Empty once the frame is complete. Valid until the next call.
  boost::asio::mutable_buffer prepare();
  // `n` bytes (at most prepare()'s size) were read into prepare()'s buffer. DATA_LOSS when the header announces
  // more than kMaxFrameBytes; the reader must then be reset() before any other use.
  Status commit(size_t n);
  // The whole frame has arrived: payload() holds it until reset().
  bool complete() const { return header_got_ == kFrameHeaderBytes && got_ == length_; }
  // Some bytes of the current frame have arrived, header included (an EOF now truncates it).
  bool started() const { return header_got_ > 0; }
  // Whether the header has arrived (then announced() is the payload length).
  bool has_header() const { return header_got_ == kFrameHeaderBytes; }
  uint32_t announced() const { return length_; }
  // The payload once complete(); before that, the bytes that have arrived plus the piece being read.
  const std::string& payload() const { return payload_; }
  // Bytes the payload buffer holds allocated: bounded by what arrived (plus one piece), not by what was announced.
  size_t buffer_capacity() const { return payload_.capacity(); }
  // Ready for the next frame. A buffer grown past 4 pieces is freed rather than kept for the connection's life.
  void reset();

 private:
  unsigned char header_[kFrameHeaderBytes] = {};
  size_t header_got_ = 0;  // header bytes arrived, 0..4
  uint32_t length_ = 0;    // payload bytes the header announces (once it has arrived)
  size_t got_ = 0;         // payload bytes arrived
  std::string payload_;    // [got_ arrived bytes | the piece prepare() handed out]
};

}  // namespace zi::worker
