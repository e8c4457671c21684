#!/bin/sh
# tests/fuzz/run_bounded.sh: build the libFuzzer targets with clang (ASan +
# UBSan; the library itself built with -fsanitize=fuzzer-no-link so that the
# checkpoint targets see its coverage) and run each for a bounded time; make
# test and CI call this.
#
#   tests/fuzz/run_bounded.sh [SECONDS] [extra libFuzzer flags...]
#
# SECONDS (default 75) is the total: fuzz_safetensors gets 2/6 of it, and
# fuzz_load_buffer, fuzz_load_file, fuzz_file and fuzz_tool_cli (the ema
# tool's arguments and files, seeds in tests/fuzz/corpus_tool) 1/6 each. Environment: CC
# (default clang), EMA_FUZZ_BUILD (build directory, default build-fuzz in the
# repository root), EMA_FUZZ_TARGETS (a subset, space-separated). New inputs go
# to scratch corpora under the build directory; the seeds in tests/fuzz/corpus
# and tests/fuzz/corpus_ckpt are read, never modified. A crash leaves its input
# in $EMA_FUZZ_BUILD/fuzz-artifacts/ and makes this script fail: copy that file
# into the target's seed corpus once fixed, so the replay test keeps it.
set -eu
secs=${1:-75}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${EMA_FUZZ_BUILD:-$root/build-fuzz}
cc=${CC:-clang}
targets=${EMA_FUZZ_TARGETS:-fuzz_safetensors fuzz_load_buffer fuzz_load_file fuzz_file fuzz_tool_cli}

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DEMA_FUZZ=ON \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
  -DEMA_BUILD_TOOLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" --target $targets -j "$(nproc 2>/dev/null || echo 2)"

mkdir -p "$build/fuzz-artifacts"
for t in $targets; do
  case $t in
    fuzz_safetensors) share=$((secs * 2 / 6)); seeds="$here/corpus"; extra="-dict=$here/safetensors.dict" ;;
    fuzz_tool_cli) share=$((secs / 6)); seeds="$here/corpus_tool"; extra="" ;;
    *) share=$((secs / 6)); seeds="$here/corpus_ckpt"; extra="" ;;
  esac
  [ "$share" -ge 1 ] || share=1
  work="$build/fuzz-corpus-$t"
  [ "$t" = fuzz_safetensors ] && work="$build/fuzz-corpus"
  mkdir -p "$work"
  echo "== $t: $share s"
  # shellcheck disable=SC2086
  "$build/tests/$t" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    $extra -artifact_prefix="$build/fuzz-artifacts/$t-" -print_final_stats=1 "$@" "$work" "$seeds"
done
