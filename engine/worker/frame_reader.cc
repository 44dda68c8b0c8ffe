#include "engine/worker/frame_reader.h"

#include <algorithm>

namespace zi::worker {

boost::asio::mutable_buffer FrameReader::prepare() {
  if (header_got_ < kFrameHeaderBytes)
    return boost::asio::buffer(header_ + header_got_, kFrameHeaderBytes - header_got_);
  // Grow by at most one piece past what has arrived (std::string's growth may at most double the capacity on top).
  const size_t want = std::min<size_t>(length_, got_ + kReadPieceBytes);
  if (payload_.size() < want) payload_.resize(want);
  return boost::asio::buffer(payload_.data() + got_, want - got_);
}

Status FrameReader::commit(size_t n) {
  if (header_got_ < kFrameHeaderBytes) {
    ZI_CHECK(n <= kFrameHeaderBytes - header_got_);
    header_got_ += n;
    if (header_got_ == kFrameHeaderBytes) {
      ZI_ASSIGN_OR_RETURN(length_, decode_frame_length(header_));
      payload_.clear();
    }
    return absl::OkStatus();
  }
  ZI_CHECK(got_ + n <= payload_.size());
  got_ += n;
  if (complete()) payload_.resize(got_);
  return absl::OkStatus();
}

void FrameReader::reset() {
  header_got_ = 0;
  length_ = 0;
  got_ = 0;
  if (payload_.capacity() > 4 * kReadPieceBytes) std::string().swap(payload_);
  else payload_.clear();
}

}  // namespace zi::worker
