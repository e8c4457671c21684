#!/bin/sh
# bench/run_sharded.sh [BUILD] [DIR]: bench_sharded at 1, 2 and 4 MPI ranks
# (GPT-2-small-sized EMA; the unsharded ema_save/ema_load in the 1-rank run),
# then the peak memory of `ema consolidate` (-o and --hf) on the 4-rank
# checkpoint. Needs about 4 GB free in DIR (default /tmp/ema_bench_sharded).
set -eu
B=${1:-build}
D=${2:-/tmp/ema_bench_sharded}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf "$D"
mkdir -p "$D"
uname -m; nproc; uptime
for n in 1 2 4; do
  rm -rf "$D/sharded"
  mpirun -np $n --oversubscribe "$B/bench_sharded" "$D" --reps 3
done
/usr/bin/time -v "$B/ema" consolidate "$D/sharded" -o "$D/cons.safetensors" 2>&1 | grep -E "wrote|Maximum resident|Elapsed"
/usr/bin/time -v "$B/ema" consolidate "$D/sharded" --hf "$D/hf" 2>&1 | grep -E "wrote|Maximum resident|Elapsed"
uptime
rm -rf "$D"
