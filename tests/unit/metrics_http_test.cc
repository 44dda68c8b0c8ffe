// The /metrics HTTP endpoint: Prometheus text for GET (and headers only for HEAD), 404 elsewhere, 405 for other
// methods, a free port for port 0, a clear error for a taken port.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <prometheus/counter.h>

#include "server/metrics/metrics_http.h"

namespace zi::server {
namespace {

std::string request(uint16_t port, const std::string& text) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "(connect failed)";
  }
  EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

TEST(MetricsHttp, ServesTheRegistryOnGetMetrics) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& counter = prometheus::BuildCounter().Name("zi_test_total").Help("test").Register(*registry).Add({});
  counter.Increment(3);
  auto server = MetricsHttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = (*server)->port();
  ASSERT_GT(port, 0);

  std::string r = request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(r.find("\nzi_test_total 3\n"), std::string::npos) << r;
  const size_t body = r.find("\r\n\r\n") + 4;
  EXPECT_NE(r.find("Content-Length: " + std::to_string(r.size() - body) + "\r\n"), std::string::npos);

  counter.Increment();
  EXPECT_NE(request(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").find("\nzi_test_total 4\n"), std::string::npos);
  std::string head = request(port, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "");
  EXPECT_EQ(request(port, "GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(request(port, "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(request(port, "nonsense\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
}

TEST(MetricsHttp, ATakenPortIsAnErrorNamingTheAddress) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = MetricsHttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok());
  const std::string addr = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsHttpServer::Start(addr, registry);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("cannot listen on " + addr), std::string::npos) << second.status();
  EXPECT_FALSE(MetricsHttpServer::Start("127.0.0.1", registry).ok());
}

}  // namespace
}  // namespace zi::server
