// `zeroinfer serve`: the coordinator process from start to exit.
//
// Start: bind the gRPC server (health NOT_SERVING) and /metrics, load the tokenizer, spawn the workers and wait
// for the model, then start the scheduler and report SERVING (and READY=1 to systemd).
// Stop (SIGTERM/SIGINT): health NOT_SERVING, new requests UNAVAILABLE, what is queued or running may finish within
// server.shutdown_grace_seconds (a second signal cuts it short), the rest fails with UNAVAILABLE; then the
// workers exit and the process returns 0.
#pragma once

#include <string>

#include "server/config/config.h"

namespace zi::server {

// Blocks until shutdown; returns the process exit code (0 after a signal-driven stop, 1 when start-up fails).
// `executable` is what the workers run (normally /proc/self/exe). Call from the main thread, before any other
// thread exists: it blocks SIGINT/SIGTERM/SIGHUP for the whole process and waits for them itself.
int run_coordinator(const ServeConfig& config, const std::string& executable);

}  // namespace zi::server
