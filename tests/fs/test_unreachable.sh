#!/usr/bin/env bash
# Nothing sent, nothing counted: with the emulator stopped, jobs on the mount
# wait and then fail with an .err naming the endpoint, no request is counted and
# no key cools or is disabled; when the emulator comes back while jobs wait,
# they finish.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 3 --big --inflight 2
W=$FS_TMP/work
mkdir -p "$W"
# A profile that waits at most 2 s, for the jobs that are to fail.
python3 - "$FS_KEYS_JSON" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["profiles"] = {"quick": {"model": "gemini-3-flash-preview", "max_wait": 2}}
json.dump(doc, open(sys.argv[1], "w"))
PY
PORT=$EMU_PORT
URL=$EMU_URL
emu_stop
fs_mount

# 20 jobs while nothing answers: each fails, saying why.
for i in $(seq 1 20); do echo "offline $i" >"$MNT/quick/q$i"; done
for i in $(seq 1 20); do timeout 30 cat "$MNT/quick/q$i.out" >/dev/null 2>&1; done
check "20 jobs: every one failed with an .err" \
    bash -c "for i in \$(seq 1 20); do test -e '$MNT/quick/q'\$i.err || exit 1; done"
say ".err: $(cat "$MNT/quick/q1.err")"
check "20 jobs: each .err names the endpoint and the reason" \
    bash -c "for i in \$(seq 1 20); do grep -qF 'could not connect to $URL: connection refused' '$MNT/quick/q'\$i.err || exit 1; done"
check "20 jobs: no key in any .err" bash -c "! grep -rq FAKE-KEY '$MNT/quick/'"
cp "$MNT/status/pool.json" "$W/down.json"
check "status/pool.json: requests_today 0 everywhere, no key cooling or disabled" python3 - "$W/down.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
bad = [(k["id"], m) for k in doc["keys"] for m, e in k["models"].items()
       if e["requests_today"] or e["cooldown_until"] or e["cooldown_kind"]]
bad += [k["id"] for k in doc["keys"] if k["state"] in ("cooling", "disabled")
        or k["requests_total"]]
sys.exit(1 if bad else 0)
PY
check "status/pool.json: the endpoint is unreachable, since when" python3 - "$W/down.json" "$URL" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["endpoint"]
sys.exit(0 if e["unreachable"] and e["url"] == sys.argv[2] and e["since"]
         and e["error"] == "connection refused" else 1)
PY
check "status/pool: says the endpoint is unreachable" \
    grep -q "endpoint $URL unreachable since" "$MNT/status/pool"
check "a job's attempts are recorded as unreachable" \
    grep -q '"unreachable"' "$MNT/quick/q1.json"

# 20 jobs wait (max_wait 120 s); the emulator comes back on the same port.
for i in $(seq 1 20); do echo "comeback $i" >"$MNT/flash/w$i"; done
sleep 2
check "while down: the jobs wait" grep -q '"status":[[:space:]]*"queued"' "$MNT/flash/w1.json"
emu_start "$FS_EMU_KEYS" --port "$PORT" || { fail "the emulator restarts on port $PORT"; fs_done; }
for i in $(seq 1 20); do timeout 60 cat "$MNT/flash/w$i.out" >"$W/w$i.out" 2>/dev/null; done
check "the emulator came back: all 20 waiting jobs finish with their answers" \
    bash -c "for i in \$(seq 1 20); do grep -q sha= '$W/w'\$i.out || exit 1; done"
check "after: the endpoint is reachable and exactly 20 requests are counted" python3 - "$MNT/status/pool.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
today = sum(e["requests_today"] for k in doc["keys"] for e in k["models"].values())
sys.exit(0 if today == 20 and not doc["endpoint"]["unreachable"] else 1)
PY
fs_check_log
fs_done
