#!/usr/bin/env bash
# 500 prompts across profiles, submitted and read by `xargs -P 32`: every answer
# is complete, is the answer to its own prompt, and comes from its profile's model.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 4 --big --inflight 8
fs_mount
W=$FS_TMP/work
mkdir -p "$W"
N=${FS_PARALLEL_JOBS:-500}

cat >"$W/one.sh" <<'EOF'
#!/usr/bin/env bash
# one.sh MNT W I - writes prompt I into its profile and reads the answer.
mnt=$1 w=$2 i=$3
profiles=(flash flash-2.5 flash-lite gemma gemini-2.5-flash)
p=${profiles[$((i % 5))]}
printf 'parallel prompt number %d for %s\n' "$i" "$p" >"$w/p$i"
cat "$w/p$i" >"$mnt/$p/job$i" || exit 1
timeout 60 cat "$mnt/$p/job$i.out" >"$w/o$i" || exit 1
echo "$p" >"$w/profile$i"
EOF
chmod +x "$W/one.sh"

t0=$(date +%s%N)
seq 1 "$N" | xargs -P 32 -n 1 "$W/one.sh" "$MNT" "$W"
rc=$?
t1=$(date +%s%N)
say "$N jobs through xargs -P 32 in $(((t1 - t0) / 1000000)) ms"
check "every writer and reader succeeded" test "$rc" -eq 0

declare -A model=([flash]=gemini-3-flash-preview [flash-2.5]=gemini-2.5-flash
                  [flash-lite]=gemini-3.1-flash-lite-preview [gemma]=gemma-3-27b-it
                  [gemini-2.5-flash]=gemini-2.5-flash)
bad=0
for i in $(seq 1 "$N"); do
    p=$(cat "$W/profile$i" 2>/dev/null)
    if [ -z "$p" ] || ! answer_matches "$W/p$i" "$W/o$i" ||
        ! grep -q "model=${model[$p]} " "$W/o$i"; then
        bad=$((bad + 1))
        [ $bad -le 5 ] && say "job $i ($p): wrong or missing answer: $(head -c 200 "$W/o$i" 2>/dev/null)"
    fi
done
check "all $N answers match their prompts and models ($bad wrong)" test $bad -eq 0

lines=$(wc -l <"$MNT/status/jobs")
check "status/jobs lists the $N jobs (has $lines)" test "$lines" -eq "$N"
done_n=$(grep -c $'\tdone\t' "$MNT/status/jobs")
check "all $N are done ($done_n)" test "$done_n" -eq "$N"
fs_done
