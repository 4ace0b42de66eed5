#!/usr/bin/env bash
# status/: the real error bodies of tests/fixtures/gemini-errors replayed through
# jobs show up in pool.json with the right cooldown_kind and cooldown_until;
# metrics is valid Prometheus text; every read is fresh.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 7 --big --inflight 1
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

# key i gets fixture i (the replay is bound to the emulator's key k<i>).
fixtures=(429_input_tokens_per_minute_free_tier 429_per_day_free_tier
          429_limit_zero_no_free_tier 429_prepay_credits_depleted 503_model_overloaded
          400_api_key_invalid_array_framed 404_model_not_found)
for i in "${!fixtures[@]}"; do
    emu_ctl POST replay "{\"body_file\":\"$FS_FIXTURES/${fixtures[$i]}.json\",\"key\":\"k$((i + 1))\",\"model\":\"gemini-3-flash-preview\"}" >/dev/null ||
        fail "cannot queue ${fixtures[$i]}"
done
# Jobs take the least recently used key: submit until every replay was used.
for n in $(seq 1 20); do
    left=$(emu_ctl GET replay | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["queue"]))')
    [ "$left" = 0 ] && break
    echo "status job $n" >"$D/job$n"
    timeout 10 cat "$D/job$n.json" >/dev/null
    sleep 0.3
done
check "every fixture was answered to a job" test "$left" = 0
cat "$MNT/status/pool.json" >"$W/pool.json"
cat "$MNT/status/pool" >"$W/pool.txt"
sed -n '1,12p' "$W/pool.txt"

python3 - "$W/pool.json" >"$W/status.result" <<'EOF'
import datetime, json, sys
doc = json.load(open(sys.argv[1]))
def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
now = ts(doc["generated_at"])
reset = ts(doc["next_daily_reset"])
keys = {k["id"]: k for k in doc["keys"]}
M = "gemini-3-flash-preview"
def m(key):
    return keys[key]["models"][M]
def report(name, ok, detail):
    print(("ok   " if ok else "FAIL ") + name + " -- " + detail)
k = m("key1")
report("per-minute tokens: cooldown_kind tpm for the retry delay",
       k["cooldown_kind"] == "tpm" and 0 < k["cooldown_until"] - now <= 27,
       "%s until now+%ds" % (k["cooldown_kind"], k["cooldown_until"] - now))
k = m("key2")
report("per-day: cooldown_kind rpd until midnight Pacific",
       k["cooldown_kind"] == "rpd" and abs(k["cooldown_until"] - reset) <= 1,
       "%s until %s (reset %s)" % (k["cooldown_kind"], k["cooldown_until"], reset))
k = m("key3")
report("limit 0: cooldown_kind no_free_tier until midnight Pacific",
       k["cooldown_kind"] == "no_free_tier" and abs(k["cooldown_until"] - reset) <= 1,
       "%s until %s" % (k["cooldown_kind"], k["cooldown_until"]))
k = keys["key4"]
allm = [e for e in k["models"].values()]
report("billing: the whole key cools 2 h, shown in every model entry",
       all(e["cooldown_kind"] == "billing" and abs(e["cooldown_until"] - now - 7200) <= 5
           for e in allm) and k["cooldown_kind"] == "billing",
       "%s until now+%ds" % (k["cooldown_kind"], k["cooldown_until"] - now))
k = m("key5")
report("503 overloaded: a short server cooldown (or already over)",
       (k["cooldown_kind"] == "server" and 0 < k["cooldown_until"] - now <= 31) or
       (k["cooldown_until"] == 0 and k["errors"]["server"] >= 1),
       "%s until now+%ds, server errors %d" % (k["cooldown_kind"], k["cooldown_until"] - now,
                                               k["errors"]["server"]))
k = keys["key6"]
report("invalid key: disabled with its reason",
       k["state"] == "disabled" and k["disabled_reason"],
       "%s: %s" % (k["state"], k["disabled_reason"]))
k = m("key7")
report("model not found: no cooldown on the key",
       k["cooldown_until"] == 0 and k["errors"]["model_not_found"] >= 1,
       "until %s, errors %s" % (k["cooldown_until"], k["errors"]["model_not_found"]))
EOF
while read -r line; do
    case $line in
        ok*) pass "${line#ok   }" ;;
        *) fail "${line#FAIL }" ;;
    esac
done <"$W/status.result"
check "status/pool shows the cooldown kinds" \
    bash -c "grep -q tpm '$W/pool.txt' && grep -q rpd '$W/pool.txt' && grep -q billing '$W/pool.txt'"
check "status/keys/key6 says disabled" grep -q '^state disabled' "$MNT/status/keys/key6"
check "status/models/gemini-3-flash-preview counts the cooling keys" \
    bash -c "grep -E '^keys_cooling [1-9]' '$MNT/status/models/gemini-3-flash-preview'"
say "models/gemini-3-flash-preview: $(grep -E '^(keys|next_available|capacity)' "$MNT/status/models/gemini-3-flash-preview" | tr '\n' ';')"

# status/metrics parses as Prometheus text exposition format.
cat "$MNT/status/metrics" >"$W/metrics"
python3 "$FS_LIB_DIR/promparse.py" "$W/metrics" >"$W/metrics.result" 2>&1
rc=$?
tail -3 "$W/metrics.result"
check "status/metrics is valid Prometheus text" test $rc -eq 0
check "metrics: errors by kind per key and model" \
    grep -q 'gemini_pool_errors_total{key="key2",model="gemini-3-flash-preview",kind="rpd"} 1' "$W/metrics"
check "metrics: cooldowns" grep -q '^gemini_pool_cooldown_remaining_seconds{key="key4"' "$W/metrics"
check "metrics: keys by state" grep -q '^gemini_pool_keys{state="disabled"} 1' "$W/metrics"
check "metrics: jobs by status" grep -q '^gemini_pool_jobs{status="done"}' "$W/metrics"
check "metrics: the job latency histogram" grep -q '^gemini_pool_job_latency_seconds_bucket{le="+Inf"}' "$W/metrics"

# Fresh on every read.
a=$(grep -m1 generated_at "$MNT/status/pool.json")
sleep 1.1
b=$(grep -m1 generated_at "$MNT/status/pool.json")
check "pool.json is generated on every read ($a / $b)" test "$a" != "$b"
before=$(grep -c . "$MNT/status/jobs")
echo "one more" >"$MNT/flash-lite/fresh"
after=$(grep -c . "$MNT/status/jobs")
check "status/jobs shows a new job at once ($before -> $after)" test "$after" -eq $((before + 1))
r1=$(grep -o '^gemini_pool_jobs_submitted_total [0-9]*' "$MNT/status/metrics")
echo "and another" >"$MNT/flash-lite/fresh2"
r2=$(grep -o '^gemini_pool_jobs_submitted_total [0-9]*' "$MNT/status/metrics")
check "metrics count a new job at once ($r1 -> $r2)" test "$r1" != "$r2"
fs_done
