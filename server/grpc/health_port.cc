#include "server/grpc/health_port.h"

#include <chrono>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>

namespace zi::server {
namespace {

// Builder plugins are process-wide (the reflection plugin the main port registers would otherwise be added to
// every later builder): this option drops them, so the health port carries only the health service.
class NoPlugins : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override { plugins->clear(); }
};

}  // namespace

StatusOr<std::unique_ptr<HealthPort>> HealthPort::Start(const std::string& listen) {
  // The default health service is created per server when enabled (the main port enables it too; harmless twice).
  grpc::EnableDefaultHealthCheckService(true);
  std::unique_ptr<HealthPort> hp(new HealthPort());
  grpc::ServerBuilder builder;
  builder.SetOption(std::make_unique<NoPlugins>());
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a taken port must fail, not be shared
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &hp->port_);
  hp->cq_ = builder.AddCompletionQueue(/*is_frequently_polled=*/true);
  hp->cq_thread_ = std::thread([cq = hp->cq_.get()] {
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
    }
  });
  hp->server_ = builder.BuildAndStart();
  if (!hp->server_ || hp->port_ == 0)
    return absl::UnavailableError(absl::StrCat("server.health_listen: cannot listen on ", listen));
  if (hp->server_->GetHealthCheckService() == nullptr)
    return absl::InternalError("server.health_listen: gRPC created no health service for this port");
  hp->server_->GetHealthCheckService()->SetServingStatus("", false);  // it starts SERVING; nothing is loaded yet
  return hp;
}

HealthPort::~HealthPort() { stop(1000); }

void HealthPort::set_serving(bool serving, const std::string& service) {
  if (!server_) return;
  grpc::HealthCheckServiceInterface* h = server_->GetHealthCheckService();
  h->SetServingStatus("", serving);
  if (!service.empty()) h->SetServingStatus(service, serving);
}

void HealthPort::shutdown_health() {
  if (server_) server_->GetHealthCheckService()->Shutdown();
}

void HealthPort::stop(int deadline_ms) {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    server_->Wait();
  }
  if (cq_) cq_->Shutdown();  // after the server's: gRPC requires that order
  if (cq_thread_.joinable()) cq_thread_.join();
  server_.reset();
}

}  // namespace zi::server
