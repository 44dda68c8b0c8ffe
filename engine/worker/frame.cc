#include "engine/worker/frame.h"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

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
  unsigned char header[kFrameHeaderBytes];
  boost::system::error_code ec;
  asio::read(socket, asio::buffer(header), ec);
  if (ec == asio::error::eof) return absl::UnavailableError("peer closed the connection");
  if (ec) return absl::UnavailableError(absl::StrCat("control socket read: ", ec.message()));
  ZI_ASSIGN_OR_RETURN(uint32_t n, decode_frame_length(header));
  std::string payload(n, '\0');
  asio::read(socket, asio::buffer(payload), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("control socket read (payload): ", ec.message()));
  if (!msg->ParseFromString(payload)) return absl::DataLossError("control frame: malformed protobuf payload");
  return absl::OkStatus();
}

}  // namespace zi::worker
