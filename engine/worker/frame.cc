#include "engine/worker/frame.h"

#include <boost/asio/write.hpp>

#include "engine/worker/frame_reader.h"

namespace zi::worker {

namespace asio = boost::asio;

StatusOr<std::string> encode_frame(const google::protobuf::MessageLite& msg) {
  size_t n = msg.ByteSizeLong();
  if (n > kMaxFrameBytes)
    return absl::ResourceExhaustedError(
        absl::StrFormat("control frame of %u bytes exceeds the %u-byte limit", n, kMaxFrameBytes));
  std::string out(kFrameHeaderBytes + n, '\0');
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  if (!msg.SerializeToArray(out.data() + kFrameHeaderBytes, static_cast<int>(n)))
    return absl::InternalError("control frame: protobuf serialization failed");
  return out;
}

StatusOr<uint32_t> decode_frame_length(const unsigned char header[kFrameHeaderBytes]) {
  uint32_t n = 0;
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) n |= static_cast<uint32_t>(header[i]) << (8 * i);
  if (n > kMaxFrameBytes)
    return absl::DataLossError(
        absl::StrFormat("control frame header announces %u bytes, over the %u-byte limit", n, kMaxFrameBytes));
  return n;
}

Status write_frame(asio::local::stream_protocol::socket& socket, const google::protobuf::MessageLite& msg) {
  ZI_ASSIGN_OR_RETURN(std::string bytes, encode_frame(msg));
  boost::system::error_code ec;
  asio::write(socket, asio::buffer(bytes), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("control socket write: ", ec.message()));
  return absl::OkStatus();
}

Status read_frame(asio::local::stream_protocol::socket& socket, google::protobuf::MessageLite* msg) {
  // Piece by piece (frame_reader.h): the header's length is not allocated before its bytes arrive.
  FrameReader reader;
  boost::system::error_code ec;
  while (!reader.complete()) {
    const size_t n = socket.read_some(reader.prepare(), ec);
    if (ec == asio::error::eof && !reader.has_header()) return absl::UnavailableError("peer closed the connection");
    if (ec && !reader.has_header()) return absl::UnavailableError(absl::StrCat("control socket read: ", ec.message()));
    if (ec) return absl::UnavailableError(absl::StrCat("control socket read (payload): ", ec.message()));
    ZI_RETURN_IF_ERROR(reader.commit(n));
  }
  if (!msg->ParseFromString(reader.payload())) return absl::DataLossError("control frame: malformed protobuf payload");
  return absl::OkStatus();
}

}  // namespace zi::worker
