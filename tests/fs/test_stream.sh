#!/usr/bin/env bash
# Reading while the answer streams: first bytes before the end, a retry that
# changed the answer is never joined to what a reader saw, O_NONBLOCK and poll(),
# and Ctrl-C (SIGINT) on a blocked cat returns while its answer is still held.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 4
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

# The emulator holds answers at gates (fault fields hold / hold_stream) until this
# test opens them: what a reader sees is checked against what has been sent, never
# against a clock.  Every wait has a generous deadline, a hang guard only.
GUARD=${FS_HANG_GUARD_S:-120}
export MNT GUARD
py() {
    PYTHONPATH=$EMU_ROOT/scripts python3 "$@"
}
# held NAME - how many requests wait at the emulator's gate NAME (0 once it is open)
held() {
    emu_ctl GET gates | py -c 'import json, sys
g = json.load(sys.stdin)["gates"].get(sys.argv[1], {"open": True})
print(0 if g["open"] else g["waiting"])' "$1"
}

# 1. A retry with a different answer.  Key 1 (used first: least recently used, then
# config order) breaks every stream after its first chunk; the emulator holds that
# stream until the reader has read the first chunk.  Key 2 answers.
emu_ctl POST faults '{"scope":"key","name":"k1","p_midstream":1,"midstream_form":"data","hold_stream":"retry"}' >/dev/null
echo "a question whose first attempt breaks" >"$D/retry"
py - "$D/retry.out" >"$W/retry.result" <<'PY'
import errno, os, sys
from fake_gemini import ctlclient
url, token = os.environ["EMU_URL"], os.environ["EMU_TOKEN"]
fd = os.open(sys.argv[1], os.O_RDONLY)
got = b""
try:
    while True:
        b = os.read(fd, 65536)
        if not b:
            print("EOF after %d bytes" % len(got))
            break
        if not got:  # the failed attempt's first text is read: let its error come
            ctlclient.set_gate(url, token, "retry", True)
        got += b
except OSError as e:
    print("%s after %d bytes: %s" % (errno.errorcode[e.errno], len(got), got[:80]))
PY
say "first reader: $(cat "$W/retry.result")"
check "a reader that saw the failed attempt's text gets EIO, not two answers joined" \
    grep -q '^EIO after [1-9]' "$W/retry.result"
timeout "$GUARD" cat "$D/retry.out" >"$W/retry.out"
check "a new reader gets the retry's whole answer" grep -q 'key=k2 ' "$W/retry.out"
check "... and only it" test "$(grep -c 'fake-gemini' "$W/retry.out")" -eq 1
printf 'a question whose first attempt breaks\n' >"$W/retry.prompt"
check "... the answer to the prompt" answer_matches "$W/retry.prompt" "$W/retry.out"
emu_ctl POST faults '{"scope":"key","name":"k1","clear":true}' >/dev/null

# 2. Streaming: the emulator holds the stream after its first chunk, so the first
# bytes a reader gets come before the answer is complete.
emu_ctl POST faults '{"scope":"global","hold_stream":"slow"}' >/dev/null
echo "stream me slowly" >"$D/slow"
py - "$D/slow.out" "$D/slow.json" >"$W/slow.result" 2>"$W/slow.meta" <<'PY'
import json, os, sys
from fake_gemini import ctlclient
url, token = os.environ["EMU_URL"], os.environ["EMU_TOKEN"]
first = None
data = b""
with open(sys.argv[1], "rb", buffering=0) as f:
    while True:
        b = f.read(65536)
        if not b:
            break
        if first is None:
            first = len(b)
            # The rest of the answer is still held at the emulator.
            gate = ctlclient.gate(url, token, "slow")
            print("held %d" % (0 if gate["open"] else gate["waiting"]))
            # While the answer streams in, the metadata names the key serving it.
            meta = json.load(open(sys.argv[2]))
            print(meta["status"], meta["key_id"], file=sys.stderr)
            ctlclient.set_gate(url, token, "slow", True)
        data += b
print("first %d whole %d" % (first or 0, len(data)))
PY
say "stream: $(tr '\n' ' ' <"$W/slow.result")"
check "cat prints the first bytes before the answer completes" \
    bash -c "grep -qx 'held 1' '$W/slow.result' && awk '/^first/ {exit !(\$2 > 0 && \$4 > \$2)}' '$W/slow.result'"
check "while it streams, .json says running and names its key ($(cat "$W/slow.meta"))" \
    grep -qE '^running k[0-9]+$|^running [a-z0-9-]+$' "$W/slow.meta"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null

# 3. O_NONBLOCK and poll(): nothing ready -> EAGAIN; poll wakes when text arrives.
# The answer is held before its headers until the reader has seen "nothing ready".
emu_ctl POST faults '{"scope":"global","hold":"poll"}' >/dev/null
echo "poll for me" >"$D/polled"
py - "$D/polled.out" >"$W/poll.result" <<'PY'
import errno, os, select, sys
from fake_gemini import ctlclient
url, token = os.environ["EMU_URL"], os.environ["EMU_TOKEN"]
guard_ms = int(os.environ["GUARD"]) * 1000
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 100)
    print("read-ready")
except OSError as e:
    print(errno.errorcode[e.errno])
p = select.poll()
p.register(fd, select.POLLIN)
before = "in" if p.poll(0) else "none"
ctlclient.set_gate(url, token, "poll", True)
events = p.poll(guard_ms)
data = b""
while True:
    try:
        b = os.read(fd, 65536)
    except BlockingIOError:
        if not p.poll(guard_ms):
            print("no more text within the hang guard")
            break
        continue
    if not b:
        break
    data += b
print("poll before %s after %s %d" % (before, "in" if events else "timeout", len(data)))
PY
say "O_NONBLOCK/poll: $(tr '\n' ' ' <"$W/poll.result")"
check "O_NONBLOCK read with nothing ready is EAGAIN" test "$(head -1 "$W/poll.result")" = EAGAIN
check "poll() wakes up when the text arrives, and the text is read to EOF" \
    grep -qE '^poll before none after in [1-9]' "$W/poll.result"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null

# 4. Signals on blocked readers: the answer is held at the emulator, so a reader
# that returns was interrupted, not answered.
emu_ctl POST faults '{"scope":"global","hold":"intr"}' >/dev/null
echo "never mind" >"$D/intr"
py - "$D/intr.out" >"$W/intr.result" <<'PY'
import os, signal, subprocess, sys, time
from fake_gemini import ctlclient
url, token = os.environ["EMU_URL"], os.environ["EMU_TOKEN"]
guard = int(os.environ["GUARD"])
metrics = os.path.join(os.environ["MNT"], "status/metrics")

def blocked():
    with open(metrics) as f:
        for line in f:
            if line.startswith("gemini_pool_blocked_reads "):
                return int(float(line.split()[1]))
    return 0

def wait_blocked(n):
    deadline = time.monotonic() + guard
    while blocked() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return blocked()

def default_signals():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

def start():
    return subprocess.Popen(["cat", sys.argv[1]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=default_signals)

def finish(procs):
    codes = []
    for p in procs:
        try:
            codes.append(str(p.wait(guard)))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append("hung")
    return codes

# Ctrl-C (SIGINT) on one blocked cat.
cat = start()
print("blocked1 %d" % wait_blocked(1))
cat.send_signal(signal.SIGINT)
print("sigint %s" % finish([cat])[0])
# Several at once, killed by SIGTERM.
cats = [start() for _ in range(5)]
print("blocked5 %d" % wait_blocked(5))
for c in cats:
    c.send_signal(signal.SIGTERM)
print("sigterm %s" % " ".join(finish(cats)))
gate = ctlclient.gate(url, token, "intr")
print("still held %d" % (0 if gate["open"] else gate["waiting"]))
PY
say "signals: $(tr '\n' ' ' <"$W/intr.result")"
check "SIGINT on a blocked cat interrupts it" \
    bash -c "grep -qE '^blocked1 [1-9]' '$W/intr.result' && grep -qx 'sigint -2' '$W/intr.result'"
check "five blocked readers interrupted together by SIGTERM" \
    bash -c "grep -qE '^blocked5 ([5-9]|[1-9][0-9]+)$' '$W/intr.result' && grep -qx 'sigterm -15 -15 -15 -15 -15' '$W/intr.result'"
check "... while their answer was still held (they were not answered)" \
    grep -qx 'still held 1' "$W/intr.result"

# 5. Writing the same name again cancels the running job: its reader gets EIO while
# the first answer is still held, and the name's new answer replaces it.  rm cancels too.
emu_ctl POST faults '{"scope":"global","hold":"again"}' >/dev/null
echo "first version" >"$D/again"
( timeout "$GUARD" cat "$D/again.out" >/dev/null 2>"$W/again.err"; echo $? >"$W/again.rc" ) &
reader=$!
fs_wait_metric gemini_pool_blocked_reads 1 "$GUARD"
echo "second version" >"$D/again"
wait "$reader"
n=$(held again)
check "rewriting a running job's prompt fails its reader before any answer came (held: $n)" \
    bash -c "[ \$(cat '$W/again.rc') -ne 0 ] && grep -q 'Input/output error' '$W/again.err' && [ '$n' -ge 1 ]"
emu_gate_open again
timeout "$GUARD" cat "$D/again.out" >"$W/again.out"
printf 'second version\n' >"$W/again.prompt"
check "... and the new answer replaces the old one" answer_matches "$W/again.prompt" "$W/again.out"
emu_ctl POST faults '{"scope":"global","hold":"gone"}' >/dev/null
echo "to be removed" >"$D/gone"
( timeout "$GUARD" cat "$D/gone.out" >/dev/null 2>&1; echo $? >"$W/gone.rc" ) &
reader=$!
fs_wait_metric gemini_pool_blocked_reads 1 "$GUARD"
rm "$D/gone"
wait "$reader"
n=$(held gone)
check "rm of a running job fails its reader before any answer came (held: $n)" \
    bash -c "rc=\$(cat '$W/gone.rc'); [ \$rc -ne 0 ] && [ \$rc -ne 124 ] && [ '$n' -ge 1 ]"
check "... and its outputs are gone" bash -c "[ ! -e '$D/gone.out' ] && [ ! -e '$D/gone.json' ]"
check "... and it is no longer a job" bash -c "! grep -q '^flash/gone\s' '$MNT/status/jobs'"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
emu_gate_open gone
emu_gate_open intr
echo "still alive?" >"$D/after"
check "the daemon stays healthy: a new job is answered" \
    bash -c "timeout $GUARD cat '$D/after.out' | grep -q 'sha='"
check "the interrupted job itself still completes" \
    bash -c "timeout $GUARD cat '$D/intr.out' | grep -q 'sha='"
fs_done
