// `zeroinfer serve`: the coordinator process from start to exit.
//
// Start: bind the gRPC server (health NOT_SERVING) and /metrics, load the tokenizer, spawn the workers and wait
// for the model, then start the scheduler and report SERVING (and READY=1 to systemd).
// Stop (SIGTERM/SIGINT): health NOT_SERVING, new requests UNAVAILABLE, what is queued or running may finish within
// server.shutdown_grace_seconds (a second signal cuts it short), the rest ends with CANCELLED and a message naming
// the grace period; then the workers exit and the process returns 0.
// Reload (SIGHUP): the config is read again through `reload`; logging.level, server.max_queue (up to its start-up
// value), server.max_new_tokens_default, server.max_prompt_tokens, server.shutdown_grace_seconds and the bearer
// token take effect at once; every other changed key is logged as taking a restart.
// Security: plaintext only on loopback unless server.allow_insecure; TLS / mTLS from server.tls; a bearer token
// from server.auth_token_file or $ZEROINFER_AUTH_TOKEN (server/grpc/security.h). The one plaintext port allowed
// anywhere is server.health_listen, which serves grpc.health.v1 alone (server/grpc/health_port.h).
#pragma once

#include <functional>
#include <string>

#include "server/config/config.h"

namespace zi::server {

// Loads the deployment again for SIGHUP (the file, then the command line's overrides).
using ConfigReloader = std::function<StatusOr<ServeConfig>()>;

// Blocks until shutdown; returns the process exit code (0 after a signal-driven stop, 1 when start-up fails).
// `executable` is what the workers run (normally /proc/self/exe). Call from the main thread, before any other
// thread exists: it blocks SIGINT/SIGTERM/SIGHUP for the whole process and waits for them itself.
// Without `reload`, SIGHUP only logs that there is nothing to reload.
int run_coordinator(const ServeConfig& config, const std::string& executable, ConfigReloader reload = nullptr);

}  // namespace zi::server
