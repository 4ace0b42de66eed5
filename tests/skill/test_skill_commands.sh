#!/usr/bin/env bash
# Every shell command of the agent skill works as written: the ```bash
# blocks of `gemini-pool skill`, in order, in one bash with -e and pipefail,
# against a real mount over the emulator (the skill's setup block finds it
# mounted).  Exits 77 without /dev/fuse.
. "$(dirname "$0")/../fs/fs_lib.sh"
fs_setup --keys 3 --big
fs_mount
export GEMINI_POOL_MOUNT=$MNT HOME=$FS_TMP/home TMPDIR=$FS_TMP/tmp
export PATH="$(dirname "$GEMINI_POOL"):$PATH"
mkdir -p "$HOME" "$TMPDIR"

"$GEMINI_POOL" skill | awk '
  /^```bash$/ { inside = 1; n++; printf "echo \"### block %d\" >&2\n", n; next }
  inside && /^```$/ { inside = 0; next }
  inside { print }' >"$FS_TMP/skill.sh"
blocks=$(grep -c '^echo "### block' "$FS_TMP/skill.sh")
check "the skill has its shell blocks ($blocks)" test "$blocks" -ge 8

( cd "$FS_TMP" && bash -e -o pipefail "$FS_TMP/skill.sh" ) >"$FS_TMP/out" 2>"$FS_TMP/err"
rc=$?
check "every command of the skill succeeds (exit $rc)" test "$rc" -eq 0
if [ "$rc" -ne 0 ]; then
  echo "--- last block started and its stderr:"; tail -20 "$FS_TMP/err"
fi
check "every block ran" grep -q "^### block $blocks\$" "$FS_TMP/err"
answers=$(grep -o '\[fake-gemini model=' "$FS_TMP/out" | wc -l)
check "the answers came back from the emulator ($answers)" test "$answers" -ge 9
check "a job in auto/ names the model the pool chose" \
  grep -q '"model_used":.*"gemini-' "$MNT/auto/why-tests.json"
check "a job in auto/ names its route" \
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["route"]; sys.exit(0 if r["candidates"] and r["task_type"] else 1)' \
  "$MNT/auto/why-tests.json"
check "ask --json names its route" grep -q '"route":' "$FS_TMP/out"
check "ask --json names its run id" grep -q '"run_id":' "$FS_TMP/out"
check "no job failed" test -z "$(find "$MNT/auto" -name '*.err')"
check "the council's summary saw the three experts" \
  grep -q 'council-summary\|Combine these expert opinions' "$MNT/auto/council-summary.out"
fs_done
