#!/usr/bin/env bash
# Records seed inputs from the emulator (scripts/fake-gemini) into
# tests/fuzz/corpus/: SSE streams (sse/), whole answers, array streams and
# single events (response/), and error bodies with their status
# (classify/: two bytes of status, little-endian, then the body).  Run it
# again when the emulator's output format changes; the files are committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
corpus=$root/tests/fuzz/corpus
tmp=$(mktemp -d)
emu_pid=
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/keys.json" <<'JSON'
{ "projects": { "p1": { "models": { "gemini-2.5-flash": {"rpm": 1},
                                    "gemini-2.5-flash-image": {},
                                    "gemini-3-flash-preview": {"rpm": 1000, "rpd": 100000} } } },
  "keys": [ { "key": "FAKE-KEY-0001", "name": "k1", "project": "p1" },
            { "key": "FAKE-KEY-0002", "name": "leaked", "state": "leaked" },
            { "key": "FAKE-KEY-0003", "name": "billing", "state": "billing" } ] }
JSON
"$root/scripts/fake-gemini" --keys "$tmp/keys.json" --port-file "$tmp/port" --quiet &
emu_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
base=http://127.0.0.1:$(cat "$tmp/port")
token=$(cat "$tmp/port.token")

# call KEY MODEL ACTION BODY OUT: the body of the answer in OUT, the status on stdout.
call() {
  curl -s -o "$5" -w '%{http_code}' -H "x-goog-api-key: $1" -H 'Content-Type: application/json' \
    -X POST --data "$4" "$base/v1beta/models/$2:$3"
}
faults() {
  curl -s -o /dev/null -H 'Content-Type: application/json' -H "X-Emu-Token: $token" \
    -X POST --data "$1" "$base/_emu/faults"
}
# classify_seed STATUS FILE NAME: stores status + body as a classifier seed.
classify_seed() {
  python3 -c 'import sys; s=int(sys.argv[1]); sys.stdout.buffer.write(bytes([s & 255, s >> 8]) + open(sys.argv[2], "rb").read())' \
    "$1" "$2" >"$corpus/classify/emu-$3"
}

hello='{"contents":[{"role":"user","parts":[{"text":"Say hello in two lines"}]}]}'
think='{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}],"generationConfig":{"thinkingConfig":{"thinkingLevel":"LOW","includeThoughts":true}}}'
image='{"contents":[{"parts":[{"text":"a lighthouse at dusk"}]}],"generationConfig":{"responseModalities":["TEXT","IMAGE"]}}'

call FAKE-KEY-0001 gemini-2.5-flash 'streamGenerateContent?alt=sse' "$hello" "$corpus/sse/emu-text.sse" >/dev/null
call FAKE-KEY-0001 gemini-3-flash-preview 'streamGenerateContent?alt=sse' "$think" "$corpus/sse/emu-thoughts.sse" >/dev/null
call FAKE-KEY-0001 gemini-3-flash-preview generateContent "$think" "$corpus/response/emu-thoughts.json" >/dev/null
call FAKE-KEY-0001 gemini-3-flash-preview streamGenerateContent "$hello" "$corpus/response/emu-array.json" >/dev/null
call FAKE-KEY-0001 gemini-2.5-flash-image generateContent "$image" "$corpus/response/emu-image.json" >/dev/null
# The second request in a minute on rpm 1: a per-minute 429.
s=$(call FAKE-KEY-0001 gemini-2.5-flash generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" rpm-429.json
s=$(call FAKE-KEY-0001 gemini-3.1-pro-preview generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" limit-zero.json
s=$(call FAKE-KEY-0002 gemini-2.5-flash generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" leaked.json
s=$(call FAKE-KEY-0003 gemini-2.5-flash generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" billing.json
s=$(call FAKE-KEY-9999 gemini-2.5-flash generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" invalid-key.json
s=$(call FAKE-KEY-0001 no-such-model generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" not-found.json

# Faults on the key's next requests: errors inside a 200 stream (both
# forms), a cut stream, an invalid event, an overloaded model.
for form in bare data; do
  faults "{\"scope\":\"global\",\"p_midstream\":1,\"midstream_form\":\"$form\"}"
  call FAKE-KEY-0001 gemini-3-flash-preview 'streamGenerateContent?alt=sse' "$hello" \
    "$corpus/sse/emu-midstream-$form.sse" >/dev/null
done
faults '{"scope":"global","clear":true}'
faults '{"scope":"global","p_truncate":1}'
call FAKE-KEY-0001 gemini-3-flash-preview 'streamGenerateContent?alt=sse' "$hello" "$corpus/sse/emu-truncated.sse" >/dev/null || true
faults '{"scope":"global","clear":true}'
faults '{"scope":"global","p_malformed":1}'
call FAKE-KEY-0001 gemini-3-flash-preview 'streamGenerateContent?alt=sse' "$hello" "$corpus/sse/emu-malformed.sse" >/dev/null
faults '{"scope":"global","clear":true}'
faults '{"scope":"global","p503":1}'
s=$(call FAKE-KEY-0001 gemini-3-flash-preview generateContent "$hello" "$tmp/body")
classify_seed "$s" "$tmp/body" overloaded.json
faults '{"scope":"global","clear":true}'

# Single events of a stream, as the client hands them to the response parser.
sed -n 's/^data: //p' "$corpus/sse/emu-thoughts.sse" | head -1 >"$corpus/response/emu-event-first.json"
sed -n 's/^data: //p' "$corpus/sse/emu-thoughts.sse" | tail -1 >"$corpus/response/emu-event-last.json"
ls -l "$corpus"/sse/emu-* "$corpus"/response/emu-* "$corpus"/classify/emu-*
