#!/usr/bin/env bash
# `make test`'s run of the official OpenAI Node SDK (sdk_test.mjs) against a started `zeroinfer serve`.
# Usage: run.sh ZEROINFER_BINARY WORK_DIR. Installs the pinned SDK (package-lock.json) with `npm ci` into WORK_DIR,
# makes the chat fixture model there (the demo model's files, and its tokenizer_config.json with Zephyr's chat
# template from tests/data/chat_templates), serves it on free ports and runs the SDK's checks.
# Exit 77 (CTest: skipped) when node/npm or the registry are missing, except under CI=true, where that fails.
set -euo pipefail
BIN=$(realpath "$1")
WORK=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$WORK"
WORK=$(realpath "$WORK")

unavailable() {
  echo "openai_sdk_test: $1" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}
command -v node >/dev/null && command -v npm >/dev/null ||
  unavailable "node and npm are not installed (tools/install_deps.sh installs them)"
cp "$HERE/package.json" "$HERE/package-lock.json" "$HERE/sdk_test.mjs" "$WORK/"
(cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1) ||
  { cat "$WORK/npm.log" >&2; unavailable "npm ci failed (is the npm registry reachable?)"; }

# The chat fixture model.
MODEL="$WORK/kjv-chat"
rm -rf "$MODEL" && mkdir -p "$MODEL"
for f in config.json generation_config.json model.safetensors tokenizer.json; do
  ln -s "$ROOT/tools/demo_model/kjv-llama/$f" "$MODEL/$f"
done
node -e '
  const fs = require("fs");
  const [src, tmpl, dst] = process.argv.slice(1);
  const config = JSON.parse(fs.readFileSync(src, "utf8"));
  config.chat_template = fs.readFileSync(tmpl, "utf8");
  fs.writeFileSync(dst, JSON.stringify(config, null, 2));
' "$ROOT/tools/demo_model/kjv-llama/tokenizer_config.json" "$ROOT/tests/data/chat_templates/zephyr-7b-beta.jinja" \
  "$MODEL/tokenizer_config.json"

STEP_MS=20
cat >"$WORK/serve.yaml" <<YAML
model: {path: kjv-chat}
server: {max_batch_size: 1, max_queue: 1}
debug: {step_delay_ms: $STEP_MS}
YAML
TOKEN="sdk-test-token-$$"
LOG="$WORK/serve.log"
ZEROINFER_AUTH_TOKEN=$TOKEN "$BIN" serve --config "$WORK/serve.yaml" --listen 127.0.0.1:0 \
  --metrics-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
port_of() { sed -nE "s|.*$1[^0-9]*127\.0\.0\.1:([0-9]+).*|\1|p" "$LOG" | head -1; }
for _ in $(seq 600); do
  grep -q "serving " "$LOG" && break
  kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; echo "openai_sdk_test: serve exited" >&2; exit 1; }
  sleep 0.1
done
grep -q "serving " "$LOG" || { cat "$LOG" >&2; echo "openai_sdk_test: serve did not start" >&2; exit 1; }
export ZI_BINARY=$BIN ZI_TOKEN=$TOKEN ZI_STEP_MS=$STEP_MS
ZI_GRPC="127.0.0.1:$(port_of 'listening on')"
ZI_HTTP="127.0.0.1:$(port_of 'HTTP API on http://')"
ZI_METRICS="127.0.0.1:$(port_of 'metrics on http://')"
export ZI_GRPC ZI_HTTP ZI_METRICS
(cd "$WORK" && node sdk_test.mjs) || { cat "$LOG" >&2; exit 1; }
