// The coordinator ⇄ worker control protocol: struct ⇄ proto round trips and length-prefixed framing.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>

#include "engine/worker/convert.h"
#include "engine/worker/frame.h"

namespace zi::worker {
namespace {

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;

TEST(WorkerProtocol, EngineOptionsRoundTrip) {
  EngineOptions o;
  o.model_dir = "/models/x";
  o.served_name = "x";
  o.device = Device::kCpu;
  o.dtype = ComputeDtype::kFloat16;
  o.max_context = 4096;
  o.max_batch_size = 7;
  o.offload_tier = OffloadTier::kNvme;
  o.offload_dir = "/nvme";
  o.pin_memory = false;
  o.gpu_weights_budget = 3ull << 30;
  o.prefetch_depth = 5;
  o.aio_block_size = 1 << 16;
  o.aio_queue_depth = 32;
  o.quant_bits = 4;
  o.quant_group_size = 128;
  o.kv_offload = true;
  o.kv_offload_attention = KvOffloadAttention::kCpu;
  o.rank = 3;
  o.world_size = 4;
  o.cpu_communicator = CpuCommunicator::kGloo;
  o.debug_step_delay_ms = 9;
  o.cpu_threads = 3;
  o.max_step_tokens = 4096;
  o.gpu_memory_limit = 48ull << 30;
  o.host_memory_limit = 200ull << 30;
  pb::EngineOptions p;
  to_proto(o, &p);
  EngineOptions back = from_proto(p);
  EXPECT_EQ(back.model_dir, o.model_dir);
  EXPECT_EQ(back.served_name, o.served_name);
  EXPECT_EQ(back.device, o.device);
  EXPECT_EQ(back.dtype, o.dtype);
  EXPECT_EQ(back.kv_offload_attention, o.kv_offload_attention);
  EXPECT_EQ(back.max_context, o.max_context);
  EXPECT_EQ(back.max_batch_size, o.max_batch_size);
  EXPECT_EQ(back.offload_tier, o.offload_tier);
  EXPECT_EQ(back.offload_dir, o.offload_dir);
  EXPECT_EQ(back.pin_memory, o.pin_memory);
  EXPECT_EQ(back.gpu_weights_budget, o.gpu_weights_budget);
  EXPECT_EQ(back.prefetch_depth, o.prefetch_depth);
  EXPECT_EQ(back.aio_block_size, o.aio_block_size);
  EXPECT_EQ(back.aio_queue_depth, o.aio_queue_depth);
  EXPECT_EQ(back.quant_bits, o.quant_bits);
  EXPECT_EQ(back.quant_group_size, o.quant_group_size);
  EXPECT_EQ(back.kv_offload, o.kv_offload);
  EXPECT_EQ(back.rank, o.rank);
  EXPECT_EQ(back.world_size, o.world_size);
  EXPECT_EQ(back.cpu_communicator, o.cpu_communicator);
  EXPECT_EQ(back.debug_step_delay_ms, o.debug_step_delay_ms);
  EXPECT_EQ(back.cpu_threads, o.cpu_threads);
  EXPECT_EQ(back.max_step_tokens, o.max_step_tokens);
  EXPECT_EQ(back.gpu_memory_limit, o.gpu_memory_limit);
  EXPECT_EQ(back.host_memory_limit, o.host_memory_limit);
}

TEST(WorkerProtocol, StepInputAndOutputRoundTrip) {
  StepInput in;
  SeqStep a;
  a.seq_id = 11;
  a.tokens = {1, 2, 3};
  a.first = true;
  a.sampling.temperature = 0.7f;
  a.sampling.top_k = 40;
  a.sampling.top_p = 0.9f;
  a.sampling.repetition_penalty = 1.1f;
  a.sampling.seed = 1ull << 60;
  a.sampling.return_logprobs = true;
  SeqStep b;
  b.seq_id = 12;
  b.tokens = {9};
  b.sample = false;
  b.want_logits = true;
  in.seqs = {a, b};
  in.release = {4, 5};
  pb::StepInput p;
  to_proto(in, &p);
  StepInput back = from_proto(p);
  ASSERT_EQ(back.seqs.size(), 2u);
  EXPECT_EQ(back.seqs[0].seq_id, 11u);
  EXPECT_EQ(back.seqs[0].tokens, a.tokens);
  EXPECT_TRUE(back.seqs[0].first);
  EXPECT_TRUE(back.seqs[0].sample);
  EXPECT_EQ(back.seqs[0].sampling.temperature, 0.7f);
  EXPECT_EQ(back.seqs[0].sampling.top_k, 40u);
  EXPECT_EQ(back.seqs[0].sampling.top_p, 0.9f);
  EXPECT_EQ(back.seqs[0].sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(back.seqs[0].sampling.seed, 1ull << 60);
  EXPECT_TRUE(back.seqs[0].sampling.return_logprobs);
  EXPECT_FALSE(back.seqs[1].sample);
  EXPECT_TRUE(back.seqs[1].want_logits);
  EXPECT_EQ(back.release, in.release);
  // A frame is one rank's micro-batch: ranks do not travel (the worker runs it as its rank 0).
  in.seqs[1].rank = 3;
  in.release = {SeqRelease(6, 2)};
  p.Clear();
  to_proto(in, &p);
  back = from_proto(p);
  EXPECT_EQ(back.seqs[1].rank, 0u);
  EXPECT_EQ(back.release, (std::vector<SeqRelease>{SeqRelease(6, 0)}));

  StepOutput out;
  out.results = {{11, 42, -0.25f, {}}, {12, -1, 0.0f, {0.5f, 1.5f}}};
  out.stats.seconds = 0.125;
  out.stats.prefill_tokens = 3;
  out.stats.decode_tokens = 1;
  pb::StepReply r;
  to_proto(out, &r);
  StepOutput o2 = from_proto(r);
  ASSERT_EQ(o2.results.size(), 2u);
  EXPECT_EQ(o2.results[0].token, 42);
  EXPECT_EQ(o2.results[0].logprob, -0.25f);
  EXPECT_EQ(o2.results[1].token, -1);
  EXPECT_EQ(o2.results[1].logits, (std::vector<float>{0.5f, 1.5f}));
  EXPECT_EQ(o2.stats.seconds, 0.125);
  EXPECT_EQ(o2.stats.prefill_tokens, 3u);
}

TEST(WorkerProtocol, SummaryAndErrorsRoundTrip) {
  ModelSummary s;
  s.name = "m";
  s.architecture = "LlamaForCausalLM";
  s.parameters = 123456789;
  s.vocab_size = 32000;
  s.max_context = 4096;
  s.dtype = "bfloat16";
  s.device = "cpu";
  s.num_ranks = 2;
  s.eos_token_ids = {2, 32001};
  s.bos_token_id = 1;
  pb::ModelSummary p;
  to_proto(s, &p);
  ModelSummary b = from_proto(p);
  EXPECT_EQ(b.architecture, s.architecture);
  EXPECT_EQ(b.parameters, s.parameters);
  EXPECT_EQ(b.eos_token_ids, s.eos_token_ids);
  EXPECT_EQ(b.bos_token_id, 1);

  pb::Error e;
  to_proto(absl::NotFoundError("model.safetensors: missing"), &e);
  Status st = from_proto(e);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(st.message(), "model.safetensors: missing");
  e.set_code(0);  // an Error frame is never OK
  EXPECT_FALSE(from_proto(e).ok());
}

class Framing : public ::testing::Test {
 protected:
  Framing() : a(io), b(io) { asio::local::connect_pair(a, b); }
  asio::io_context io;
  Socket a, b;
};

TEST_F(Framing, FramesCarryLittleEndianLengthsAndSurviveTheSocket) {
  pb::FromWorker hello;
  hello.mutable_hello()->set_rank(258);
  auto bytes = encode_frame(hello);
  ASSERT_TRUE(bytes.ok());
  const size_t n = bytes->size() - kFrameHeaderBytes;
  EXPECT_EQ(static_cast<unsigned char>((*bytes)[0]), n & 0xff);
  EXPECT_EQ((*bytes)[1], 0);

  pb::ToWorker step;
  for (int i = 0; i < 1000; ++i) step.mutable_step()->add_release(i);
  ASSERT_TRUE(write_frame(a, hello).ok());
  ASSERT_TRUE(write_frame(a, step).ok());
  pb::FromWorker got1;
  pb::ToWorker got2;
  ASSERT_TRUE(read_frame(b, &got1).ok());
  ASSERT_TRUE(read_frame(b, &got2).ok());
  EXPECT_EQ(got1.hello().rank(), 258u);
  EXPECT_EQ(got2.step().release_size(), 1000);
}

TEST_F(Framing, EofIsUnavailableAndAbsurdLengthsAreRefused) {
  const unsigned char huge[4] = {0xff, 0xff, 0xff, 0x7f};
  asio::write(a, asio::buffer(huge, 4));
  pb::ToWorker msg;
  Status st = read_frame(b, &msg);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("over the"), std::string::npos) << st;

  a.close();
  Socket c(io), d(io);
  asio::local::connect_pair(c, d);
  c.close();
  st = read_frame(d, &msg);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(st.message(), "peer closed the connection");
}

TEST_F(Framing, GarbagePayloadIsDataLoss) {
  const unsigned char frame[7] = {3, 0, 0, 0, 0xff, 0xff, 0xff};
  asio::write(a, asio::buffer(frame, 7));
  pb::ToWorker msg;
  EXPECT_EQ(read_frame(b, &msg).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace zi::worker
