#!/usr/bin/env bash
# Installs the build into a temporary DESTDIR and checks what a user gets:
# the binary, the shared and static library, gkp.h, gkp.pc, the example
# configuration, the agent skill, the systemd units (user and system), the
# sysusers.d entry and the man page.
# Then compiles the README's library example with nothing but
# `pkg-config --cflags --libs gkp` against the installed files (linked
# against the shared library, and statically with --static), runs both with a
# throwaway keys.json, and verifies the units with systemd-analyze if present.
set -euo pipefail
src=${GKP_SOURCE_ROOT:?} build=${GKP_BUILD_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

fail() {
  echo "install: $*" >&2
  exit 1
}

if ! meson install -C "$build" --destdir "$dest" --no-rebuild >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log" >&2
  fail "meson install failed"
fi

# The install directories this build was configured with.
prefix='' bindir='' libdir='' includedir='' datadir='' mandir=''
eval "$(meson introspect --buildoptions "$build" | python3 -c '
import json, os, shlex, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for name in ("prefix", "bindir", "libdir", "includedir", "datadir", "mandir"):
    path = os.path.join(opts["prefix"], opts[name])
    print("%s=%s" % (name, shlex.quote(path)))
')"

# ---- every file in place ---------------------------------------------------
need() {
  [ -e "$dest$1" ] || fail "missing $1 (installed files: $(cd "$dest" && find . -type f | sort | tr '\n' ' '))"
}
need "$bindir/gemini-pool"
[ -x "$dest$bindir/gemini-pool" ] || fail "$bindir/gemini-pool is not executable"
need "$libdir/libgkp.so"
need "$libdir/libgkp.a"
need "$libdir/pkgconfig/gkp.pc"
need "$includedir/gkp.h"
need "$datadir/doc/gemini-key-pool/keys.json.example"
units=(user/gemini-pool-serve.service user/gemini-pool-mount@.service
       system/gemini-pool-serve.service system/gemini-pool-mount@.service)
for u in "${units[@]}"; do need "$prefix/lib/systemd/$u"; done
need "$prefix/lib/sysusers.d/gemini-pool.conf"
need "$mandir/man1/gemini-pool.1"
cmp -s "$src/keys.json.example" "$dest$datadir/doc/gemini-key-pool/keys.json.example" ||
  fail "the installed keys.json.example differs from the source"
need "$datadir/gemini-pool/skill/SKILL.md"
cmp -s "$src/share/skill/SKILL.md" "$dest$datadir/gemini-pool/skill/SKILL.md" ||
  fail "the installed SKILL.md differs from the source"
"$dest$bindir/gemini-pool" skill | cmp -s - "$src/share/skill/SKILL.md" ||
  fail "the installed gemini-pool skill does not print share/skill/SKILL.md"
unit=$prefix/lib/systemd/user/gemini-pool-mount@.service
grep -qx "ExecStart=$bindir/gemini-pool mount %f -f" "$dest$unit" ||
  fail "$unit: no 'ExecStart=$bindir/gemini-pool mount %f -f' line"
grep -qx 'ExecStop=-\?fusermount3 -u %f' "$dest$unit" || fail "$unit: no ExecStop with fusermount3"
unit=$prefix/lib/systemd/user/gemini-pool-serve.service
grep -qx "ExecStart=$bindir/gemini-pool serve --listen \${GEMINI_POOL_LISTEN}" "$dest$unit" ||
  fail "$unit: no 'ExecStart=$bindir/gemini-pool serve --listen \${GEMINI_POOL_LISTEN}' line"
for u in "${units[@]}"; do
  unit=$prefix/lib/systemd/$u
  grep -qx 'ExecReload=kill -HUP $MAINPID' "$dest$unit" || fail "$unit: no ExecReload sending SIGHUP"
  grep -qx 'LimitCORE=0' "$dest$unit" || fail "$unit: core files are not off"
  ! grep -q '@[A-Z_]*@' "$dest$unit" || fail "$unit: an unsubstituted @VARIABLE@"
done
"$dest$bindir/gemini-pool" --version >/dev/null || fail "the installed gemini-pool does not run"

# ---- the README's example against the installed pkg-config file -----------
awk '/<!-- example: library -->/ {want=1; next}
     want && /^```c/ {inside=1; next}
     inside && /^```/ {exit}
     inside {print}' "$src/README.md" >"$tmp/example.c"
[ -s "$tmp/example.c" ] || fail "no example program found in README.md"

export PKG_CONFIG_PATH=$dest$libdir/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs gkp) || fail "pkg-config --cflags --libs gkp failed"
case $flags in
*"-I$dest$includedir"*"-L$dest$libdir"*) ;;
*) fail "pkg-config gives '$flags', which does not point into the installed tree" ;;
esac
# shellcheck disable=SC2086 # flags are words
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example" "$tmp/example.c" $flags \
  ${GKP_EXAMPLE_LDFLAGS:-} || fail "the example does not build with: $flags"

# Statically: only libgkp.a is found first, so everything it needs must come
# from gkp.pc: its Libs.private and the packages of its Requires.private
# (linked shared: static archives of libcurl's own dependencies are seldom
# installed, and they are libcurl's business, not ours).
mkdir "$tmp/static"
ln -s "$dest$libdir/libgkp.a" "$tmp/static/libgkp.a"
# shellcheck disable=SC2046 # the package names are words
sflags="$(pkg-config --cflags --static --libs --maximum-traverse-depth=2 gkp) \
$(pkg-config --libs $(pkg-config --print-requires-private gkp))" ||
  fail "pkg-config --static --libs gkp failed"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/example-static" "$tmp/example.c" -L"$tmp/static" \
  $sflags ${GKP_EXAMPLE_LDFLAGS:-} || fail "the example does not link statically with: $sflags"

cat >"$tmp/keys.json" <<'JSON'
{ "providers": { "gemini": { "keys": [
  { "id": "first",  "api_key": "env:EXAMPLE_KEY_1" },
  { "id": "second", "api_key": "env:EXAMPLE_KEY_2", "project": "proj-2" } ] } } }
JSON
printf 'EXAMPLE_KEY_2="FAKE-EXAMPLE-SECRET-2"\n' >"$tmp/.env"

# run NAME: runs one build of the example in $tmp with a fresh state file.
run() {
  local out
  rm -f "$tmp/state.db"
  out=$(cd "$tmp" && EXAMPLE_KEY_1=FAKE-EXAMPLE-SECRET-1 GEMINI_POOL_CONFIG='' \
    GEMINI_POOL_STATE="$tmp/state.db" LD_LIBRARY_PATH="$dest$libdir" "./$1") ||
    fail "$1 failed: $out"
  grep -q '^2 keys, 2 ready for gemini-2.5-flash$' <<<"$out" || fail "$1 printed: $out"
  ! grep -q FAKE-EXAMPLE-SECRET <<<"$out" || fail "$1 printed a secret"
}
deps=$(LD_LIBRARY_PATH="$dest$libdir" ldd "$tmp/example")
grep -q "libgkp.so.* => $dest$libdir/" <<<"$deps" ||
  fail "the example does not load the installed libgkp.so: $deps"
deps=$(ldd "$tmp/example-static")
! grep -q libgkp <<<"$deps" || fail "the static example loads libgkp.so: $deps"
run example
run example-static

# ---- the systemd units -------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  # Verified as installed, except that ExecStart names the binary in DESTDIR
  # (verify checks that it exists); --user needs a runtime directory.
  mkdir -p "$tmp/units/user" "$tmp/units/system" "$tmp/run"
  chmod 700 "$tmp/run"
  for u in "${units[@]}"; do
    sed "s#^ExecStart=$bindir/#ExecStart=$dest$bindir/#" "$dest$prefix/lib/systemd/$u" >"$tmp/units/$u"
  done
  verify() { # KIND INSTANCE...
    local kind=$1 flags=()
    shift
    [ "$kind" = user ] && flags=(--user)
    if ! (cd "$tmp/units/$kind" && XDG_RUNTIME_DIR=$tmp/run systemd-analyze "${flags[@]}" --man=no \
      verify "$@") >"$tmp/verify.log" 2>&1 || [ -s "$tmp/verify.log" ]; then
      if grep -q 'Failed to initialize manager\|Failed to lookup RuntimeDirectory' "$tmp/verify.log"; then
        echo "install: note: systemd-analyze cannot run here; $kind units not verified:"
        cat "$tmp/verify.log"
      else
        cat "$tmp/verify.log" >&2
        fail "systemd-analyze verify rejects the $kind units"
      fi
    else
      echo "install: systemd-analyze verify $kind $*: clean"
    fi
  }
  verify user ./gemini-pool-serve.service ./gemini-pool-mount@home-me-gemini.service
  verify system ./gemini-pool-serve.service ./gemini-pool-mount@srv-gemini.service
else
  echo "install: note: no systemd-analyze; the units are not verified"
fi
echo "install: ok"
