#!/bin/sh
# `make test`'s manifest check (CTest manifests_check): installs the pinned npm packages of package-lock.json into
# CACHE_DIR (a build folder, git-ignored) unless that lock is already installed there, then validates
# deploy/kubernetes/ and checks that broken copies of it are rejected (validate.js).
# Usage: run.sh CACHE_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=$1
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
  { echo "manifests: node and npm are needed (tools/install_deps.sh installs Debian's nodejs and npm)" >&2; exit 1; }
mkdir -p "$cache"
stamp="$cache/installed-package-lock.json"  # written after a complete install only
if ! cmp -s "$here/package-lock.json" "$stamp" || [ ! -d "$cache/node_modules" ]; then
  rm -rf "$cache/node_modules" "$stamp"
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$stamp"
fi
NODE_PATH="$cache/node_modules" node "$here/validate.js" "$here/../../deploy/kubernetes"
NODE_PATH="$cache/node_modules" node "$here/validate.js" --self-test "$here/../../deploy/kubernetes"
