#!/usr/bin/env bash
# Runs a test program with the emulator started on a free port:
#   with_emulator.sh PROGRAM [ARGS...]
# The program gets GOOGLE_GEMINI_BASE_URL, EMU_URL, EMU_TOKEN (the control
# API's token) and TEST_KEY_1..8 (the emulator's keys, one project each).
set -euo pipefail
. "${GKP_SOURCE_ROOT:?}/tests/lib/emulator.sh"
dir=$(mktemp -d)
trap 'emu_stop; rm -rf "$dir"' EXIT
python3 - "$dir/emu-keys.json" <<'PY'
import json, sys
big = {"rpm": 100000, "tpm": 100000000, "rpd": 10000000}
json.dump({"projects": {f"p{i}": {"models": {"gemini-2.5-flash": big,
                                               "gemini-3.1-flash-lite-preview": big,
                                               "gemma-3-27b-it": {}}} for i in range(1, 9)},
           "keys": [{"key": f"FAKE-RUNNER-KEY-{i}", "name": f"k{i}", "project": f"p{i}"}
                    for i in range(1, 9)]}, open(sys.argv[1], "w"))
PY
emu_start "$dir/emu-keys.json"
export GOOGLE_GEMINI_BASE_URL=$EMU_URL EMU_URL EMU_TOKEN TEST_STATE_DIR=$dir
for i in 1 2 3 4 5 6 7 8; do export "TEST_KEY_$i=FAKE-RUNNER-KEY-$i"; done
"$@"
