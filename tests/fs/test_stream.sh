#!/usr/bin/env bash
# Reading while the answer streams: first bytes before the end, a retry that
# changed the answer is never joined to what a reader saw, O_NONBLOCK and poll(),
# and Ctrl-C (SIGINT) on a blocked cat returns at once.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 4
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

# 1. A retry with a different answer.  Key 1 (used first: least recently used, then
# config order) breaks every stream after its first chunk, 10 s later (time for a
# reader to start on a heavily loaded machine); key 2 answers.
emu_ctl POST faults '{"scope":"key","name":"k1","p_midstream":1,"midstream_form":"data","chunk_delay_ms":10000}' >/dev/null
echo "a question whose first attempt breaks" >"$D/retry"
python3 - "$D/retry.out" >"$W/retry.result" <<'EOF'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
got = b""
try:
    while True:
        b = os.read(fd, 65536)
        if not b:
            print("EOF after %d bytes" % len(got))
            break
        got += b
except OSError as e:
    print("%s after %d bytes: %s" % (errno.errorcode[e.errno], len(got), got[:80]))
EOF
say "first reader: $(cat "$W/retry.result")"
check "a reader that saw the failed attempt's text gets EIO, not two answers joined" \
    grep -q '^EIO after [1-9]' "$W/retry.result"
timeout 20 cat "$D/retry.out" >"$W/retry.out"
check "a new reader gets the retry's whole answer" grep -q 'key=k2 ' "$W/retry.out"
check "... and only it" test "$(grep -c 'fake-gemini' "$W/retry.out")" -eq 1
printf 'a question whose first attempt breaks\n' >"$W/retry.prompt"
check "... the answer to the prompt" answer_matches "$W/retry.prompt" "$W/retry.out"
emu_ctl POST faults '{"scope":"key","name":"k1","clear":true}' >/dev/null

# 2. Streaming: with 2 s between chunks, the first bytes come before the end
# (judged by what the reads returned, not by a clock).
emu_ctl POST faults '{"scope":"global","chunk_delay_ms":2000}' >/dev/null
echo "stream me slowly" >"$D/slow"
python3 - "$D/slow.out" "$D/slow.json" >"$W/slow.timing" 2>"$W/slow.meta" <<'EOF'
import json, sys, time
t0 = time.monotonic()
first = None
data = b""
with open(sys.argv[1], "rb", buffering=0) as f:
    while True:
        b = f.read(65536)
        if not b:
            break
        if first is None:
            first = time.monotonic() - t0
            first_len = len(b)
            # While the answer streams in, the metadata names the key serving it.
            meta = json.load(open(sys.argv[2]))
            print(meta["status"], meta["key_id"], file=sys.stderr)
        data += b
total = time.monotonic() - t0
print("%.3f %.3f %d %d" % (first, total, len(data), first_len))
EOF
read -r first total bytes first_len <"$W/slow.timing"
say "first bytes after ${first}s, whole answer after ${total}s ($bytes bytes, $first_len in the first read)"
check "cat gets the first bytes before the answer completes" \
    test "$first_len" -gt 0 -a "$first_len" -lt "$bytes"
check "while it streams, .json says running and names its key ($(cat "$W/slow.meta"))" \
    grep -qE '^running k[0-9]+$|^running [a-z0-9-]+$' "$W/slow.meta"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null

# 3. O_NONBLOCK and poll(): nothing ready -> EAGAIN; poll wakes when text arrives.
emu_ctl POST faults '{"scope":"global","latency_ms":8000}' >/dev/null
echo "poll for me" >"$D/polled"
python3 - "$D/polled.out" >"$W/poll.result" <<'EOF'
import errno, os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 100)
    print("read-ready")
except OSError as e:
    print(errno.errorcode[e.errno])
p = select.poll()
p.register(fd, select.POLLIN)
t0 = time.monotonic()
events = p.poll(60000)  # a hang guard
waited = time.monotonic() - t0
data = b""
while True:
    try:
        b = os.read(fd, 65536)
    except BlockingIOError:
        p.poll(60000)
        continue
    if not b:
        break
    data += b
print("poll %s %.2f %d" % ("in" if events else "timeout", waited, len(data)))
EOF
say "O_NONBLOCK/poll: $(tr '\n' ' ' <"$W/poll.result")"
check "O_NONBLOCK read with nothing ready is EAGAIN" test "$(head -1 "$W/poll.result")" = EAGAIN
check "poll() wakes up when the text arrives, and the text is read to EOF" \
    grep -qE '^poll in [0-9.]+ [1-9]' "$W/poll.result"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null

# 4. Ctrl-C on a blocked cat: SIGINT ends the read before the answer comes
# (held back 8 s: a reader that was not interrupted would have it).
emu_ctl POST faults '{"scope":"global","latency_ms":8000}' >/dev/null
echo "never mind" >"$D/intr"
t0=$(date +%s%N)
timeout -s INT -k 60 1 cat "$D/intr.out" >"$W/intr.got" 2>/dev/null
rc=$?
t1=$(date +%s%N)
say "timeout -s INT 1 cat: exit $rc after $(((t1 - t0) / 1000000)) ms"
check "SIGINT ends a blocked cat before its answer (nothing read)" test ! -s "$W/intr.got"
check "... interrupted by SIGINT (exit 124, not killed)" test "$rc" -eq 124
# Several at once, killed by SIGTERM (a background job of a script ignores SIGINT).
readers=()
for i in 1 2 3 4 5; do
    cat "$D/intr.out" >"$W/intr.$i.got" 2>/dev/null &
    readers+=($!)
done
sleep 0.3
kill -TERM "${readers[@]}" 2>/dev/null
left=5
for _ in $(seq 1 600); do  # a hang guard of 60 s
    left=0
    for p in "${readers[@]}"; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
    [ "$left" -eq 0 ] && break
    sleep 0.1
done
wait "${readers[@]}" 2>/dev/null
check "five blocked readers interrupted together by SIGTERM, before the answer" \
    bash -c "[ $left -eq 0 ] && ! [ -s '$W/intr.1.got' ] && ! [ -s '$W/intr.5.got' ] && cat '$W'/intr.?.got | cmp -s - /dev/null"

# 5. Writing the same name again cancels the running job: its reader gets EIO at
# once, and the name's new answer replaces it.  rm cancels too.
echo "first version" >"$D/again"
( timeout 20 cat "$D/again.out" >/dev/null 2>"$W/again.err"; echo $? >"$W/again.rc" ) &
reader=$!
sleep 0.5
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
t0=$(date +%s%N)
echo "second version" >"$D/again"
wait "$reader"
t1=$(date +%s%N)
check "rewriting a running job's prompt fails its reader ($(((t1 - t0) / 1000000)) ms)" \
    bash -c "[ \$(cat '$W/again.rc') -ne 0 ] && grep -q 'Input/output error' '$W/again.err'"
timeout 20 cat "$D/again.out" >"$W/again.out"
printf 'second version\n' >"$W/again.prompt"
check "... and the new answer replaces the old one" answer_matches "$W/again.prompt" "$W/again.out"
emu_ctl POST faults '{"scope":"global","latency_ms":600000}' >/dev/null
echo "to be removed" >"$D/gone"
( timeout 120 cat "$D/gone.out" >/dev/null 2>&1; echo $? >"$W/gone.rc" ) &
reader=$!
sleep 0.5
t0=$(date +%s%N)
rm "$D/gone"
wait "$reader"
t1=$(date +%s%N)
# Its answer is 10 minutes away: the reader ends only because the job went
# (exit 124 would be the hang guard's).
check "rm of a running job fails its reader ($(((t1 - t0) / 1000000)) ms)" \
    bash -c "rc=\$(cat '$W/gone.rc'); [ \$rc -ne 0 ] && [ \$rc -ne 124 ]"
check "... and its outputs are gone" bash -c "[ ! -e '$D/gone.out' ] && [ ! -e '$D/gone.json' ]"
check "... and it is no longer a job" bash -c "! grep -q '^flash/gone\s' '$MNT/status/jobs'"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
echo "still alive?" >"$D/after"
check "the daemon stays healthy: a new job is answered" \
    bash -c "timeout 30 cat '$D/after.out' | grep -q 'sha='"
check "the interrupted job itself still completes" \
    bash -c "timeout 60 cat '$D/intr.out' | grep -q 'sha='"
fs_done
