// The CUDA plumbing the weight-streaming code builds on: the caching allocator (size classes, reuse without
// cudaMalloc, clean out-of-memory errors), streams and events (a copy on a side stream that compute only sees
// through an event), pinned and registered host memory.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/device_allocator.h"
#include "engine/backend/cuda/stream.h"
#include "tests/gpu/cuda_test_util.h"

namespace zi::cuda {
namespace {

using testing_gpu::device_count;

TEST(DeviceAllocatorSizes, ClassesBoundTheWaste) {
  // Host-only arithmetic: runs without a GPU too.
  size_t prev = 0;
  for (size_t b : {size_t{0}, size_t{1}, size_t{511}, size_t{512}, size_t{513}, size_t{1} << 19, (size_t{1} << 20) - 1,
                   size_t{1} << 20, (size_t{1} << 20) + 1, (size_t{86} << 20) + 12345, size_t{3} << 25,
                   size_t{250} << 20}) {  // ascending
    const size_t r = DeviceAllocator::round_size(b);
    EXPECT_GE(r, std::max<size_t>(b, 1)) << b;
    EXPECT_GE(r, prev) << "monotonic at " << b;
    prev = r;
    if (b < (size_t{1} << 20)) {
      EXPECT_EQ(r % 512, 0u) << b;
      EXPECT_LT(r - std::max<size_t>(b, 1), 512u) << b;
    } else {
      EXPECT_LE(static_cast<double>(r - b), b / 16.0) << b;  // ≤ 6.25 % waste
    }
  }
  // Sizes that differ by less than a class step share the class.
  EXPECT_EQ(DeviceAllocator::round_size(100 << 20), DeviceAllocator::round_size((100 << 20) - 4096));
}

class CudaRuntime : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no GPU";
    auto b = CudaBackend::create({0, DType::kBF16});
    ASSERT_TRUE(b.ok()) << b.status();
    be_ = std::move(*b);
  }
  std::unique_ptr<CudaBackend> be_;
};

TEST_F(CudaRuntime, StepTemporariesAreRecycledWithoutCudaMalloc) {
  std::vector<uint16_t> host(64 * 4096, f32_to_bf16(1.0f));
  auto one_step = [&](int T) {
    // What a layer does: a few temporaries of sizes that depend on the token count, dropped at the end.
    Tensor x = be_->from_host(DType::kBF16, {T, 4096}, host.data());
    Tensor y = be_->add(x, x);
    Tensor z = be_->activation(y, Activation::kSilu);
    be_->add_inplace(z, x);
  };
  for (int T : {64, 1, 17}) one_step(T);
  be_->synchronize();
  const AllocatorStats warm = be_->memory_info().allocator;
  for (int i = 0; i < 50; ++i)
    for (int T : {64, 1, 17}) one_step(T);
  be_->synchronize();
  const AllocatorStats after = be_->memory_info().allocator;
  EXPECT_EQ(after.device_mallocs, warm.device_mallocs) << "a warm step must not call cudaMalloc";
  EXPECT_GT(after.allocations, warm.allocations + 400);
  EXPECT_EQ(after.bytes_in_use, warm.bytes_in_use);
  EXPECT_GT(after.bytes_cached, 0u);
  const size_t cached = after.bytes_cached;
  be_->allocator().release_cached();
  EXPECT_EQ(be_->memory_info().allocator.bytes_cached, 0u);
  EXPECT_GT(cached, 0u);
}

TEST_F(CudaRuntime, OutOfMemoryIsAStatusNamingTheSize) {
  auto t = be_->try_alloc(DType::kBF16, {int64_t{1} << 49});  // 1 PiB
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(t.status().message()), ::testing::HasSubstr("cannot allocate"));
  // The backend still works afterwards.
  std::vector<uint16_t> v(8, f32_to_bf16(2.0f));
  Tensor x = be_->from_host(DType::kBF16, {8}, v.data());
  EXPECT_EQ(be_->to_host_f32(be_->add(x, x)), std::vector<float>(8, 4.0f));
}

TEST_F(CudaRuntime, SideStreamCopyIsOrderedByAnEventNotTheHost) {
  const size_t n = size_t{1} << 22;  // 4 Mi bf16 values = 8 MiB
  auto pinned = PinnedHostBuffer::allocate(n * 2);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  auto* h = static_cast<uint16_t*>(pinned->data());
  for (size_t i = 0; i < n; ++i) h[i] = f32_to_bf16(static_cast<float>(i % 7));
  auto copy = CudaStream::create(be_->device());
  auto ready = CudaEvent::create(be_->device());
  ASSERT_TRUE(copy.ok() && ready.ok());
  // Busy the copy stream first (a 512 MiB device-to-device copy), so that its upload lands well after compute
  // would have read the slot had it not waited on the event.
  auto big_a = be_->try_alloc(DType::kU8, {int64_t{512} << 20});
  auto big_b = be_->try_alloc(DType::kU8, {int64_t{512} << 20});
  ASSERT_TRUE(big_a.ok() && big_b.ok());
  Tensor slot = be_->alloc(DType::kBF16, {static_cast<int64_t>(n)});
  be_->fill_zero(slot);
  be_->synchronize();
  ASSERT_TRUE(copy->copy_async(big_b->data(), big_a->data(), size_t{512} << 20).ok());
  ASSERT_TRUE(copy->copy_async(slot.data(), h, n * 2).ok());
  ASSERT_TRUE(ready->record(*copy).ok());
  ASSERT_TRUE(CudaStream::wait(be_->compute_stream(), *ready).ok());
  Tensor doubled = be_->add(slot, slot);  // enqueued at once: the host did not wait for the copy
  const std::vector<float> out = be_->to_host_f32(doubled);
  for (size_t i = 0; i < n; i += 4099) ASSERT_EQ(out[i], 2.0f * static_cast<float>(i % 7)) << i;
  auto done = ready->query();
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  ASSERT_TRUE(copy->synchronize().ok());
}

TEST_F(CudaRuntime, TimingEventsMeasureACopy) {
  const size_t bytes = size_t{64} << 20;
  auto pinned = PinnedHostBuffer::allocate(bytes);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  std::memset(pinned->data(), 1, bytes);
  auto dst = be_->try_alloc(DType::kU8, {static_cast<int64_t>(bytes)});
  auto s = CudaStream::create(be_->device());
  auto a = CudaEvent::create(be_->device(), true), b = CudaEvent::create(be_->device(), true);
  ASSERT_TRUE(dst.ok() && s.ok() && a.ok() && b.ok());
  ASSERT_TRUE(a->record(*s).ok());
  ASSERT_TRUE(s->copy_async(dst->data(), pinned->data(), bytes).ok());
  ASSERT_TRUE(b->record(*s).ok());
  ASSERT_TRUE(b->synchronize().ok());
  auto ms = CudaEvent::elapsed_ms(*a, *b);
  ASSERT_TRUE(ms.ok()) << ms.status();
  EXPECT_GT(*ms, 0.0f);
  // Informational only (timings are never pass/fail): the pinned host→device rate of this machine.
  std::printf("pinned H2D copy: %.1f GB/s\n", bytes / (*ms * 1e-3) / 1e9);
}

TEST_F(CudaRuntime, RegisteredHostMemoryCopiesBothWays) {
  const size_t bytes = size_t{4} << 20;
  void* mem = std::aligned_alloc(4096, bytes);
  ASSERT_NE(mem, nullptr);
  {
    auto reg = HostRegistration::register_range(mem, bytes);
    ASSERT_TRUE(reg.ok()) << reg.status();
    auto* p = static_cast<uint8_t*>(mem);
    for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(i * 31);
    auto s = CudaStream::create(be_->device());
    ASSERT_TRUE(s.ok());
    auto dev = be_->try_alloc(DType::kU8, {static_cast<int64_t>(bytes)});
    ASSERT_TRUE(dev.ok());
    ASSERT_TRUE(s->copy_async(dev->data(), mem, bytes).ok());
    std::vector<uint8_t> back(bytes);
    ASSERT_TRUE(s->synchronize().ok());
    be_->copy_to_host(*dev, back.data());
    EXPECT_EQ(std::memcmp(back.data(), mem, bytes), 0);
  }
  std::free(mem);
}

}  // namespace
}  // namespace zi::cuda
