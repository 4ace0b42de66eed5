# shellcheck shell=bash
# Start, drive and stop scripts/fake-gemini from test scripts.
#
#   . tests/lib/emulator.sh
#   emu_write_keys "$dir/keys.json" 3          # optional: FAKE-KEY-0001..3, one project each
#   emu_start "$dir/keys.json" [extra fake-gemini args...]
#   curl -H "x-goog-api-key: FAKE-KEY-0001" "$EMU_URL/v1beta/models"
#   emu_ctl POST /_emu/faults '{"scope":"global","p503":1}'
#   emu_ctl GET /_emu/log
#   emu_ctl POST faults '{"scope":"key","name":"k2","hold":"slow"}'
#   emu_gate_wait slow 3 || echo "never held"  # until 3 requests wait at gate "slow"
#   emu_gate_open slow
#   emu_stop                                   # also run at exit, see below
#
# emu_start exports EMU_PID, EMU_PORT, EMU_URL (http://127.0.0.1:PORT), EMU_TOKEN (the
# control API's token, which every /_emu/ call must send in the X-Emu-Token header:
# emu_ctl does), EMU_LOG (the request log as JSON lines), EMU_DIR (a private temporary
# directory) and EMU_STDERR.
# If the shell has no EXIT trap yet, emu_start installs `trap emu_stop EXIT`; a script
# with its own EXIT trap should call emu_stop from it. emu_stop is safe to call twice.
# Set EMU_KEEP=1 to keep EMU_DIR (logs) after emu_stop.

EMU_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export EMU_ROOT

# emu_start KEYSFILE [ARGS...] - start the emulator on a free port; returns non-zero
# (with the emulator's stderr shown) if it does not come up within 60 seconds (a hang
# guard: a loaded machine can take seconds to start Python).
emu_start() {
    local keys=${1:?emu_start: a keys file is required}
    shift
    if [ -n "${EMU_PID:-}" ] && kill -0 "$EMU_PID" 2>/dev/null; then
        echo "emu_start: an emulator is already running (pid $EMU_PID)" >&2
        return 1
    fi
    EMU_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fake-gemini.XXXXXX") || return 1
    EMU_LOG=$EMU_DIR/requests.jsonl
    EMU_STDERR=$EMU_DIR/stderr
    "$EMU_ROOT/scripts/fake-gemini" --port 0 --keys "$keys" --port-file "$EMU_DIR/port" \
        --log "$EMU_LOG" --quiet "$@" >"$EMU_DIR/stdout" 2>"$EMU_STDERR" &
    EMU_PID=$!
    export EMU_PID EMU_DIR EMU_LOG EMU_STDERR
    if [ -z "$(trap -p EXIT)" ]; then
        trap emu_stop EXIT
    fi
    local i
    for i in $(seq 1 6000); do
        if [ -s "$EMU_DIR/port" ]; then
            EMU_PORT=$(cat "$EMU_DIR/port")
            EMU_URL=http://127.0.0.1:$EMU_PORT
            EMU_TOKEN=$(cat "$EMU_DIR/port.token")
            export EMU_PORT EMU_URL EMU_TOKEN
            return 0
        fi
        if ! kill -0 "$EMU_PID" 2>/dev/null; then
            echo "emu_start: fake-gemini exited:" >&2
            cat "$EMU_STDERR" >&2
            unset EMU_PID
            return 1
        fi
        sleep 0.01
    done
    echo "emu_start: fake-gemini did not start within 60 s" >&2
    emu_stop
    return 1
}

# emu_ctl METHOD PATH [JSON] - call the control API (PATH like /_emu/usage or usage);
# prints the JSON answer; returns non-zero on an HTTP error status.
emu_ctl() {
    local method=${1:?emu_ctl: METHOD PATH [JSON]} path=${2:?emu_ctl: METHOD PATH [JSON]}
    local body=${3:-}
    case $path in
        /_emu/*) ;;
        /*) path=/_emu$path ;;
        *) path=/_emu/$path ;;
    esac
    if [ -z "${EMU_URL:-}" ]; then
        echo "emu_ctl: no emulator (call emu_start first)" >&2
        return 1
    fi
    if [ "$method" = POST ] && [ -z "$body" ]; then
        body='{}'
    fi
    if command -v curl >/dev/null 2>&1; then
        local out status text
        out=$(curl -sS -X "$method" -H 'Content-Type: application/json' \
            -H "X-Emu-Token: $EMU_TOKEN" \
            ${body:+--data-binary "$body"} -w '\n%{http_code}' "$EMU_URL$path") || return 1
        status=${out##*$'\n'}
        text=${out%$'\n'*}
        printf '%s\n' "${text%$'\n'}"
        [ "$status" -lt 400 ]
    else
        python3 - "$method" "$EMU_URL$path" "$body" "$EMU_TOKEN" <<'PY'
import sys, urllib.request, urllib.error
method, url, body, token = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json",
                                      "X-Emu-Token": token})
try:
    with urllib.request.urlopen(req, timeout=30) as resp:
        sys.stdout.write(resp.read().decode())
except urllib.error.HTTPError as err:
    sys.stdout.write(err.read().decode())
    sys.exit(1)
PY
    fi
}

# emu_gate_wait NAME COUNT [LIMIT_S] - wait until COUNT requests wait at the emulator's
# gate NAME (fault fields hold / hold_stream); prints how many do; non-zero if fewer
# after LIMIT_S seconds (a hang guard, 120 by default).
emu_gate_wait() {
    local name=${1:?emu_gate_wait: NAME COUNT [LIMIT_S]} count=${2:?emu_gate_wait: NAME COUNT}
    PYTHONPATH=$EMU_ROOT/scripts python3 - "$EMU_URL" "$EMU_TOKEN" "$name" "$count" \
        "${3:-120}" <<'PY'
import sys
from fake_gemini import ctlclient
url, token, name, count, limit = sys.argv[1:6]
waiting = ctlclient.wait_gate(url, token, name, int(count), float(limit))
print(waiting)
sys.exit(0 if waiting >= int(count) else 1)
PY
}

# emu_gate_open NAME / emu_gate_close NAME - let the requests held at gate NAME (and
# later ones) go on / hold later ones again.
emu_gate_open() {
    emu_ctl POST gates "{\"name\":\"${1:?emu_gate_open: NAME}\",\"open\":true}" >/dev/null
}
emu_gate_close() {
    emu_ctl POST gates "{\"name\":\"${1:?emu_gate_close: NAME}\",\"open\":false}" >/dev/null
}

# emu_stop - stop the emulator (SIGTERM, then SIGKILL after 5 s) and clean up.
emu_stop() {
    if [ -n "${EMU_PID:-}" ]; then
        if kill -0 "$EMU_PID" 2>/dev/null; then
            kill -TERM "$EMU_PID" 2>/dev/null || true
            local i
            for i in $(seq 1 500); do
                kill -0 "$EMU_PID" 2>/dev/null || break
                sleep 0.01
            done
            kill -KILL "$EMU_PID" 2>/dev/null || true
        fi
        wait "$EMU_PID" 2>/dev/null || true
    fi
    if [ -n "${EMU_DIR:-}" ] && [ -z "${EMU_KEEP:-}" ]; then
        rm -rf "$EMU_DIR"
    fi
    unset EMU_PID EMU_PORT EMU_URL EMU_DIR EMU_TOKEN
    return 0
}

# emu_write_keys FILE [N] - write a keys file with N (default 2) keys FAKE-KEY-0001...,
# named k1..kN, each in its own project p1..pN with the built-in model table.
emu_write_keys() {
    local file=${1:?emu_write_keys: FILE [N]} n=${2:-2} i sep=''
    {
        printf '{"keys": ['
        for i in $(seq 1 "$n"); do
            printf '%s\n  {"key": "FAKE-KEY-%04d", "name": "k%d", "project": "p%d"}' \
                "$sep" "$i" "$i" "$i"
            sep=,
        done
        printf '\n]}\n'
    } >"$file"
}
