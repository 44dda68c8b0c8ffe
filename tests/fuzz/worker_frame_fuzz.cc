// Fuzz target: the coordinator ⇄ worker control stream (engine/worker/frame.h: 4-byte little-endian length +
// one serialized worker.proto message) and the struct conversions of engine/worker/convert.h that both sides
// apply to what they read.
// Input: byte 0 picks the direction (even: worker → coordinator FromWorker frames, odd: coordinator → worker
// ToWorker frames); the rest is the byte stream a peer wrote before closing its end (at most 128 KiB; the rest of
// a longer input is dropped, as if the peer had died).
// Promises checked: read_frame ends with an error (never a crash or a hang) on any stream; every message it
// accepts converts, re-frames to a header that announces exactly its payload, and a worker Error never reads as OK.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <google/protobuf/stubs/logging.h>

#include "engine/worker/convert.h"
#include "engine/worker/frame.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace asio = boost::asio;
namespace pb = zi::worker::pb;
using Socket = asio::local::stream_protocol::socket;

constexpr size_t kMaxStream = 128 << 10;

// The frame of `msg` announces its payload exactly, and reading that payload back gives the same bytes.
template <class Msg>
void check_reframe(const Msg& msg) {
  auto frame = zi::worker::encode_frame(msg);
  FUZZ_CHECK(frame.ok(), "encode_frame refused a message read_frame accepted: %s", frame.status().ToString().c_str());
  auto n = zi::worker::decode_frame_length(reinterpret_cast<const unsigned char*>(frame->data()));
  FUZZ_CHECK(n.ok() && *n + zi::worker::kFrameHeaderBytes == frame->size(), "header does not announce the payload");
  Msg back;
  FUZZ_CHECK(back.ParseFromArray(frame->data() + zi::worker::kFrameHeaderBytes, static_cast<int>(*n)),
             "re-encoded payload does not parse");
  FUZZ_CHECK(back.SerializeAsString() == msg.SerializeAsString(), "payload changed across a re-frame");
}

void use(const pb::ToWorker& m) {
  if (m.has_init()) (void)zi::worker::from_proto(m.init().options());
  if (m.has_step()) {
    zi::StepInput in = zi::worker::from_proto(m.step());
    FUZZ_CHECK(in.seqs.size() == static_cast<size_t>(m.step().seqs_size()), "seqs lost in conversion");
    pb::StepInput again;
    zi::worker::to_proto(in, &again);
    FUZZ_CHECK(again.seqs_size() == m.step().seqs_size() && again.release_size() == m.step().release_size(),
               "StepInput round trip changed its shape");
  }
  check_reframe(m);
}

void use(const pb::FromWorker& m) {
  if (m.has_ready()) (void)zi::worker::from_proto(m.ready().summary());
  if (m.has_step_reply()) {
    zi::StepOutput out = zi::worker::from_proto(m.step_reply());
    FUZZ_CHECK(out.results.size() == static_cast<size_t>(m.step_reply().results_size()), "results lost");
  }
  if (m.has_error()) {
    zi::Status st = zi::worker::from_proto(m.error());
    FUZZ_CHECK(!st.ok(), "a worker Error (code %d) converted to OK", m.error().code());
  }
  check_reframe(m);
}

template <class Msg>
void read_all(Socket& socket) {
  for (int frames = 0;; ++frames) {
    Msg msg;
    zi::Status s = zi::worker::read_frame(socket, &msg);
    if (!s.ok()) {
      FUZZ_CHECK(!s.message().empty(), "read_frame error without a message");
      return;
    }
    // Each frame consumes at least its 4-byte header from a finite stream: the loop ends.
    FUZZ_CHECK(frames <= static_cast<int>(kMaxStream / zi::worker::kFrameHeaderBytes), "more frames than bytes");
    use(msg);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // protobuf logs every string field that is not valid UTF-8 (then refuses the message): millions of lines here.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool to_worker = data[0] & 1;
  const size_t n = std::min(size - 1, kMaxStream);
  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
  // Non-blocking writer: what does not fit in the socket buffer is dropped (the peer "died" mid-frame).
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fds[1], data + 1 + done, n - done);
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  ::close(fds[1]);  // EOF after the bytes
  asio::io_context io;
  Socket socket(io, asio::local::stream_protocol(), fds[0]);  // takes fds[0]
  if (to_worker) {
    read_all<pb::ToWorker>(socket);
  } else {
    read_all<pb::FromWorker>(socket);
  }
  return 0;
}
