#!/bin/sh
# Seeds corpus/parse from the real fixtures: the first 16 KiB of each backup read head-only
# (mode byte 1) and the whole of each small log backup read with its tail (mode byte 0).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../../../tests/fixtures/bak"
out="$here/corpus/parse"
mkdir -p "$out"
for f in "$fixtures"/*.bak "$fixtures"/*.trn; do
    name=$(basename "$f")
    { printf '\001'; head -c 16384 "$f"; } > "$out/head-$name"
    if [ "$(wc -c < "$f")" -le 131072 ]; then
        { printf '\000'; cat "$f"; } > "$out/whole-$name"
    fi
done
