// Transport security of `zeroinfer serve`, through the real binary: TLS with a test CA made at test time
// (make_test_pki.sh, openssl CLI), mutual TLS refusing clients without a certificate of the client CA, the bearer
// token on every RPC but health (and its rotation by SIGHUP), `zeroinfer client`'s --tls-* and --token flags, and
// the refusal of plaintext on a public address without server.allow_insecure.
#include <gtest/gtest.h>

#include <atomic>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "tests/integration/serve_harness.h"
#include "zeroinfer/v1/generate.grpc.pb.h"  // (named here so that CMake links the generated code)

namespace zi::testing {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// A channel of its own (no connection shared with another test's channel).
std::shared_ptr<grpc::Channel> make_channel(const std::string& address,
                                            std::shared_ptr<grpc::ChannelCredentials> creds) {
  static std::atomic<int> n{0};
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("zi.test.channel", n++);
  return grpc::CreateCustomChannel(address, creds, args);
}

// Unary GetModelInfo with optional `authorization` metadata; 20 s is only a hang guard.
grpc::Status model_info(const std::shared_ptr<grpc::Channel>& channel, const std::string& authorization = "",
                        pb::ModelInfo* out = nullptr) {
  auto stub = pb::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  pb::ModelInfo info;
  grpc::Status st = stub->GetModelInfo(&ctx, pb::GetModelInfoRequest(), &info);
  if (out) *out = info;
  return st;
}

grpc::Status tokenize(const std::shared_ptr<grpc::Channel>& channel, const std::string& authorization) {
  auto stub = pb::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 20s);
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  pb::TokenizeRequest req;
  req.set_text("hello");
  pb::TokenizeResponse resp;
  return stub->Tokenize(&ctx, req, &resp);
}

// A 3-token Generate with optional `authorization` metadata: its status and how many tokens came.
std::pair<grpc::Status, size_t> generate_with(const std::shared_ptr<grpc::Channel>& channel,
                                              const std::string& authorization) {
  auto stub = pb::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 60s);
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  pb::GenerateRequest req = ids_request({1, 100, 200}, 3);
  req.mutable_stopping()->set_ignore_eos(true);
  auto reader = stub->Generate(&ctx, req);
  pb::GenerateResponse msg;
  size_t tokens = 0;
  while (reader->Read(&msg)) tokens += static_cast<size_t>(msg.token_ids_size());
  return {reader->Finish(), tokens};
}

class Tls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = (fs::temp_directory_path() / ("zi_tls_pki_" + std::to_string(getpid()))).string();
    auto [st, out] = run("sh " + std::string(ZI_SOURCE_DIR) + "/tests/integration/make_test_pki.sh " + pki_ + " 2>&1");
    pki_error_ = st == 0 ? "" : "make_test_pki.sh failed (the openssl CLI is needed; tools/install_deps.sh installs "
                                "it): " + out;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(pki_, ec);
  }
  void SetUp() override { ASSERT_EQ(pki_error_, ""); }
  void TearDown() override {
    if (HasFailure() && server_) std::fprintf(stderr, "--- server log ---\n%s", server_->log().c_str());
  }

  static std::string pem(const std::string& name) { return pki_ + "/" + name; }

  // TLS credentials trusting `ca` (a file of the PKI), with a client certificate when `client` names one.
  static std::shared_ptr<grpc::ChannelCredentials> tls(const std::string& ca, const std::string& client = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = slurp(pem(ca + ".pem"));
    if (!client.empty()) {
      o.pem_cert_chain = slurp(pem(client + ".pem"));
      o.pem_private_key = slurp(pem(client + ".key"));
    }
    return grpc::SslCredentials(o);
  }

  // Starts a server (on 127.0.0.1) and waits until `channel` sees it SERVING.
  void start(const std::string& yaml, const std::function<std::shared_ptr<grpc::Channel>()>& channel) {
    server_ = std::make_unique<ServerProcess>(yaml);
    ASSERT_TRUE(server_->wait_listening()) << server_->log();
    auto ch = channel();
    ASSERT_TRUE(eventually([&] { return health(ch.get(), "") == 1; }, 60s)) << server_->log();
  }

  void stop() {
    int st = server_->signal_and_wait(SIGTERM);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "wait status " << st;
  }

  std::string client_cmd(const std::string& flags) {
    return std::string(ZI_BINARY) + " client --server " + server_->address() + " --prompt-ids 1,100,200 " +
           "--max-new-tokens 3 --ignore-eos " + flags + " 2>&1";
  }

  // GET https://127.0.0.1:PORT/v1/models on the HTTP API, trusting the test CA, with `client`'s certificate
  // ("" = none) and the bearer token: the HTTP status, or -1 when the TLS handshake fails.
  int https_models(int port, const std::string& client, const std::string& token) {
    namespace asio = boost::asio;
    namespace bhttp = boost::beast::http;
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(pem("ca.pem"));
    if (!client.empty()) {
      ctx.use_certificate_chain_file(pem(client + ".pem"));
      ctx.use_private_key_file(pem(client + ".key"), asio::ssl::context::pem);
    }
    boost::beast::ssl_stream<boost::beast::tcp_stream> stream(io, ctx);
    stream.set_verify_mode(asio::ssl::verify_peer);
    boost::system::error_code ec;
    boost::beast::get_lowest_layer(stream).connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)), ec);
    if (!ec) stream.handshake(asio::ssl::stream_base::client, ec);
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/v1/models", 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.set(bhttp::field::authorization, "Bearer " + token);
    if (!ec) bhttp::write(stream, req, ec);
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    if (!ec) bhttp::read(stream, buffer, res, ec);  // TLS 1.3 reports a refused certificate here
    return ec ? -1 : static_cast<int>(res.result_int());
  }

  static std::string pki_, pki_error_;
  std::unique_ptr<ServerProcess> server_;
};

std::string Tls::pki_, Tls::pki_error_;

TEST_F(Tls, HandshakeWithTheTestCaServesAndPlaintextOrAnUntrustedCaIsRefused) {
  start("server: {tls: {cert_file: " + pem("server.pem") + ", key_file: " + pem("server.key") + "}}\n",
        [&] { return make_channel(server_->address(), tls("ca")); });
  EXPECT_NE(server_->log().find("(TLS)"), std::string::npos);
  auto good = make_channel(server_->address(), tls("ca"));
  pb::ModelInfo info;
  ASSERT_TRUE(model_info(good, "", &info).ok());
  EXPECT_EQ(info.name(), "llama_mha");
  auto [st, tokens] = generate_with(good, "");
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(tokens, 3u);
  // The server's name is checked too: "localhost" is in its certificate, "example.com" is not.
  {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetSslTargetNameOverride("localhost");
    EXPECT_TRUE(model_info(grpc::CreateCustomChannel(server_->address(), tls("ca"), args)).ok());
    grpc::ChannelArguments wrong;
    wrong.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    wrong.SetSslTargetNameOverride("example.com");
    EXPECT_EQ(model_info(grpc::CreateCustomChannel(server_->address(), tls("ca"), wrong)).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  // A plaintext client, or one that trusts another CA, never gets an answer.
  grpc::Status plain = model_info(make_channel(server_->address(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  grpc::Status untrusted = model_info(make_channel(server_->address(), tls("rogue-ca")));
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE) << untrusted.error_message();
  // zeroinfer client: --tls-ca verifies the server; without it the system's CAs do not know the test CA.
  auto [ok_st, ok_out] = run(client_cmd("--tls-ca " + pem("ca.pem")));
  EXPECT_TRUE(WIFEXITED(ok_st) && WEXITSTATUS(ok_st) == 0) << ok_out;
  EXPECT_NE(ok_out.find("3 generated"), std::string::npos) << ok_out;
  auto [sys_st, sys_out] = run(client_cmd("--tls"));
  EXPECT_TRUE(WIFEXITED(sys_st) && WEXITSTATUS(sys_st) == 1) << sys_out;
  stop();
}

TEST_F(Tls, MutualTlsRefusesAClientWithoutACertificateOfItsCa) {
  const std::string token_file = pem("mtls-token");
  std::ofstream(token_file) << "mtls-t0ken\n";
  start("server: {tls: {cert_file: " + pem("server.pem") + ", key_file: " + pem("server.key") +
            ", client_ca_file: " + pem("ca.pem") + ", require_client_cert: true}, auth_token_file: " + token_file +
            "}\n",
        [&] { return make_channel(server_->address(), tls("ca", "client")); });
  EXPECT_NE(server_->log().find("(TLS, client certificate required), bearer token required"), std::string::npos);
  // With the client certificate (and the token) the call goes through.
  auto good = make_channel(server_->address(), tls("ca", "client"));
  EXPECT_TRUE(model_info(good, "Bearer mtls-t0ken").ok());
  EXPECT_EQ(model_info(good).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Without a client certificate, or with one of another CA, the handshake is refused.
  grpc::Status none = model_info(make_channel(server_->address(), tls("ca")), "Bearer mtls-t0ken");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAVAILABLE) << none.error_message();
  EXPECT_EQ(health(make_channel(server_->address(), tls("ca")).get(), ""), -14);  // not even health
  grpc::Status rogue = model_info(make_channel(server_->address(), tls("ca", "rogue-client")), "Bearer mtls-t0ken");
  EXPECT_EQ(rogue.error_code(), grpc::StatusCode::UNAVAILABLE) << rogue.error_message();

  // The HTTP API shares the TLS set-up: HTTPS, the same client-certificate rule, the same token.
  EXPECT_NE(server_->log().find("HTTP API on https://"), std::string::npos);
  EXPECT_EQ(https_models(server_->http_port(), "client", "mtls-t0ken"), 200);
  EXPECT_EQ(https_models(server_->http_port(), "client", "wrong"), 401);
  EXPECT_EQ(https_models(server_->http_port(), "", "mtls-t0ken"), -1);
  EXPECT_EQ(https_models(server_->http_port(), "rogue-client", "mtls-t0ken"), -1);

  // zeroinfer client with --tls-ca, --tls-cert, --tls-key and --token.
  const std::string tls_flags =
      "--tls-ca " + pem("ca.pem") + " --tls-cert " + pem("client.pem") + " --tls-key " + pem("client.key");
  auto [st, out] = run(client_cmd(tls_flags + " --token mtls-t0ken"));
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
  EXPECT_NE(out.find("3 generated"), std::string::npos) << out;
  std::tie(st, out) = run("ZEROINFER_AUTH_TOKEN=mtls-t0ken " + client_cmd(tls_flags));  // the token from the env
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << out;
  std::tie(st, out) = run(client_cmd(tls_flags + " --token wrong"));
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << out;
  EXPECT_NE(out.find("invalid bearer token (gRPC code 16)"), std::string::npos) << out;
  std::tie(st, out) = run(client_cmd("--tls-ca " + pem("ca.pem") + " --token mtls-t0ken"));  // no certificate
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << out;
  EXPECT_NE(out.find("(gRPC code 14)"), std::string::npos) << out;
  std::tie(st, out) = run(client_cmd("--tls-cert " + pem("client.pem")));  // a certificate without its key
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << out;
  EXPECT_NE(out.find("--tls-cert and --tls-key go together"), std::string::npos) << out;
  stop();
}

TEST_F(Tls, TheBearerTokenGuardsEveryRpcButHealthAndSighupRotatesIt) {
  const std::string token_file = pem("token");
  std::ofstream(token_file) << "s3cret-token\n";
  start("server: {auth_token_file: " + token_file + "}\n",
        [&] { return make_channel(server_->address(), grpc::InsecureChannelCredentials()); });
  auto ch = make_channel(server_->address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(health(ch.get(), ""), 1);  // health needs no token
  EXPECT_EQ(health(ch.get(), "zeroinfer.v1.Generation"), 1);

  grpc::Status missing = model_info(ch);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(missing.error_message(), "missing bearer token: send metadata 'authorization: Bearer <token>'");
  EXPECT_EQ(tokenize(ch, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(generate_with(ch, "").first.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  for (const char* wrong : {"Bearer s3cret-tokeN", "Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer ",
                            "Basic s3cret-token", "s3cret-token"}) {
    grpc::Status st = model_info(ch, wrong);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
    EXPECT_EQ(st.error_message(), "invalid bearer token") << wrong;
    EXPECT_EQ(tokenize(ch, wrong).error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
    EXPECT_EQ(generate_with(ch, wrong).first.error_code(), grpc::StatusCode::UNAUTHENTICATED) << wrong;
  }
  EXPECT_TRUE(model_info(ch, "Bearer s3cret-token").ok());
  EXPECT_TRUE(model_info(ch, "bearer s3cret-token").ok());  // the scheme is case-insensitive
  EXPECT_TRUE(tokenize(ch, "Bearer s3cret-token").ok());
  auto [st, tokens] = generate_with(ch, "Bearer s3cret-token");
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(tokens, 3u);

  // SIGHUP reads the token file again: the old token stops working, the new one works.
  std::ofstream(token_file) << "n3w-token";
  kill(server_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return server_->log().find("SIGHUP: reloaded") != std::string::npos; }));
  EXPECT_NE(server_->log().find("SIGHUP: bearer token replaced"), std::string::npos);
  EXPECT_EQ(model_info(ch, "Bearer s3cret-token").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(model_info(ch, "Bearer n3w-token").ok());
  // Tokens never reach the log.
  EXPECT_EQ(server_->log().find("s3cret"), std::string::npos);
  EXPECT_EQ(server_->log().find("n3w-token"), std::string::npos);
  stop();
}

// Runs `serve` with `args`, reads its stderr until `line_re` matches or it exits; then SIGTERM. Returns the log
// and whether the line came.
std::pair<bool, std::string> serve_until(const std::string& args, const std::string& line_re) {
  const std::string cmd = "exec " + std::string(ZI_BINARY) + " serve --http-listen 127.0.0.1:0 " + args + " 2>&1";
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {false, "pipe failed"};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string log;
  bool found = false;
  const std::regex re(line_re);
  char buf[4096];
  ssize_t n;
  while (!found && (n = read(fds[0], buf, sizeof buf)) > 0) {
    log.append(buf, static_cast<size_t>(n));
    found = std::regex_search(log, re);
  }
  kill(pid, SIGTERM);
  while ((n = read(fds[0], buf, sizeof buf)) > 0) log.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {found, log};
}

TEST_F(Tls, PlaintextOnAPublicAddressNeedsAllowInsecure) {
  const std::string dir = pki_ + "/public";
  fs::create_directories(dir);
  const std::string path = dir + "/serve.yaml";
  std::ofstream(path) << "model: {path: " << ZI_TEST_DATA << "/models/llama_mha}\n";
  auto [st, out] = run(std::string(ZI_BINARY) + " serve --config " + path +
                       " --listen 0.0.0.0:0 --metrics-listen 127.0.0.1:0 2>&1");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_EQ(out, "zeroinfer: " + path +
                     ": server.listen: '0.0.0.0:0' is not a loopback address and server.tls is not set: plaintext "
                     "gRPC is served only on loopback; set server.tls.cert_file and server.tls.key_file, or "
                     "server.allow_insecure: true (--allow-insecure) to serve plaintext anyway\n");
  // Allowed explicitly (flag or key), or with TLS, it binds the public address.
  auto [flag_ok, flag_log] =
      serve_until("--config " + path + " --listen 0.0.0.0:0 --metrics-listen 127.0.0.1:0 --allow-insecure",
                  R"(listening on 0\.0\.0\.0:\d+ \(plaintext\))");
  EXPECT_TRUE(flag_ok) << flag_log;
  std::ofstream(path) << "model: {path: " << ZI_TEST_DATA << "/models/llama_mha}\n"
                      << "server: {tls: {cert_file: " << pem("server.pem") << ", key_file: " << pem("server.key")
                      << "}}\n";
  auto [tls_ok, tls_log] = serve_until("--config " + path + " --listen 0.0.0.0:0 --metrics-listen 127.0.0.1:0",
                                       R"(listening on 0\.0\.0\.0:\d+ \(TLS\))");
  EXPECT_TRUE(tls_ok) << tls_log;
}

TEST_F(Tls, UnreadableOrWrongCertificateFilesNameTheirKey) {
  const std::string dir = pki_ + "/broken";
  fs::create_directories(dir);
  const std::string path = dir + "/serve.yaml";
  auto serve = [&](const std::string& server_yaml) {
    std::ofstream(path) << "model: {path: " << ZI_TEST_DATA << "/models/llama_mha}\nserver: " << server_yaml << "\n";
    return run(std::string(ZI_BINARY) + " serve --config " + path + " --listen 127.0.0.1:0 2>&1");
  };
  auto [st, out] = serve("{tls: {cert_file: nothere.pem, key_file: " + pem("server.key") + "}}");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_EQ(out.rfind("zeroinfer: " + path + ": server.tls.cert_file: cannot read '" + dir + "/nothere.pem'", 0), 0u)
      << out;
  std::tie(st, out) = serve("{tls: {cert_file: " + pem("server.key") + ", key_file: " + pem("server.key") + "}}");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_NE(out.find("server.tls.cert_file: '" + pem("server.key") + "' holds no PEM certificate"), std::string::npos)
      << out;
  std::tie(st, out) = serve("{tls: {cert_file: " + pem("server.pem") + ", require_client_cert: true}}");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_NE(out.find("server.tls.key_file: is required with server.tls"), std::string::npos) << out;
  std::ofstream(dir + "/empty-token") << "\n";
  std::tie(st, out) = serve("{auth_token_file: empty-token}");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << st;
  EXPECT_NE(out.find("server.auth_token_file: '" + dir + "/empty-token': the token is empty"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace zi::testing
