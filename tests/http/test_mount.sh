#!/usr/bin/env bash
# `gemini-pool mount --listen`: one daemon serves the filesystem and the HTTP
# front over one pool and one runner.
. "$(dirname "$0")/../fs/fs_lib.sh"
fs_setup --keys 1 --big --inflight 4
# A caller, so that its usage shows in status/metrics.
export MNT_TOKEN=mount-caller-token-$RANDOM$RANDOM$RANDOM
python3 - "$FS_KEYS_JSON" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["clients"] = [{"id": "tester", "token": "env:MNT_TOKEN", "rpm": 50}]
json.dump(doc, open(sys.argv[1], "w"))
PY
fs_mount --listen 127.0.0.1:0
URL=$(sed -n 's/.*serving the Gemini API on \(http:[^ ]*\).*/\1/p' "$FS_LOG" | head -1)
check "the mount says where the HTTP front listens" test -n "$URL"

out=$(curl -s -D "$FS_TMP/headers" -H "x-goog-api-key: $MNT_TOKEN" -d '{"contents":[{"role":"user","parts":[{"text":"over http"}]}]}' \
      "$URL/v1beta/models/gemini-2.5-flash:generateContent")
check "a Gemini request through the mount's front" grep -q "You asked: over http" <<<"$out"
check "served by the mount's pool (x-pool-key key1)" grep -qi "^x-pool-key: key1" "$FS_TMP/headers"

echo "over the filesystem" >"$MNT/flash-2.5/q"
check "the filesystem still answers" bash -c "timeout 20 cat '$MNT/flash-2.5/q.out' | grep -q 'You asked: over the filesystem'"

# One pool: both requests are counted on the same key.
total=$("$GEMINI_POOL" status --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(m.get("requests_total", 0) for k in d["keys"] for m in k["models"].values()))')
check "one pool counted both requests (requests_total $total)" test "$total" = 2
grep -q "http: client=tester POST /v1beta/models/gemini-2.5-flash:generateContent" "$FS_LOG" &&
    pass "the front's request line is in the daemon's log" ||
    fail "the front's request line is in the daemon's log"
check "status/metrics shows the caller's requests" \
    grep -q '^gemini_pool_http_client_requests_total{client="tester"} 1$' "$MNT/status/metrics"
check "and its per-minute use" \
    grep -q '^gemini_pool_http_client_requests_last_minute{client="tester"} 1$' "$MNT/status/metrics"
fs_done
