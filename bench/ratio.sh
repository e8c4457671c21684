#!/bin/sh
# bench/ratio.sh: build libema in Release (build-bench/) and run bench_ratio
# (ema_apply against an in-place loop compiled with -O3 -march=native, 2
# threads, GPT-2 small and 10,000 x 1,000 floats) ROUNDS times for every
# ISA and neighbor, printing the machine, every command and every line, then
# the median over the rounds of each row's ratio and times. Each process
# forces one ISA (EMA_ISA); the two loops of a ratio always ran in the same
# process, rep after rep. On a shared machine the rounds spread the noise:
# publish the medians with the load printed before each round.
#
# usage: bench/ratio.sh [--rounds N] [--isas "avx2 avx512"]
#                       [--neighbors "none omp omp-helper"] [--bin PATH] [--reps N]
#                       [--threads N] [--layouts "gpt2 small"]
#   --bin LABEL=PATH  a bench_ratio built elsewhere (e.g. against an older
#               libema); may be given several times: each round then runs
#               every binary in turn, so that they see the same machine, and
#               the medians are per LABEL. Without --bin: this tree's build.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${EMA_BENCH_BUILD:-$root/build-bench}
rounds=5
isas="avx2 avx512"
neighbors="none omp omp-helper"
bin=
reps=15
threads=2
layouts="gpt2 small"
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift ;;
    --isas) isas=$2; shift ;;
    --neighbors) neighbors=$2; shift ;;
    --bin) bin="$bin $2"; shift ;;
    --reps) reps=$2; shift ;;
    --threads) threads=$2; shift ;;
    --layouts) layouts=$2; shift ;;
    *) echo "usage: $0 [--rounds N] [--isas LIST] [--neighbors LIST] [--bin PATH] [--reps N] [--threads N] [--layouts LIST]" >&2
       exit 2 ;;
  esac
  shift
done

"$root/bench/machine.sh" "$root"
if [ -z "$bin" ]; then
  echo "+ cmake -S $root -B $build -DCMAKE_BUILD_TYPE=Release -DEMA_WERROR=ON"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMA_WERROR=ON >/dev/null
  echo "+ cmake --build $build -j 2 --target bench_ratio"
  cmake --build "$build" -j 2 --target bench_ratio >/dev/null
  bin="this=$build/bench_ratio"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
i=1
while [ "$i" -le "$rounds" ]; do
  for nb in $neighbors; do
    for isa in $isas; do
      for lb in $bin; do
        label=${lb%%=*}
        exe=${lb#*=}
        largs=
        for l in $layouts; do largs="$largs --layout $l"; done
        echo "== round $i/$rounds (load $(cut -d' ' -f1-3 /proc/loadavg)): [$label]" \
          "EMA_ISA=$isa $exe --neighbor $nb --reps $reps --threads $threads$largs"
        # shellcheck disable=SC2086
        EMA_ISA=$isa "$exe" --neighbor "$nb" --reps "$reps" --threads "$threads" $largs | sed "s|^|$label |" | tee -a "$log"
      done
    done
  done
  i=$((i + 1))
done

echo
echo "== medians over $rounds rounds (ratio = in-place loop time / ema_apply time; 1.0 = as fast)"
python3 - "$log" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 11 or f[1] in ("layout", "#"):
        continue
    rows.setdefault((f[0], f[1], f[2], f[3], f[4]), []).append([float(x) for x in f[6:]])
print("%-6s %-6s %-10s %-6s %7s %8s %8s %6s %6s %6s" % ("bin", "layout", "neighbor", "isa", "threads", "ref_ms",
                                                        "ema_ms", "ratio", "min", "max"))
for k in sorted(rows, key=lambda k: (k[2], k[1], k[3], k[0])):
    v = rows[k]
    med = lambda j: statistics.median(x[j] for x in v)
    print("%-6s %-6s %-10s %-6s %7s %8.2f %8.2f %6.3f %6.3f %6.3f" % (k + (med(0), med(1), med(4),
          min(x[4] for x in v), max(x[4] for x in v))))
PY
