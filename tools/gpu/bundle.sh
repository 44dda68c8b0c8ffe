#!/usr/bin/env bash
# Packs executables built here for the GPU machine (no gRPC/protobuf/yaml/ICU there): binaries stripped plus the
# non-system libraries they need, as one xz tarball under .device/ (git-ignored) to name in the device tool's
# `carry`. There: `tar -xJf .device/gpu.tar.xz -C /tmp && export LD_LIBRARY_PATH=/tmp/gpu/lib:/usr/local/cuda/lib64`.
# Usage: tools/gpu/bundle.sh EXECUTABLE...
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .device/gpu .device/gpu.tar.xz
/work/shared/tools/device-bundle.sh .device/gpu "$@" >&2 2>/dev/null || ../shared/tools/device-bundle.sh .device/gpu "$@" >&2
strip --strip-all .device/gpu/bin/* .device/gpu/lib/* 2>/dev/null || true
# -9e: the carried tree (tracked files ~43 MB on disk + this) must stay under 64 MiB
tar -C .device -cf - gpu | xz -9e -T0 > .device/gpu.tar.xz
rm -rf .device/gpu
du -h .device/gpu.tar.xz >&2
