// Gloo between CPU worker processes on different hosts: its TCP transport, a full mesh of connections made
// through a rendezvous store, and its ring all-gather (in place: this rank's partition already sits in the output).
// Gloo reports failures (a peer gone, a timeout) by throwing; every call is wrapped so callers get a Status.
#include <unistd.h>

#include <cstdlib>
#include <random>

#include <gloo/allgather.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include "engine/comm/communicator.h"

namespace zi {
namespace {

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(std::shared_ptr<gloo::Context> context, std::chrono::milliseconds timeout)
      : context_(std::move(context)), timeout_(timeout) {}
  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  std::string kind() const override { return "gloo"; }

  Status all_gather(void* buf, size_t partition_bytes, void*) override {
    if (broken_) return absl::UnavailableError(absl::StrCat("gloo communicator rank ", rank(),
                                                            ": the group failed earlier"));
    try {
      gloo::AllgatherOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(buf), partition_bytes * static_cast<size_t>(size()));
      opts.setTimeout(timeout_);
      gloo::allgather(opts);
    } catch (const std::exception& e) {
      // A peer that exited or a link that broke: the group cannot step again.
      broken_ = true;
      return absl::UnavailableError(absl::StrCat("gloo communicator rank ", rank(), ": all-gather failed: ", e.what()));
    }
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<gloo::Context> context_;
  std::chrono::milliseconds timeout_;
  bool broken_ = false;
};

}  // namespace

std::string create_gloo_comm_id() {
  std::random_device rd;
  return absl::StrCat("gloo:zeroinfer-", getpid(), "-", absl::Hex(rd(), absl::kZeroPad8));
}

StatusOr<std::unique_ptr<Communicator>> connect_gloo_communicator(const std::string& id, int rank, int world,
                                                                  const GlooCommOptions& options) {
  if (id.rfind("gloo:", 0) != 0 || id.size() == 5)
    return absl::InvalidArgumentError(absl::StrCat("communicator id '", id, "' is not a Gloo id"));
  if (rank < 0 || rank >= world)
    return absl::InvalidArgumentError(absl::StrCat("communicator: rank ", rank, " outside 0..", world - 1));
  if (!options.store) return absl::FailedPreconditionError("gloo communicator: no rendezvous store");
  gloo::transport::tcp::attr attr;
  const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
  if (iface && *iface) {
    attr.iface = iface;
  } else if (!options.hostname.empty()) {
    attr.hostname = options.hostname;
  } else {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    attr.hostname = host;
  }
  const std::string where = !attr.iface.empty() ? absl::StrCat("interface ", attr.iface, " (GLOO_SOCKET_IFNAME)")
                                                 : attr.hostname;
  try {
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, world);
    context->setTimeout(options.timeout);
    gloo::rendezvous::PrefixStore store(id.substr(5), *options.store);
    context->connectFullMesh(store, device);
    return std::unique_ptr<Communicator>(new GlooCommunicator(std::move(context), options.timeout));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("gloo communicator rank ", rank, " of ", world, " on ", where,
                                               ": cannot connect the group: ", e.what()));
  }
}

}  // namespace zi
