#!/usr/bin/env bash
# debian/ follows meson.build: the changelog's first entry is the project's
# version, the library package is named after the SONAME, and its symbols
# file lists exactly the GKP_API functions of gkp.h.  Needs no packaging tool
# (scripts/test-package builds the packages themselves).
set -euo pipefail
src=${GKP_SOURCE_ROOT:?}
fail=0
"$src/scripts/debian-changelog" --check || fail=1
"$src/scripts/debian-symbols" --check || fail=1
soversion=$(sed -n "s/^ *soversion *: *'\([^']*\)'.*/\1/p" "$src/meson.build" | head -1)
grep -qx "Package: libgkp$soversion" "$src/debian/control" ||
  { echo "debian: debian/control has no 'Package: libgkp$soversion'" >&2; fail=1; }
[ -f "$src/debian/libgkp$soversion.install" ] ||
  { echo "debian: no debian/libgkp$soversion.install" >&2; fail=1; }
stale=$(grep -o 'libgkp[0-9][0-9.]*[0-9]' "$src/debian/control" | sort -u | grep -vx "libgkp$soversion" || true)
[ -z "$stale" ] || { echo "debian: debian/control still names $stale" >&2; fail=1; }
[ $fail -eq 0 ] || exit 1
echo "debian: changelog, package names and symbols follow meson.build (soversion $soversion)"
