#!/usr/bin/env bash
# Compiles the library example program in README.md against the built
# library and runs it with a throwaway keys.json and state file.
set -euo pipefail
src=${GKP_SOURCE_ROOT:?} build=${GKP_BUILD_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The C block right after the "example: library" marker.
awk '/<!-- example: library -->/ {want=1; next}
     want && /^```c/ {inside=1; next}
     inside && /^```/ {exit}
     inside {print}' "$src/README.md" >"$tmp/example.c"
[ -s "$tmp/example.c" ] || { echo "no example program found in README.md"; exit 1; }

cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$tmp/example.c" \
  -I"$src/include" "$build/libgkp.a" $(pkg-config --libs libcjson libcurl hiredis) -lpthread -lm \
  ${GKP_EXAMPLE_LDFLAGS:-}

cat >"$tmp/keys.json" <<'JSON'
{ "providers": { "gemini": { "keys": [
  { "id": "first",  "api_key": "env:EXAMPLE_KEY_1" },
  { "id": "second", "api_key": "env:EXAMPLE_KEY_2", "project": "proj-2" } ] } } }
JSON
printf 'EXAMPLE_KEY_2="FAKE-EXAMPLE-SECRET-2"\n' >"$tmp/.env"
out=$(cd "$tmp" && EXAMPLE_KEY_1=FAKE-EXAMPLE-SECRET-1 GEMINI_POOL_CONFIG= \
      GEMINI_POOL_STATE="$tmp/state.db" ./example)
echo "$out"
grep -q '^2 keys, 2 ready for gemini-2.5-flash$' <<<"$out"
grep -q '^reserved first (project first) for gemini-2.5-flash$' <<<"$out"
grep -q '^rpm: Quota exceeded. Please retry in 12.5s.; first cools for 12500 ms$' <<<"$out"
! grep -q FAKE-EXAMPLE-SECRET <<<"$out"
! grep -q FAKE-EXAMPLE-SECRET "$tmp/state.db"
echo "README example: ok"
