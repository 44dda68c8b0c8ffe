#!/usr/bin/env bash
# The one build recipe: used by `make build`, by CI (.ci/run → make test) and by docker/Dockerfile's build stage.
# Usage: docker/build.sh [BUILD_DIR] [extra cmake args...]   (env JOBS: parallel jobs, default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}; shift || true
export PATH=/usr/local/cuda/bin:$PATH
tools/install_deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}"
