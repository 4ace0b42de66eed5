#!/usr/bin/env bash
# Drive scripts/fake-gemini with Google's official SDK (@google/genai, from npm).
# Exits 77 (meson's "skipped") when node or npm is missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP: node and npm are needed to run the @google/genai SDK against the emulator" >&2
    exit 77
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "SKIP: @google/genai needs Node.js 20 or later (found $(node --version))" >&2
    exit 77
fi

if [ ! -f "$HERE/node_modules/@google/genai/package.json" ]; then
    echo "sdk_test: installing @google/genai into $HERE/node_modules" >&2
    if ! (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error >&2); then
        echo "sdk_test: npm install failed; is the npm registry reachable?" >&2
        exit 1
    fi
fi

# shellcheck source=../lib/emulator.sh
. "$HERE/../lib/emulator.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/gkp-sdk-test.XXXXXX")
cleanup() {
    emu_stop
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/keys.json" <<'EOF'
{"projects": {"proj-sdk": {}},
 "keys": [{"key": "FAKE-KEY-SDK-0001", "name": "sdk1", "project": "proj-sdk"}]}
EOF

emu_start "$work/keys.json"
EMU_URL=$EMU_URL EMU_TOKEN=$EMU_TOKEN EMU_KEY=FAKE-KEY-SDK-0001 node "$HERE/sdk_test.mjs"
