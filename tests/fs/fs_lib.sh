# shellcheck shell=bash
# Helpers for the filesystem's integration tests: each test mounts the real
# filesystem (gemini-pool mount) in a temporary directory against the emulator,
# runs ordinary commands on it, and always unmounts.
#
#   . "$(dirname "$0")/fs_lib.sh"
#   fs_setup [--keys N] [--big] [--inflight N]   # temp dir, emulator, keys.json, env keys
#   fs_mount [-o OPTS]                           # mounts at $MNT, daemon pid in $FS_PID
#   check "what" command...                      # a named assertion
#   fs_done                                      # summary; exit status
#
# Exits 77 (skip) when /dev/fuse is missing or mounting is not permitted.
# Variables: FS_TMP, MNT, FS_STATE (state file), FS_SPOOL, FS_LOG (daemon's stderr),
# GEMINI_POOL (the binary), EMU_URL (the emulator), FS_KEYS_JSON, FS_EMU_KEYS.

set -u
FS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GKP_SOURCE_ROOT=${GKP_SOURCE_ROOT:-$(cd "$FS_LIB_DIR/../.." && pwd)}
GKP_BUILD_ROOT=${GKP_BUILD_ROOT:-$GKP_SOURCE_ROOT/build}
GEMINI_POOL=${GEMINI_POOL:-$GKP_BUILD_ROOT/src/cli/gemini-pool}
FS_FIXTURES=${GKP_FIXTURES:-$GKP_SOURCE_ROOT/tests/fixtures}/gemini-errors
# shellcheck source=../lib/emulator.sh
. "$GKP_SOURCE_ROOT/tests/lib/emulator.sh"

FS_PASSED=0
FS_FAILED=0
FS_PID=
FS_MOUNT_ARGS=()

fs_skip() {
    echo "SKIP: $*"
    exit 77
}

# Prints a line with the elapsed time since the test started.
say() {
    printf '[%6.2fs] %s\n' "$(awk "BEGIN{print $(date +%s.%N) - ${FS_T0:-0}}")" "$*"
}

# check DESCRIPTION COMMAND... - runs the command; counts and reports the result.
check() {
    local what=$1
    shift
    if "$@"; then
        FS_PASSED=$((FS_PASSED + 1))
        say "ok   - $what"
    else
        FS_FAILED=$((FS_FAILED + 1))
        say "FAIL - $what"
    fi
}

fail() {
    FS_FAILED=$((FS_FAILED + 1))
    say "FAIL - $*"
}

pass() {
    FS_PASSED=$((FS_PASSED + 1))
    say "ok   - $*"
}

# Writes the emulator's keys file: N keys FAKE-KEY-000i in projects p1..pN.  With
# --big, every project gets the models the tests use without limits.
fs_write_emu_keys() {
    local file=$1 n=$2 big=$3 i sep='' models
    models='"gemini-3-flash-preview":{"rpm":null,"tpm":null,"rpd":null},
            "gemini-2.5-flash":{"rpm":null,"tpm":null,"rpd":null},
            "gemini-3.1-flash-lite-preview":{"rpm":null,"tpm":null,"rpd":null},
            "gemma-3-27b-it":{"rpm":null,"tpm":null,"rpd":null},
            "gemini-2.5-flash-image":{"rpm":null,"tpm":null,"rpd":null}'
    {
        printf '{"projects": {'
        for i in $(seq 1 "$n"); do
            if [ "$big" = 1 ]; then
                printf '%s"p%d": {"models": {%s}}' "$sep" "$i" "$models"
            else
                printf '%s"p%d": {}' "$sep" "$i"
            fi
            sep=,
        done
        printf '}, "keys": ['
        sep=''
        for i in $(seq 1 "$n"); do
            printf '%s{"key": "FAKE-KEY-%04d", "name": "k%d", "project": "p%d"}' "$sep" "$i" "$i" "$i"
            sep=,
        done
        printf ']}\n'
    } >"$file"
}

# Writes the pool's keys.json (ids key1..keyN, api_key env:FS_KEY_i).
fs_write_pool_keys() {
    local file=$1 n=$2 big=$3 inflight=$4 i sep=''
    {
        printf '{"providers": {"gemini": {"keys": ['
        for i in $(seq 1 "$n"); do
            printf '%s{"id": "key%d", "api_key": "env:FS_KEY_%d"}' "$sep" "$i" "$i"
            sep=,
        done
        printf ']}}, "max_inflight": %d' "$inflight"
        if [ "$big" = 1 ]; then
            printf ', "models": {'
            printf '"gemini-3-flash-preview": {"rpm": null, "tpm": null, "rpd": null},'
            printf '"gemini-2.5-flash": {"rpm": null, "tpm": null, "rpd": null},'
            printf '"gemini-3.1-flash-lite-preview": {"rpm": null, "tpm": null, "rpd": null},'
            printf '"gemma-3-27b-it": {"rpm": null, "tpm": null, "rpd": null}}'
        fi
        printf '}\n'
    } >"$file"
    for i in $(seq 1 "$n"); do
        export "FS_KEY_$i=$(printf 'FAKE-KEY-%04d' "$i")"
    done
}

fs_cleanup() {
    fs_umount >/dev/null 2>&1
    emu_stop
    if [ -n "${FS_TMP:-}" ] && [ -z "${FS_KEEP:-}" ]; then
        rm -rf "$FS_TMP"
    fi
}

# fs_setup [--keys N] [--big] [--inflight N] [EMULATOR ARGS...]
fs_setup() {
    local n=2 big=0 inflight=1
    while [ $# -gt 0 ]; do
        case $1 in
            --keys) n=$2; shift 2 ;;
            --big) big=1; shift ;;
            --inflight) inflight=$2; shift 2 ;;
            *) break ;;
        esac
    done
    FS_T0=$(date +%s.%N)
    [ -x "$GEMINI_POOL" ] || fs_skip "no gemini-pool binary at $GEMINI_POOL"
    [ -c /dev/fuse ] || fs_skip "/dev/fuse is missing (no FUSE in this machine)"
    if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
        fs_skip "/dev/fuse is not accessible to $(id -un)"
    fi
    command -v fusermount3 >/dev/null || [ "$(id -u)" -eq 0 ] || fs_skip "fusermount3 is not installed"
    FS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/gkp-fs.XXXXXX")
    MNT=$FS_TMP/mnt
    FS_STATE=$FS_TMP/state/state.db
    FS_SPOOL=$FS_TMP/state/spool
    FS_LOG=$FS_TMP/daemon.log
    FS_KEYS_JSON=$FS_TMP/keys.json
    FS_EMU_KEYS=$FS_TMP/emu-keys.json
    mkdir -p "$MNT"
    mkdir -m 700 "$FS_TMP/state"  # it holds prompts: nobody else may list it
    trap fs_cleanup EXIT
    fs_write_emu_keys "$FS_EMU_KEYS" "$n" "$big"
    fs_write_pool_keys "$FS_KEYS_JSON" "$n" "$big" "$inflight"
    emu_start "$FS_EMU_KEYS" "$@" || { echo "cannot start the emulator" >&2; exit 1; }
    export GOOGLE_GEMINI_BASE_URL=$EMU_URL
    export GEMINI_POOL_CONFIG=$FS_KEYS_JSON GEMINI_POOL_STATE=$FS_STATE
    unset GEMINI_POOL_DEBUG
    # Sanitizer builds: a report fails the daemon loudly, and the log says why.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
}

# fs_mount [ARGS...] - mounts in the foreground (in the background of this shell)
# and waits until the mount answers.
fs_mount() {
    FS_MOUNT_ARGS=("$@")
    "$GEMINI_POOL" mount "$MNT" -f --config "$FS_KEYS_JSON" --state "$FS_STATE" "$@" \
        >>"$FS_LOG" 2>&1 &
    FS_PID=$!
    local i
    for i in $(seq 1 2400); do
        if [ -f "$MNT/README" ]; then
            return 0
        fi
        if ! kill -0 "$FS_PID" 2>/dev/null; then
            wait "$FS_PID" 2>/dev/null
            FS_PID=
            # libfuse's and fusermount3's own words for "not allowed here".
            if grep -qE '^(gemini-pool: [a-z]+: )?(fuse|fusermount3?): .*(Permission denied|Operation not permitted|not permitted|device not found)' "$FS_LOG"; then
                tail -5 "$FS_LOG"
                fs_skip "mounting is not permitted here"
            fi
            echo "the daemon exited:" >&2
            cat "$FS_LOG" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "the mount did not come up within 120 s:" >&2
    cat "$FS_LOG" >&2
    exit 1
}

# fs_umount - unmounts (lazily if it must) and waits for the daemon to exit.
# Returns the daemon's exit status (0 = clean).
fs_umount() {
    local rc=0 i
    if mountpoint -q "$MNT" 2>/dev/null || grep -q " $MNT " /proc/mounts; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null ||
            umount -l "$MNT" 2>/dev/null
    fi
    if [ -n "$FS_PID" ]; then
        for i in $(seq 1 2400); do
            kill -0 "$FS_PID" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$FS_PID" 2>/dev/null; then
            echo "the daemon did not exit after the unmount; killing it" >&2
            kill -KILL "$FS_PID" 2>/dev/null
            rc=1
        fi
        wait "$FS_PID" 2>/dev/null || rc=$?
        FS_PID=
    fi
    return $rc
}

# fs_metric NAME - the value of one line of the mount's status/metrics (0 if absent).
fs_metric() {
    awk -v n="$1" '$1 == n {v = $2} END {print int(v)}' "$MNT/status/metrics" 2>/dev/null
}

# fs_wait_metric NAME MIN [LIMIT_S] - waits until status/metrics shows NAME >= MIN;
# non-zero (printing the last value) after LIMIT_S seconds, a hang guard (120).
fs_wait_metric() {
    local name=$1 min=$2 deadline v
    deadline=$(($(date +%s) + ${3:-120}))
    while :; do
        v=$(fs_metric "$name")
        [ "${v:-0}" -ge "$min" ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "$name is ${v:-0} after ${3:-120} s (waited for $min)" >&2
            return 1
        fi
        sleep 0.1
    done
}

# fs_kill9 - kills the daemon the hard way and clears the dead mount.
fs_kill9() {
    if [ -n "$FS_PID" ]; then
        kill -KILL "$FS_PID" 2>/dev/null
        wait "$FS_PID" 2>/dev/null
        FS_PID=
    fi
    fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    return 0
}

# The first 12 hex digits of sha256 of a file, as the emulator's answers say it.
sha12() {
    sha256sum "$1" | cut -c1-12
}

# answer_matches PROMPTFILE OUTFILE - the answer is the emulator's for this prompt.
answer_matches() {
    local sha
    sha=$(sha12 "$1")
    grep -q "sha=$sha\]" "$2"
}

# ms COMMAND... - runs a command and prints how long it took in ms (to stdout).
ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

# Reports the daemon's sanitizer findings, if any.
fs_check_log() {
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$FS_LOG" 2>/dev/null; then
        fail "sanitizer reports in the daemon's log:"
        grep -E -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$FS_LOG" | head -60
    fi
}

fs_done() {
    local rc
    fs_umount
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "the daemon exited with status $rc"
        tail -30 "$FS_LOG"
    fi
    fs_check_log
    say "$FS_PASSED passed, $FS_FAILED failed"
    if [ "$FS_FAILED" -ne 0 ]; then
        echo "--- daemon log (tail) ---"
        tail -40 "$FS_LOG"
        exit 1
    fi
    exit 0
}
