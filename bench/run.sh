#!/bin/sh
# bench/run.sh: build libema in Release (build-bench/) and run both
# benchmarks, bench_apply (C, against the in-place triad) and bench_torch.py
# (Debian's PyTorch, through /usr/bin/python3), printing the machine and
# every command first, so that the output can be pasted into bench/RESULTS.md.
#
# usage: bench/run.sh [--quick] [--runs N] [--overhead] [--nice N]
#   --quick     shrunk layouts (a smoke test; its numbers mean nothing)
#   --runs N    run each benchmark N times (default 1), for run-to-run spread
#   --overhead  also time fixed costs (pool fork/join, per-tensor bookkeeping)
#               and pass --probe to bench_torch.py (small tensors' placement)
#   --nice N    run each benchmark in a session of its own whose autogroup
#               has nice N (Linux autogroup scheduling; N < 0 needs root).
#               On a machine shared with other work, plain nice does nothing
#               against processes of other sessions; this does. Say so when
#               you publish numbers taken with it.
# environment: EMA_BENCH_BUILD (build directory, default <repo>/build-bench),
#   PYTHON (default /usr/bin/python3), EMA_ISA (force libema's kernels).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${EMA_BENCH_BUILD:-$root/build-bench}
python=${PYTHON:-/usr/bin/python3}
quick=
overhead=
nice=
runs=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=--quick ;;
    --overhead) overhead=--overhead ;;
    --runs) runs=$2; shift ;;
    --runs=*) runs=${1#--runs=} ;;
    --nice) nice=$2; shift ;;
    --nice=*) nice=${1#--nice=} ;;
    *) echo "usage: $0 [--quick] [--runs N] [--overhead] [--nice N]" >&2; exit 2 ;;
  esac
  shift
done

run() {
  echo "+ $*"
  "$@"
}

# a benchmark command, in its own boosted autogroup when --nice was given
bench() {
  if [ -n "$nice" ]; then
    echo "+ setsid -w sh -c 'echo $nice > /proc/\$\$/autogroup && exec \"\$@\"' sh $*"
    setsid -w sh -c 'echo "$0" > /proc/$$/autogroup && exec "$@"' "$nice" "$@"
  else
    run "$@"
  fi
}

"$root/bench/machine.sh" "$root"

echo "== build"
echo "+ cmake -S $root -B $build -DCMAKE_BUILD_TYPE=Release -DEMA_WERROR=ON"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMA_WERROR=ON >/dev/null
echo "+ cmake --build $build -j $(nproc) --target bench_apply ema_shared"
cmake --build "$build" -j "$(nproc)" --target bench_apply ema_shared >/dev/null
echo

i=1
while [ "$i" -le "$runs" ]; do
  echo "== run $i of $runs: bench_apply (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  bench "$build/bench_apply" $quick $overhead
  echo
  echo "== run $i of $runs: bench_torch.py (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  bench "$python" "$root/bench/bench_torch.py" --lib "$build/libema.so" $quick ${overhead:+--probe}
  echo
  i=$((i + 1))
done
