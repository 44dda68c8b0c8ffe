// The gRPC port's security pieces without a server: the token compare, the `authorization` check, where the token
// comes from, and the errors of unreadable or wrong certificate files (server/grpc/security.h). The handshakes
// themselves are tested through the binary in tests/integration/tls_test.cc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "server/grpc/security.h"

namespace zi::server {
namespace {

namespace fs = std::filesystem;

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

TEST(Security, TokenEqualsComparesWholeTokens) {
  EXPECT_TRUE(token_equals("abc", "abc"));
  EXPECT_FALSE(token_equals("abd", "abc"));
  EXPECT_FALSE(token_equals("ab", "abc"));
  EXPECT_FALSE(token_equals("abcd", "abc"));
  EXPECT_FALSE(token_equals("", "abc"));
  EXPECT_FALSE(token_equals(std::string("abc\0", 4), "abc"));
  EXPECT_TRUE(token_equals("", ""));
}

TEST(Security, BearerMetadataIsCheckedOnlyWhenATokenIsSet) {
  const std::string token = "t0ken";
  Metadata none;
  EXPECT_TRUE(check_bearer(none, nullptr).ok());
  grpc::Status missing = check_bearer(none, &token);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(missing.error_message(), "missing bearer token: send metadata 'authorization: Bearer <token>'");
  auto with = [&](const std::string& value) {
    Metadata md;
    md.emplace("authorization", value);
    return check_bearer(md, &token);
  };
  EXPECT_TRUE(with("Bearer t0ken").ok());
  EXPECT_TRUE(with("bearer t0ken").ok());
  EXPECT_TRUE(with("BEARER  t0ken").ok());
  for (const char* bad : {"Bearer t0ke", "Bearer t0ken ", "Bearer T0KEN", "Basic t0ken", "t0ken", "Bearer", ""}) {
    grpc::Status st = with(bad);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << bad;
    EXPECT_EQ(st.error_message(), "invalid bearer token") << bad;  // never echoes what came
  }
  Metadata other;
  other.emplace("x-api-key", "t0ken");
  EXPECT_EQ(check_bearer(other, &token).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

class SecurityFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("zi_security_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    config_.source = "c.yaml";
    unsetenv(kAuthTokenEnv);
  }
  void TearDown() override {
    unsetenv(kAuthTokenEnv);
    fs::remove_all(dir_);
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
  ServeConfig config_;
};

TEST_F(SecurityFiles, TheTokenComesFromTheFileElseTheEnvironment) {
  auto none = load_auth_token(config_);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  setenv(kAuthTokenEnv, "from-env", 1);
  auto env = load_auth_token(config_);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->value_or(""), "from-env");
  config_.auth_token_file = write("token", "  from-file\n");
  auto file = load_auth_token(config_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->value_or(""), "from-file");  // the file wins; whitespace and the newline are dropped

  config_.auth_token_file = write("empty", "\n\n");
  EXPECT_EQ(load_auth_token(config_).status().message(),
            "c.yaml: server.auth_token_file: '" + config_.auth_token_file + "': the token is empty");
  config_.auth_token_file = write("spaced", "two words\n");
  EXPECT_EQ(load_auth_token(config_).status().message(),
            "c.yaml: server.auth_token_file: '" + config_.auth_token_file +
                "': the token must be printable ASCII without spaces (it is sent as gRPC metadata)");
  config_.auth_token_file = (dir_ / "absent").string();
  EXPECT_EQ(load_auth_token(config_).status().message(),
            "c.yaml: server.auth_token_file: cannot read '" + config_.auth_token_file +
                "': No such file or directory");
  config_.auth_token_file.clear();
  setenv(kAuthTokenEnv, "bad\x01", 1);
  EXPECT_FALSE(load_auth_token(config_).ok());
}

TEST_F(SecurityFiles, CertificateFilesAreCheckedAndNamedByTheirKey) {
  EXPECT_TRUE(make_server_credentials(config_).ok());  // no TLS: plaintext credentials
  config_.tls.cert_file = (dir_ / "missing.pem").string();
  config_.tls.key_file = write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  EXPECT_EQ(make_server_credentials(config_).status().message(),
            "c.yaml: server.tls.cert_file: cannot read '" + config_.tls.cert_file + "': No such file or directory");
  config_.tls.cert_file = write("cert.pem", "not a certificate\n");
  EXPECT_EQ(make_server_credentials(config_).status().message(),
            "c.yaml: server.tls.cert_file: '" + config_.tls.cert_file +
                "' holds no PEM certificate (no '-----BEGIN ...CERTIFICATE-----' line)");
  config_.tls.cert_file = write("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  config_.tls.key_file = config_.tls.cert_file;
  EXPECT_EQ(make_server_credentials(config_).status().message(),
            "c.yaml: server.tls.key_file: '" + config_.tls.key_file +
                "' holds no PEM private key (no '-----BEGIN ...PRIVATE KEY-----' line)");
  config_.tls.key_file = (dir_ / "key.pem").string();
  config_.tls.client_ca_file = (dir_ / "ca.pem").string();
  EXPECT_EQ(make_server_credentials(config_).status().message(),
            "c.yaml: server.tls.client_ca_file: cannot read '" + config_.tls.client_ca_file +
                "': No such file or directory");
}

}  // namespace
}  // namespace zi::server
