#!/usr/bin/env bash
# Real clients, unchanged, against `gemini-pool serve` over scripts/fake-gemini:
# @google/genai, the openai SDK and the Gemini CLI, pinned in package.json
# (installed from npm on first run).  Exits 77 (skipped) without node/npm.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${GKP_BUILD_ROOT:-$HERE/../../../build}
POOL=$BUILD/src/cli/gemini-pool

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP: node and npm are needed to run the SDKs against the front" >&2
    exit 77
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "SKIP: the SDKs need Node.js 20 or later (found $(node --version))" >&2
    exit 77
fi
if [ ! -f "$HERE/node_modules/@google/genai/package.json" ] ||
   [ ! -f "$HERE/node_modules/openai/package.json" ] ||
   [ ! -f "$HERE/node_modules/@google/gemini-cli/package.json" ]; then
    echo "sdk_test: installing the pinned SDKs into $HERE/node_modules" >&2
    if ! (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >&2); then
        echo "sdk_test: npm ci failed; is the npm registry reachable?" >&2
        exit 1
    fi
fi

# shellcheck source=../../lib/emulator.sh
. "$HERE/../../lib/emulator.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/gkp-http-sdk.XXXXXX")
serve_pid=''
cleanup() {
    if [ -n "$serve_pid" ]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    emu_stop
    if [ "${failed:-0}" != 0 ]; then
        echo "--- serve log ---" >&2
        tail -30 "$work/serve.log" >&2 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/emu-keys.json" <<'JSON'
{"projects": {"p1": {}, "p2": {}},
 "keys": [{"key": "FAKE-KEY-SDK-0001", "name": "k1", "project": "p1"},
          {"key": "FAKE-KEY-SDK-0002", "name": "k2", "project": "p2"}]}
JSON
emu_start "$work/emu-keys.json"

TOKEN=sdk-caller-token-$RANDOM$RANDOM$RANDOM
export TOKEN
cat >"$work/keys.json" <<'JSON'
{"providers": {"gemini": {"keys": [{"id": "one", "api_key": "env:SDK_KEY_1"},
                                   {"id": "two", "api_key": "env:SDK_KEY_2"}]}},
 "models": {"gemini-2.5-flash": {"rpm": 1000, "tpm": 10000000, "rpd": 10000}},
 "clients": [{"id": "sdk", "token": "env:TOKEN"}]}
JSON
chmod 600 "$work/keys.json"
SDK_KEY_1=FAKE-KEY-SDK-0001 SDK_KEY_2=FAKE-KEY-SDK-0002 GOOGLE_GEMINI_BASE_URL=$EMU_URL \
    "$POOL" serve --listen 127.0.0.1:0 --config "$work/keys.json" --state "$work/state/state.db" \
    2>"$work/serve.log" &
serve_pid=$!
for _ in $(seq 1 500); do
    grep -q "serving the Gemini API on" "$work/serve.log" && break
    sleep 0.02
done
FRONT_URL=$(sed -n 's/.*serving the Gemini API on \(http:[^ ]*\).*/\1/p' "$work/serve.log")
[ -n "$FRONT_URL" ] || { cat "$work/serve.log" >&2; exit 1; }
export FRONT_URL EMU_URL EMU_TOKEN

failed=0
node "$HERE/genai_test.mjs" || failed=1
if [ -f "$HERE/openai_test.mjs" ]; then
    node "$HERE/openai_test.mjs" || failed=1
fi

# The Gemini CLI, non-interactive, with a throwaway HOME set to API-key auth.
home=$work/home
mkdir -p "$home/.gemini" "$work/project"
cat >"$home/.gemini/settings.json" <<'JSON'
{"security": {"auth": {"selectedType": "gemini-api-key"}},
 "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
 "privacy": {"usageStatisticsEnabled": false},
 "telemetry": {"enabled": false}}
JSON
out=$(cd "$work/project" && HOME=$home GEMINI_API_KEY=$TOKEN GOOGLE_GEMINI_BASE_URL=$FRONT_URL \
      GEMINI_CLI_TRUST_WORKSPACE=true timeout 120 "$HERE/node_modules/.bin/gemini" \
      -m gemini-2.5-flash -p "Hello from the Gemini CLI" 2>"$work/cli.err") || true
if grep -q "You asked: " <<<"$out"; then
    echo "ok   gemini-cli: gemini -p answers through the pool"
else
    echo "FAIL gemini-cli: gemini -p answers through the pool"
    echo "     stdout: ${out:0:400}"
    tail -20 "$work/cli.err" | sed 's/^/     /'
    failed=1
fi
if grep -q "client=sdk .*gemini-2.5-flash:streamGenerateContent.* status=200" "$work/serve.log"; then
    echo "ok   gemini-cli: its requests went through the front as client sdk"
else
    echo "FAIL gemini-cli: its requests went through the front as client sdk"
    failed=1
fi
exit $failed
