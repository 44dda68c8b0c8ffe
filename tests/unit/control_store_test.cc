// Gloo's rendezvous over the control channel: the coordinator's table (server/worker_pool/rendezvous_store.h) on
// its own, then three ranks, each with a real ControlClient and ControlStore (engine/worker/) talking to a small
// coordinator stand-in over Unix sockets, connecting a real Gloo group through it and all-gathering. A key that
// never comes fails the wait with gloo::IoException naming it, not a hang.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <thread>

#include <gloo/common/error.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/comm/communicator.h"
#include "engine/worker/control_client.h"
#include "engine/worker/control_store.h"
#include "engine/worker/frame.h"
#include "server/worker_pool/rendezvous_store.h"

namespace zi {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
namespace pb = ::zeroinfer::v1::worker;

pb::StoreRequest request(uint64_t id, pb::StoreRequest::Op op, std::vector<std::string> keys, std::string value = "") {
  pb::StoreRequest r;
  r.set_request_id(id);
  r.set_op(op);
  for (auto& k : keys) r.add_keys(k);
  r.set_value(value);
  return r;
}

TEST(RendezvousStore, ParksGetsAndWaitsUntilTheirKeysAreSet) {
  server::RendezvousStore store;
  EXPECT_TRUE(store.handle(0, request(1, pb::StoreRequest::GET, {"a"})).empty());
  EXPECT_TRUE(store.handle(1, request(2, pb::StoreRequest::WAIT, {"a", "b"})).empty());
  EXPECT_EQ(store.parked(), 2u);

  // Setting a answers the GET (and the SET itself); the WAIT still lacks b.
  auto replies = store.handle(2, request(3, pb::StoreRequest::SET, {"a"}, "alpha"));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].rank, 2u);
  EXPECT_EQ(replies[0].reply.request_id(), 3u);
  EXPECT_EQ(replies[1].rank, 0u);
  EXPECT_EQ(replies[1].reply.request_id(), 1u);
  EXPECT_EQ(replies[1].reply.value(), "alpha");
  replies = store.handle(2, request(4, pb::StoreRequest::SET, {"b"}, "beta"));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[1].rank, 1u);
  EXPECT_EQ(replies[1].reply.request_id(), 2u);

  // Present keys answer at once; a closed rank's parked requests are forgotten.
  replies = store.handle(1, request(5, pb::StoreRequest::GET, {"b"}));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].reply.value(), "beta");
  EXPECT_TRUE(store.handle(1, request(6, pb::StoreRequest::GET, {"c"})).empty());
  store.drop(1);
  EXPECT_EQ(store.parked(), 0u);
}

// The coordinator's part for the test: accepts connections on a Unix socket and serves their StoreRequests from
// one RendezvousStore, a thread per connection (blocking frame.h I/O).
class StoreServer {
 public:
  StoreServer() : acceptor_(io_) {
    dir_ = std::filesystem::temp_directory_path() / ("zi_store_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "s.sock").string();
    acceptor_.open(asio::local::stream_protocol());
    acceptor_.bind(asio::local::stream_protocol::endpoint(path_));
    acceptor_.listen();
  }
  ~StoreServer() {
    for (auto& t : threads_) t.join();
    std::filesystem::remove_all(dir_);
  }
  const std::string& path() const { return path_; }

  // Accepts `n` connections, each served until it closes.
  void serve(int n) {
    for (int i = 0; i < n; ++i) {
      auto conn = std::make_shared<Conn>(io_);
      acceptor_.accept(conn->socket);
      std::lock_guard<std::mutex> lock(mu_);
      conns_.push_back(conn);
      const uint32_t rank = static_cast<uint32_t>(conns_.size() - 1);
      threads_.emplace_back([this, conn, rank] {
        for (;;) {
          pb::FromWorker msg;
          if (!worker::read_frame(conn->socket, &msg).ok()) return;
          if (!msg.has_store()) continue;
          std::lock_guard<std::mutex> lock(mu_);
          for (auto& r : table_.handle(rank, msg.store())) {
            pb::ToWorker reply;
            *reply.mutable_store_reply() = r.reply;
            std::lock_guard<std::mutex> wlock(conns_[r.rank]->write_mu);
            (void)worker::write_frame(conns_[r.rank]->socket, reply);
          }
        }
      });
    }
  }

 private:
  struct Conn {
    explicit Conn(asio::io_context& io) : socket(io) {}
    asio::local::stream_protocol::socket socket;
    std::mutex write_mu;
  };
  asio::io_context io_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path dir_;
  std::string path_;
  std::mutex mu_;
  server::RendezvousStore table_;                // guarded by mu_
  std::vector<std::shared_ptr<Conn>> conns_;     // index = connection order; guarded by mu_
  std::vector<std::thread> threads_;
};

TEST(ControlStore, ThreeRanksConnectAGlooGroupThroughTheControlChannelAndGather) {
  constexpr int kWorld = 3;
  constexpr size_t kPart = 1000;  // bytes per rank
  StoreServer server;
  std::thread accept([&] { server.serve(kWorld); });
  std::vector<std::unique_ptr<worker::ControlClient>> clients;
  for (int r = 0; r < kWorld; ++r) {
    auto c = worker::ControlClient::ConnectUnix(server.path());
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(std::move(*c));
  }
  accept.join();

  const std::string id = create_gloo_comm_id();
  std::vector<std::vector<uint8_t>> bufs(kWorld, std::vector<uint8_t>(kPart * kWorld, 0));
  std::vector<Status> results(kWorld);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kWorld; ++r) {
    ranks.emplace_back([&, r] {
      GlooCommOptions o;
      o.store = std::make_shared<worker::ControlStore>(clients[r].get(), 30s);
      o.hostname = "127.0.0.1";
      o.timeout = 30s;
      auto comm = connect_gloo_communicator(id, r, kWorld, o);
      if (!comm.ok()) {
        results[r] = comm.status();
        return;
      }
      for (size_t i = 0; i < kPart; ++i) bufs[r][r * kPart + i] = static_cast<uint8_t>(r * 50 + i % 50);
      results[r] = (*comm)->all_gather(bufs[r].data(), kPart, nullptr);
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < kWorld; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r];
    for (int p = 0; p < kWorld; ++p)
      for (size_t i = 0; i < kPart; ++i)
        ASSERT_EQ(bufs[r][p * kPart + i], static_cast<uint8_t>(p * 50 + i % 50)) << "rank " << r << " part " << p;
  }
  clients.clear();  // the server's threads end as the channels close
}

TEST(ControlStore, AKeyThatNeverComesFailsTheWaitNamingIt) {
  StoreServer server;
  std::thread accept([&] { server.serve(1); });
  auto c = worker::ControlClient::ConnectUnix(server.path());
  ASSERT_TRUE(c.ok()) << c.status();
  accept.join();
  worker::ControlStore store(c->get(), 300ms);
  store.set("present", {'x'});
  EXPECT_EQ(store.get("present"), std::vector<char>{'x'});
  try {
    store.wait({"present", "absent"});
    ADD_FAILURE() << "the wait returned";
  } catch (const gloo::IoException& e) {
    EXPECT_THAT(e.what(), HasSubstr("'absent'"));
    EXPECT_THAT(e.what(), HasSubstr("no answer within 300 ms"));
  }
  c->reset();
}

}  // namespace
}  // namespace zi
