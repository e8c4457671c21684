#!/bin/sh
# tests/dist/consolidate_cli.sh EMA DIST_FIXTURE: `ema consolidate`.
set -u
ema=$1
fixture=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
"$fixture" "$tmp" || { echo "FAIL: fixture"; exit 1; }
"$ema" consolidate "$tmp/ck" -o "$tmp/out.safetensors" >"$tmp/log" 2>&1
check "consolidate -o exits 0" '[ $? -eq 0 ]'
check "-o writes what ema_save writes, byte for byte" 'cmp -s "$tmp/out.safetensors" "$tmp/ref.safetensors"'
"$ema" consolidate "$tmp/ck" --hf "$tmp/hf1" >/dev/null 2>&1
check "--hf: one model.safetensors and no index" '[ -f "$tmp/hf1/model.safetensors" ] && [ ! -e "$tmp/hf1/model.safetensors.index.json" ]'
"$ema" consolidate "$tmp/ck" --hf "$tmp/hf" --max-shard-size 200B >/dev/null 2>&1
check "--hf --max-shard-size 200B: several shards" '[ -f "$tmp/hf/model-00001-of-0000$(ls "$tmp/hf" | grep -c "^model-").safetensors" ]'
check "--hf: the index has total_size and weight_map" 'grep -q "\"total_size\": " "$tmp/hf/model.safetensors.index.json" && grep -q "\"weight_map\"" "$tmp/hf/model.safetensors.index.json"'
check "--hf: the index maps every weight" '[ $(grep -c "model-0000" "$tmp/hf/model.safetensors.index.json") -eq 7 ]'
"$ema" consolidate "$tmp/ck" >/dev/null 2>&1
check "no output: usage error (2)" '[ $? -eq 2 ]'
"$ema" consolidate "$tmp/ck" -o x --hf y >/dev/null 2>&1
check "both outputs: usage error (2)" '[ $? -eq 2 ]'
"$ema" consolidate "$tmp/ck" --hf y --max-shard-size 5XB >/dev/null 2>&1
check "bad size: usage error (2)" '[ $? -eq 2 ]'
"$ema" consolidate "$tmp/nothing" -o "$tmp/n.safetensors" >/dev/null 2>"$tmp/err"
check "missing checkpoint: failure (1) with a message" '[ $? -eq 1 ] && grep -q manifest.json "$tmp/err" && [ ! -e "$tmp/n.safetensors" ]'
sed 's/"world_size": 3/"world_size": 2/' "$tmp/ck/manifest.json" >"$tmp/m" && cp "$tmp/m" "$tmp/ck/manifest.json"
"$ema" consolidate "$tmp/ck" -o "$tmp/out.safetensors" >/dev/null 2>&1
check "hostile manifest: failure (1), previous output untouched" '[ $? -eq 1 ] && cmp -s "$tmp/out.safetensors" "$tmp/ref.safetensors"'
exit $fail
