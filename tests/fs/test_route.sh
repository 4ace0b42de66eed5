#!/usr/bin/env bash
# Routing in the mount: a prompt written to auto/ is routed (its .json names
# the route and the model that answered); a user profile with "route": "auto"
# and a quality routes at that quality; `rate DIR/NAME SCORE` on ctl and
# `gemini-pool rate PATH SCORE` keep scores that reorder the next decision
# for that (task type, complexity).
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big
python3 - "$FS_KEYS_JSON" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["profiles"] = {"quick": {"route": "auto", "quality": "production"}}
json.dump(doc, open(sys.argv[1], "w"))
PY
fs_mount
W=$FS_TMP/work
mkdir -p "$W"
LITE=gemini-3.1-flash-lite-preview FLASH=gemini-3-flash-preview FLASH25=gemini-2.5-flash

# jq-free field access: json_get FILE EXPR (EXPR over the parsed document d).
json_get() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}

echo "summarize this paragraph: the mount routes prompts" >"$MNT/auto/x"
timeout 60 cat "$MNT/auto/x.out" >"$W/x.out"
cat "$MNT/auto/x.json" >"$W/x.json"
check "auto/x is answered" test -s "$W/x.out"
check "auto/x.json names the route (general, low, draft) and the model that answered" \
    test "$(json_get "$W/x.json" '(d["route"]["task_type"], d["route"]["complexity"], d["route"]["quality"], d["route"]["candidates"][0]["model"], d["model_used"], d["model_requested"])')" \
    = "('general', 'low', 'draft', '$LITE', '$LITE', 'auto')"

echo "summarize this paragraph: a routed user profile" >"$MNT/quick/y"
timeout 60 cat "$MNT/quick/y.out" >/dev/null
cat "$MNT/quick/y.json" >"$W/y.json"
check "quick (route auto, quality production) routes to flash with high thinking" \
    test "$(json_get "$W/y.json" '(d["route"]["quality"], d["route"]["quality_given"], d["route"]["candidates"][0]["thinking"], d["model_used"])')" \
    = "('production', True, 'high', '$FLASH')"

echo "summarize this paragraph: a named model" >"$MNT/flash/z"
timeout 60 cat "$MNT/flash/z.out" >/dev/null
cat "$MNT/flash/z.json" >"$W/z.json"
check "a job of a model directory has no route, but its task type and complexity" \
    test "$(json_get "$W/z.json" '(d["route"], d["task_type"], d["complexity"])')" = "(None, 'general', 'low')"

# Five scores for 2.5-flash on (general, medium) put it first.
TASK="explain the difference between a process and a thread"
"$GEMINI_POOL" route --task "$TASK" --json >"$W/before.json"
check "before scores, flash leads (general, medium)" \
    test "$(json_get "$W/before.json" 'd["candidates"][0]["model"]')" = "$FLASH"
for i in 1 2 3 4 5; do
    echo "$TASK ($i)" >"$MNT/flash-2.5/e$i"
    timeout 60 cat "$MNT/flash-2.5/e$i.out" >/dev/null
done
for i in 1 2 3 4; do
    echo "rate flash-2.5/e$i 5" >"$MNT/ctl" || fail "ctl rate flash-2.5/e$i"
done
check "a bad ctl rate is refused" sh -c "! echo 'rate flash-2.5/nosuch 5' >'$MNT/ctl' 2>/dev/null"
"$GEMINI_POOL" route --task "$TASK" --json >"$W/four.json"
check "four scores do not reorder" test "$(json_get "$W/four.json" 'd["candidates"][0]["model"]')" = "$FLASH"
check "gemini-pool rate PATH SCORE takes a job of the mount" \
    "$GEMINI_POOL" rate "$MNT/flash-2.5/e5" 5
"$GEMINI_POOL" route --task "$TASK" --json >"$W/after.json"
check "after five scores, 2.5-flash leads and the decision says it was scored" \
    test "$(json_get "$W/after.json" '(d["scored"], d["candidates"][0]["model"])')" = "(True, '$FLASH25')"
echo "$TASK (routed)" >"$MNT/auto/after"
timeout 60 cat "$MNT/auto/after.out" >/dev/null
cat "$MNT/auto/after.json" >"$W/after-job.json"
check "the mount's next routed job of that pair goes to 2.5-flash" \
    test "$(json_get "$W/after-job.json" 'd["model_used"]')" = "$FLASH25"
fs_done
