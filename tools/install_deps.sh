#!/usr/bin/env bash
# Installs the Debian packages zeroinfer builds against, only when one is missing (so `make` stays fast).
# Needs root (or sudo) the first time; prints what it installs.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
      prometheus-cpp-dev libyaml-cpp-dev libboost-dev libgtest-dev libgmock-dev libbenchmark-dev
      liburing-dev libsystemd-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev
      libgloo-dev libssl-dev  # gloo: CPU ranks on different hosts; ssl: HTTPS and the workers' TLS control channel
      openssl)  # openssl: the CLI makes the TLS tests' throw-away CA and certificates
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# --test (make test) also installs what only tests need: nginx (tests/integration/replica_failover_test.cc runs
# deploy/nginx/zeroinfer.conf in the foreground under a temporary prefix) and Node.js with npm (tests/manifests/
# validates deploy/kubernetes/ with npm's kubernetes-models; tests/openai_sdk/ runs the OpenAI Node SDK). Builds
# and the Docker image need neither. A node from elsewhere (NodeSource bundles npm, and conflicts with Debian's npm
# package) is kept as it is.
services=()
if [ "${1:-}" = "--test" ]; then
  dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q "install ok installed" || services+=(nginx)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
fi
[ ${#missing[@]} -eq 0 ] && [ ${#services[@]} -eq 0 ] && exit 0
echo "install_deps: installing ${missing[*]} ${services[*]}" >&2
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
[ ${#missing[@]} -eq 0 ] || $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
if [ ${#services[@]} -gt 0 ]; then
  # The tests need only nginx's binary: its Debian package would also start (and enable) a server on port 80.
  # policy-rc.d (Debian's switch for package scripts) denies that start, for this install only.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null && $sudo chmod 755 $policy
    trap '$sudo rm -f $policy' EXIT
  fi
  $sudo apt-get install -y -q --no-install-recommends "${services[@]}" >&2
  # ... and not at boot either (the package enables its unit whatever policy-rc.d says).
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable "${services[@]}" >/dev/null 2>&1 || true; fi
fi
