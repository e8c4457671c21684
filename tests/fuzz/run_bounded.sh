#!/bin/sh
# tests/fuzz/run_bounded.sh: build the libFuzzer target fuzz_safetensors with
# clang (ASan + UBSan) and run it for a bounded time; CI calls this.
#
#   tests/fuzz/run_bounded.sh [SECONDS] [extra libFuzzer flags...]
#
# SECONDS defaults to 60. Environment: CC (default clang), EMA_FUZZ_BUILD
# (build directory, default build-fuzz in the repository root). New inputs go
# to a scratch corpus under the build directory; the seeds in
# tests/fuzz/corpus are read, never modified. A crash leaves its input in
# $EMA_FUZZ_BUILD/fuzz-artifacts/ and makes this script fail: copy that file
# into tests/fuzz/corpus/ once fixed, so the replay test keeps it.
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${EMA_FUZZ_BUILD:-$root/build-fuzz}
cc=${CC:-clang}

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DEMA_FUZZ=ON \
  -DEMA_BUILD_TOOLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_safetensors -j "$(nproc 2>/dev/null || echo 2)"

# ---- fuzz_tool_cli: the ema tool's argument and file handling ------------
# (added by the tool's owner; built by tests/tool/tests.cmake; seeds in
# tests/fuzz/corpus_tool, written by make_tool_corpus.py). Runs first, for
# the same SECONDS; a crash or a broken property fails the script.
cmake --build "$build" --target fuzz_tool_cli -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p "$build/fuzz-corpus-tool" "$build/fuzz-artifacts"
"$build/tests/fuzz_tool_cli" \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -artifact_prefix="$build/fuzz-artifacts/" -print_final_stats=1 \
  "$build/fuzz-corpus-tool" "$here/corpus_tool"
# ---- end of fuzz_tool_cli -------------------------------------------------

work="$build/fuzz-corpus"
mkdir -p "$work" "$build/fuzz-artifacts"
exec "$build/tests/fuzz_safetensors" \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -dict="$here/safetensors.dict" -artifact_prefix="$build/fuzz-artifacts/" \
  -print_final_stats=1 "$@" "$work" "$here/corpus"
