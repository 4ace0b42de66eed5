#!/usr/bin/env bash
# Runs one pytest file of the Python package with a Python that has pytest
# (Debian's python3-pytest; the first python3 on PATH may be another build).
# The package loads libgkp with ctypes into an uninstrumented interpreter: in
# an AddressSanitizer build the sanitizer runtimes are preloaded (leak checks
# off for the interpreter's own allocations; memory errors and undefined
# behaviour in the library still abort); under ThreadSanitizer, which cannot
# be preloaded, the test is skipped (exit 77).  --no-ctypes first marks a
# test that does not load libgkp.
set -euo pipefail
no_ctypes=0
if [ "${1:-}" = --no-ctypes ]; then
  no_ctypes=1
  shift
fi
if [ -n "${GKP_SANITIZED:-}" ] && [ "$no_ctypes" = 0 ]; then
  case ",$GKP_SANITIZED," in
  *,address,*)
    preload=
    for rt in asan ubsan; do
      [ "$rt" = ubsan ] && [[ ",$GKP_SANITIZED," != *,undefined,* ]] && continue
      lib=$(${CC:-cc} -print-file-name="lib$rt.so")
      if [ ! -e "$lib" ]; then
        echo "SKIP: cannot find lib$rt.so to preload into python3 (cc -print-file-name)"
        exit 77
      fi
      preload="$preload $lib"
    done
    export LD_PRELOAD="${preload# }${LD_PRELOAD:+ $LD_PRELOAD}"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    ;;
  *)
    echo "SKIP: python3 cannot load a libgkp built with -fsanitize=$GKP_SANITIZED"
    exit 77
    ;;
  esac
fi
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import pytest' 2>/dev/null; then
    exec "$py" -m pytest -q -p no:cacheprovider -rs "$@"
  fi
done
echo "FAIL: no python3 with pytest (Debian: apt-get install python3-pytest)" >&2
exit 1
