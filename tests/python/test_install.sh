#!/usr/bin/env bash
# The README's offline install of the Python package works as written: a
# virtual environment that sees Debian's setuptools, then
#   pip install --no-build-isolation --no-index ./python
# (no network: --no-index, and nothing to download for the build), and the
# installed package finds the built libgkp through GKP_LIBRARY and runs.
set -euo pipefail
src=${GKP_SOURCE_ROOT:?} build=${GKP_BUILD_ROOT:?}
if [ -n "${GKP_SANITIZED:-}" ]; then
  echo "SKIP: the Python package runs in the normal build (this libgkp is built with -fsanitize=$GKP_SANITIZED)"
  exit 77
fi
py=
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import ensurepip, setuptools, wheel' 2>/dev/null &&
    "$p" -m pip --version >/dev/null 2>&1; then
    py=$p
    break
  fi
done
[ -n "$py" ] || { echo "FAIL: no python3 with venv, pip, setuptools and wheel (Debian: python3-venv python3-pip python3-setuptools python3-wheel)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gkp-pyinstall.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/work"
cp -r "$src/python" "$tmp/work/python"
rm -rf "$tmp/work/python/build" "$tmp/work/python"/*.egg-info
cd "$tmp/work"
"$py" -m venv --system-site-packages "$tmp/venv"
# No proxy, no index: an attempt to fetch anything fails the install.
env -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$tmp/venv/bin/python" -m pip install --no-build-isolation --no-index ./python >"$tmp/pip.log" 2>&1 || {
  cat "$tmp/pip.log" >&2
  echo "FAIL: pip install --no-build-isolation --no-index ./python failed" >&2
  exit 1
}
cd "$tmp"
out=$(GKP_LIBRARY="$build/libgkp.so.0.3" "$tmp/venv/bin/python" -c '
import gemini_key_pool, sys
from gemini_key_pool import KeyPoolManager, run_gemini_task, parse_rate_limit_type
assert gemini_key_pool.__file__.startswith(sys.prefix), gemini_key_pool.__file__
print(parse_rate_limit_type("quotaId: GenerateRequestsPerMinutePerProjectPerModel-FreeTier. Please retry in 7s."))
')
[ "$out" = rpm ] || { echo "FAIL: the installed package printed '$out', not 'rpm'" >&2; exit 1; }
"$tmp/venv/bin/python" -m gemini_key_pool.gemini_agent --help | grep -q -- "--image-output" || {
  echo "FAIL: python -m gemini_key_pool.gemini_agent --help" >&2
  exit 1
}
echo "ok - installed offline into a venv and ran"
