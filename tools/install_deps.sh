#!/usr/bin/env bash
# Installs the Debian packages zeroinfer builds against, only when one is missing (so `make` stays fast).
# Needs root (or sudo) the first time; prints what it installs.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
      prometheus-cpp-dev libyaml-cpp-dev libboost-dev libgtest-dev libgmock-dev libbenchmark-dev
      liburing-dev libsystemd-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev libssl-dev
      openssl)  # openssl: the CLI makes the TLS tests' throw-away CA and certificates
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# --test (make test): also node and npm, for the OpenAI Node SDK test (tests/openai_sdk/); builds (and the Docker
# image) do not need them. A node from elsewhere (nodesource bundles npm, and conflicts with Debian's npm package)
# is kept as it is.
if [ "${1:-}" = "--test" ] && { ! command -v node >/dev/null || ! command -v npm >/dev/null; }; then
  missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install_deps: installing ${missing[*]}" >&2
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
