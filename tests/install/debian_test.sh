#!/usr/bin/env bash
# The version is meson.build's everywhere (gkp.h, the Python package, the
# changelog's first entry: scripts/set-version writes them all), and debian/
# follows meson.build: the library package is named after the SONAME, and its symbols
# file lists exactly the GKP_API functions of gkp.h.  Needs no packaging tool
# (scripts/test-package builds the packages themselves).
set -euo pipefail
src=${GKP_SOURCE_ROOT:?}
fail=0
"$src/scripts/debian-changelog" --check || fail=1
"$src/scripts/debian-symbols" --check || fail=1
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$src/meson.build" | head -1)
same() { # WHAT FOUND
  [ "$2" = "$version" ] ||
    { echo "debian: $1 says '$2', meson.build $version; run scripts/set-version $version" >&2; fail=1; }
}
same "GKP_VERSION in include/gkp.h" "$(sed -n 's/^#define GKP_VERSION "\(.*\)"/\1/p' "$src/include/gkp.h")"
if [ -d "$src/python" ]; then
  same python/pyproject.toml "$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/python/pyproject.toml")"
  same "gemini_key_pool.__version__" \
    "$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$src/python/gemini_key_pool/__init__.py")"
fi
soversion=$(sed -n "s/^ *soversion *: *'\([^']*\)'.*/\1/p" "$src/meson.build" | head -1)
grep -qx "Package: libgkp$soversion" "$src/debian/control" ||
  { echo "debian: debian/control has no 'Package: libgkp$soversion'" >&2; fail=1; }
[ -f "$src/debian/libgkp$soversion.install" ] ||
  { echo "debian: no debian/libgkp$soversion.install" >&2; fail=1; }
stale=$(grep -o 'libgkp[0-9][0-9.]*[0-9]' "$src/debian/control" | sort -u | grep -vx "libgkp$soversion" || true)
[ -z "$stale" ] || { echo "debian: debian/control still names $stale" >&2; fail=1; }
[ $fail -eq 0 ] || exit 1
echo "debian: version $version everywhere; package names and symbols follow meson.build (soversion $soversion)"
