#!/usr/bin/env bash
# Shell use exactly as users write it: echo, printf, cat of a big file, cp, tee,
# dd bs=1, >> append, vim -es, sed -i, Python's open().write(); every answer
# must be the one for the prompt as written.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 4
fs_mount -o max_prompt=8M
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

# The answer to D/NAME is the emulator's answer to the bytes in D/NAME.
answered() {
    local name=$1 expect=${2:-}
    timeout 20 cat "$D/$name.out" >"$W/$name.out" || return 1
    if [ -n "$expect" ]; then
        printf '%s' "$expect" >"$W/$name.expect"
    else
        cat "$D/$name" >"$W/$name.expect" || return 1
    fi
    answer_matches "$W/$name.expect" "$W/$name.out"
}

# echo p > d/a; cat d/a.out
echo "what is a pool of keys" >"$D/a"
check "echo > then cat .out finds the job and its answer" answered a $'what is a pool of keys\n'
check "the prompt file reads back" test "$(cat "$D/a")" = "what is a pool of keys"
check "a.json says done" grep -q '"status":[[:space:]]*"done"' "$D/a.json"

# Same name again: a new job replaces the answer.
echo "second question" >"$D/a"
check "writing the same name again replaces the answer" answered a $'second question\n'

# printf without a newline
printf 'no trailing newline' >"$D/p"
check "printf without newline" answered p 'no trailing newline'

# A multi-megabyte prompt through cat (under the 8M limit given with -o max_prompt)
python3 -c "
import sys
line = 'The quick brown fox jumps over the lazy dog. ' * 2
sys.stdout.write(''.join('%06d %s\n' % (i, line) for i in range(30000)))" >"$W/big.txt"
check "big.txt is multi-MB" test "$(stat -c %s "$W/big.txt")" -gt 2000000
cat "$W/big.txt" >"$D/big"
check "cat big.txt > d/b: the prompt arrives whole" cmp -s "$W/big.txt" "$D/big"
check "cat big.txt > d/b: answered for the whole prompt" answered big

# cp, tee, dd bs=1
printf 'copied prompt\n' >"$W/cp-src"
cp "$W/cp-src" "$D/copied"
check "cp" answered copied $'copied prompt\n'
printf 'through tee\n' | tee "$D/teed" >/dev/null
check "tee" answered teed $'through tee\n'
printf 'byte by byte' | dd of="$D/dd1" bs=1 status=none
check "dd bs=1" answered dd1 'byte by byte'

# >> append then close: the whole file is the prompt
echo "first line" >"$D/app"
timeout 20 cat "$D/app.out" >/dev/null
echo "second line" >>"$D/app"
check ">> append submits the whole file" answered app $'first line\nsecond line\n'

# vim -es edits and saves
printf 'color of the sky\n' >"$D/vimmed"
timeout 20 cat "$D/vimmed.out" >/dev/null
if command -v vim >/dev/null; then
    timeout 30 vim -es -N -u NONE -i NONE -c '%s/sky/sea/' -c 'wq' "$D/vimmed" </dev/null
    check "vim -es: the file holds the edit" test "$(cat "$D/vimmed")" = "color of the sea"
    check "vim -es: the saved prompt was submitted" answered vimmed $'color of the sea\n'
    # Vim's scratch files never became jobs.
    check "vim's swap, backup and probe files are not jobs" \
        bash -c "! ls -a '$D' | grep -qE '(\\.swp|~|4913)\\.(out|json)\$'"
else
    say "vim is not installed: vim -es not tested"
fi

# sed -i (writes a temporary sedXXXXXX and renames it over the file)
printf 'one plus one\n' >"$D/sedded"
timeout 20 cat "$D/sedded.out" >/dev/null
sed -i 's/one plus one/two plus two/' "$D/sedded"
check "sed -i: the file holds the edit" test "$(cat "$D/sedded")" = "two plus two"
check "sed -i: the renamed file was submitted" answered sedded $'two plus two\n'
check "sed's temporary did not become a job" bash -c "! ls '$D' | grep -qE '^sed[A-Za-z0-9]{6}\\.out\$'"

# Python's open().write()
python3 -c "open('$D/py', 'w').write('written by python')"
check "python open().write()" answered py 'written by python'

# Scratch files: dot names, ~ names and empty files are stored, never submitted.
echo "hidden" >"$D/.hidden"
echo "backup" >"$D/old~"
: >"$D/empty"
check "scratch files read back" test "$(cat "$D/.hidden")" = hidden
check "scratch and empty files are not submitted" \
    bash -c "[ ! -e '$D/.hidden.out' ] && [ ! -e '$D/old~.out' ] && [ ! -e '$D/empty.out' ]"

# A rename onto a prompt name submits it (as editors save).
printf 'renamed into place\n' >"$D/.tmp-edit"
mv "$D/.tmp-edit" "$D/moved"
check "a file that appears by rename is submitted" answered moved $'renamed into place\n'

# rm cancels and removes the outputs
rm "$D/p"
check "rm removes the prompt and its outputs" \
    bash -c "[ ! -e '$D/p' ] && [ ! -e '$D/p.out' ] && [ ! -e '$D/p.json' ]"

# Other profiles work the same way.
echo "to flash-lite" >"$MNT/flash-lite/x"
timeout 20 cat "$MNT/flash-lite/x.out" >"$W/lite.out"
check "flash-lite answers with its model" grep -q 'model=gemini-3.1-flash-lite-preview' "$W/lite.out"

fs_done
