#!/usr/bin/env bash
# Runs one pytest file of the Python package with a Python that has pytest
# (Debian's python3-pytest; the first python3 on PATH may be another build).
# The package loads libgkp with ctypes into an uninstrumented interpreter, so
# in sanitizer builds such a test is skipped (exit 77): the library under it
# is exercised by the C suites there.  --no-ctypes first marks a test that
# does not load libgkp (it runs in every build).
set -euo pipefail
no_ctypes=0
if [ "${1:-}" = --no-ctypes ]; then
  no_ctypes=1
  shift
fi
if [ -n "${GKP_SANITIZED:-}" ] && [ "$no_ctypes" = 0 ]; then
  echo "SKIP: the Python package runs in the normal build (this libgkp is built with -fsanitize=$GKP_SANITIZED)"
  exit 77
fi
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import pytest' 2>/dev/null; then
    exec "$py" -m pytest -q -p no:cacheprovider -rs "$@"
  fi
done
echo "FAIL: no python3 with pytest (Debian: apt-get install python3-pytest)" >&2
exit 1
