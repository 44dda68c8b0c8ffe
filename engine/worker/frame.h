// Framing of the coordinator ⇄ worker control stream (proto/zeroinfer/v1/worker.proto): every message is a 4-byte
// little-endian length N followed by N bytes of one serialized protobuf message, over a Unix socket or TLS.
// Read asynchronously by both ends (the worker's control_client.h, the coordinator's server/worker_pool/); the
// blocking helpers below serve tests and tools.
#pragma once

#include <cstdint>
#include <string>

#include <boost/asio/local/stream_protocol.hpp>
#include <google/protobuf/message_lite.h>

#include "engine/core/status.h"

namespace zi::worker {

// Larger frames are refused. Readers also never allocate an announced length before its bytes arrive
// (frame_reader.h), so a corrupt or hostile length costs nothing. Step replies stay far below this: the scheduler
// bounds the logits a step returns (SchedulerOptions::max_logits_bytes_per_step).
inline constexpr uint32_t kMaxFrameBytes = 256u << 20;
inline constexpr size_t kFrameHeaderBytes = 4;

// header + payload, ready to write.
StatusOr<std::string> encode_frame(const google::protobuf::MessageLite& msg);
// The payload length carried by a 4-byte header; an error when it exceeds kMaxFrameBytes.
StatusOr<uint32_t> decode_frame_length(const unsigned char header[kFrameHeaderBytes]);

// Blocking helpers for one socket. Not thread-safe per socket: callers serialize writes (and reads) themselves.
// read_frame returns UNAVAILABLE "peer closed the connection" on an EOF before a whole header, and reads the
// payload in pieces of at most 1 MiB (FrameReader).
Status write_frame(boost::asio::local::stream_protocol::socket& socket, const google::protobuf::MessageLite& msg);
Status read_frame(boost::asio::local::stream_protocol::socket& socket, google::protobuf::MessageLite* msg);

}  // namespace zi::worker
