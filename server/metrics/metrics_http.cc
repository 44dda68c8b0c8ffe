#include "server/metrics/metrics_http.h"

#include <prometheus/text_serializer.h>

namespace zi::server {

namespace bhttp = boost::beast::http;

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& host_port,
                                                                      std::shared_ptr<prometheus::Registry> registry) {
  http::HttpServerOptions options;
  options.listen = host_port;
  options.max_body_bytes = 16 << 10;  // scrapes carry no body
  options.max_body_key = "/metrics requests";
  options.keep_alive = false;  // one scrape per connection, as before
  auto handler = [registry](http::Request req, std::shared_ptr<http::Reply> reply) {
    std::string_view target(req.target().data(), req.target().size());
    target = target.substr(0, target.find('?'));
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head)
      return reply->send(405, "text/plain", "only GET /metrics\n", {{"Allow", "GET, HEAD"}});
    if (target != "/metrics") return reply->send(404, "text/plain", "only /metrics is served here\n");
    reply->send(200, "text/plain; version=0.0.4; charset=utf-8",
                prometheus::TextSerializer().Serialize(registry->Collect()));
  };
  ZI_ASSIGN_OR_RETURN(std::unique_ptr<http::HttpServer> server, http::HttpServer::Start(options, handler));
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(server)));
}

}  // namespace zi::server
