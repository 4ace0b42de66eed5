#!/usr/bin/env bash
# Usage: replay.sh fuzz-replay-NAME...  Runs each replay driver on
# tests/fuzz/corpus/NAME and tests/fuzz/regressions/NAME; fails if any input
# breaks its target.  Ends with "fuzz-regressions: N targets, N inputs".
set -uo pipefail
src=${GKP_SOURCE_ROOT:?}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
targets=0 inputs=0 failed=0
for exe in "$@"; do
  name=$(basename "$exe")
  name=${name#fuzz-replay-}
  if "$exe" "$src/tests/fuzz/corpus/$name" "$src/tests/fuzz/regressions/$name" >"$tmp" 2>&1; then
    n=$(sed -n 's/^replay: \([0-9]*\) inputs$/\1/p' "$tmp")
    echo "$name: $n inputs ok"
    inputs=$((inputs + n))
  else
    echo "$name: FAILED"
    tail -40 "$tmp"
    failed=$((failed + 1))
  fi
  targets=$((targets + 1))
done
echo "fuzz-regressions: $targets targets, $inputs inputs, $failed failed"
[ "$failed" -eq 0 ]
