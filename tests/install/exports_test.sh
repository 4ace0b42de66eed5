#!/usr/bin/env bash
# The shared library exports its public API and nothing else: every symbol
# `nm -D --defined-only` lists is a gkp_ name (no internal gkp__ name, no
# helper of another prefix), every function gkp.h declares is among them,
# and every one of those declarations carries GKP_API.
# Usage: exports_test.sh LIBGKP.SO GKP.H
set -euo pipefail
lib=${1:?libgkp.so} header=${2:?gkp.h}
fail=0

exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 {print $3}' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || {
  echo "exports: nm -D lists nothing defined in $lib" >&2
  exit 1
}
stray=$(grep -v '^gkp_[a-z0-9]' <<<"$exported" || true)
if [ -n "$stray" ]; then
  echo "exports: $lib exports $(wc -l <<<"$stray") symbols outside the public API" \
    "(mark only gkp.h's functions GKP_API; build with hidden visibility):" >&2
  head -20 <<<"$stray" | sed 's/^/  /' >&2
  fail=1
fi

# The function declarations of gkp.h (a name followed by "(" at the start
# of a declaration, after the return type).
declared=$(grep -E '^(GKP_API )?[a-z_][a-z0-9_ ]*[ *]gkp_[a-z0-9_]+\(' "$header" |
  grep -v '^typedef' | grep -oE 'gkp_[a-z0-9_]+\(' | tr -d '(' | sort -u)
[ -n "$declared" ] || {
  echo "exports: no function declarations found in $header" >&2
  exit 1
}
unmarked=$(grep -E '^[a-z_][a-z0-9_ ]*[ *]gkp_[a-z0-9_]+\(' "$header" | grep -v '^typedef' || true)
if [ -n "$unmarked" ]; then
  echo "exports: $header declares functions without GKP_API (they would be hidden):" >&2
  sed 's/^/  /' <<<"$unmarked" >&2
  fail=1
fi
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
if [ -n "$missing" ]; then
  echo "exports: declared in $header but not exported by $lib:" >&2
  sed 's/^/  /' <<<"$missing" >&2
  fail=1
fi
[ $fail -eq 0 ] || exit 1
echo "exports: $(wc -l <<<"$exported") symbols, all gkp_; all $(wc -l <<<"$declared") functions of gkp.h among them"
