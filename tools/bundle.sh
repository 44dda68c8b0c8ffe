#!/usr/bin/env bash
# Portable bundle: the binary plus the non-system shared libraries it needs (gRPC, protobuf, absl, yaml-cpp,
# prometheus-cpp, ...), run through a wrapper that puts them first on the library path. CUDA, NCCL and the C/C++
# runtime come from the target machine.
# Usage: tools/bundle.sh BINARY OUT_DIR
set -euo pipefail
exe=$1; out=$2
mkdir -p "$out/bin" "$out/lib"
cp -L "$exe" "$out/bin/zeroinfer"
ldd "$exe" | awk '/=>/ {print $3}' | while read -r lib; do
  case "$lib" in
    */cuda*|*libcuda.so*|*libnccl*|*libcublas*|*libcudart*|*/libc.so*|*/libm.so*|*/libpthread*|*/libdl.so*|\
    */librt.so*|*/ld-linux*|*/libgcc_s*|*/libstdc++*) ;;
    *) cp -Lu "$lib" "$out/lib/" ;;
  esac
done
cat > "$out/zeroinfer" <<'WRAP'
#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/bin/zeroinfer" "$@"
WRAP
chmod +x "$out/zeroinfer"
echo "bundle: $out ($(du -sh "$out" | cut -f1))" >&2
