// The control-frame reader (engine/worker/frame_reader.h) grows its buffer with the bytes that arrive, not with the
// length a header announces: a peer that announces a huge frame and sends a few bytes costs about one 1 MiB piece.
// Also: frames split at any byte boundary reassemble exactly, the 256 MiB cap is checked on the header, and the
// blocking read_frame over a socket uses the same reader (a truncated huge frame ends with an error, not a hang).
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>

#include "engine/worker/convert.h"
#include "engine/worker/frame.h"
#include "engine/worker/frame_reader.h"

namespace zi::worker {
namespace {

namespace asio = boost::asio;

std::string header_of(uint32_t n) {
  std::string h(kFrameHeaderBytes, '\0');
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) h[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return h;
}

// Feeds `bytes` to the reader in reads of at most `piece` bytes (as a socket might deliver them).
Status feed(FrameReader& r, const std::string& bytes, size_t piece) {
  size_t at = 0;
  while (at < bytes.size() && !r.complete()) {
    asio::mutable_buffer buf = r.prepare();
    const size_t n = std::min({buf.size(), piece, bytes.size() - at});
    std::memcpy(buf.data(), bytes.data() + at, n);
    at += n;
    if (Status st = r.commit(n); !st.ok()) return st;
  }
  return absl::OkStatus();
}

TEST(FrameReader, AHugeAnnouncedFrameWithFewBytesAllocatesOnlyAPiece) {
  FrameReader r;
  const uint32_t announced = 200u << 20;  // under the 256 MiB cap
  ASSERT_TRUE(feed(r, header_of(announced) + "0123456789", 64).ok());
  EXPECT_TRUE(r.has_header());
  EXPECT_EQ(r.announced(), announced);
  EXPECT_FALSE(r.complete());
  EXPECT_LE(r.buffer_capacity(), 2 * FrameReader::kReadPieceBytes) << "grown for what arrived, not for 200 MiB";
  EXPECT_LE(r.prepare().size(), FrameReader::kReadPieceBytes);
  EXPECT_EQ(r.payload().substr(0, 10), "0123456789");

  // 5 MiB more arrive: the buffer follows them (std::string may double), still far from 200 MiB.
  ASSERT_TRUE(feed(r, std::string(5u << 20, 'x'), 1u << 20).ok());
  EXPECT_LE(r.buffer_capacity(), 2 * ((5u << 20) + 10 + FrameReader::kReadPieceBytes));
  EXPECT_FALSE(r.complete());
}

TEST(FrameReader, FramesSplitAnywhereReassembleExactly) {
  std::string payload(3 * FrameReader::kReadPieceBytes + 123, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + 3);
  for (size_t piece : {size_t{1} << 20, size_t{65537}, size_t{3}}) {
    if (piece == 3) payload.resize(1000);  // byte-sized reads: a shorter frame keeps the test fast
    FrameReader r;
    ASSERT_TRUE(feed(r, header_of(static_cast<uint32_t>(payload.size())) + payload, piece).ok());
    ASSERT_TRUE(r.complete()) << "piece " << piece;
    EXPECT_EQ(r.payload(), payload) << "piece " << piece;
    EXPECT_EQ(r.prepare().size(), 0u);
    r.reset();
    EXPECT_FALSE(r.started());
    // The next frame on the same reader, including an empty one.
    ASSERT_TRUE(feed(r, header_of(0), piece).ok());
    EXPECT_TRUE(r.complete());
    EXPECT_TRUE(r.payload().empty());
    r.reset();
    ASSERT_TRUE(feed(r, header_of(2) + "ok", piece).ok());
    EXPECT_EQ(r.payload(), "ok");
  }
}

TEST(FrameReader, AHeaderOverTheCapIsDataLoss) {
  FrameReader r;
  Status st = feed(r, header_of(kMaxFrameBytes + 1), 4);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("over the 268435456-byte limit"), std::string::npos) << st;
  FrameReader exact;
  EXPECT_TRUE(feed(exact, header_of(kMaxFrameBytes), 4).ok()) << "the cap itself is allowed";
  EXPECT_LE(exact.buffer_capacity(), FrameReader::kReadPieceBytes);
}

TEST(FrameReader, ReadFrameOverASocketEndsATruncatedHugeFrameWithAnError) {
  asio::io_context io;
  asio::local::stream_protocol::socket a(io), b(io);
  asio::local::connect_pair(a, b);
  const std::string bytes = header_of(200u << 20) + "abc";
  asio::write(a, asio::buffer(bytes));
  a.close();
  pb::ToWorker msg;
  Status st = read_frame(b, &msg);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("control socket read (payload)"), std::string::npos) << st;
}

}  // namespace
}  // namespace zi::worker
