#!/bin/sh
# bench/machine.sh [repo]: print the machine block that bench/RESULTS.md
# sections start with (CPU model and SIMD flags from lscpu, memory, kernel,
# compiler, commit, load), for run.sh and ratio.sh.
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
echo "== machine"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu:        $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)" \
  "(vendor $(lscpu | sed -n 's/^Vendor ID: *//p' | head -n 1)," \
  "family $(lscpu | sed -n 's/^CPU family: *//p' | head -n 1)," \
  "model $(lscpu | sed -n 's/^Model: *//p' | head -n 1))"
echo "simd flags: $(lscpu | sed -n 's/^Flags: *//p' | tr ' ' '\n' | grep -E '^(avx|f16c|fma|amx)' | tr '\n' ' ')"
echo "nproc:      $(nproc)"
echo "caches:     L2 $(lscpu | sed -n 's/^L2 cache: *//p'), L3 $(lscpu | sed -n 's/^L3 cache: *//p')"
echo "memory:     $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "hypervisor: $(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -n 1)"
echo "kernel:     $(uname -sr)"
echo "compiler:   $(${CC:-cc} --version | head -n 1)"
echo "THP:        $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo n/a)"
echo "commit:     $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo n/a)" \
  "($(git -C "$root" status --porcelain -- src include cmake CMakeLists.txt 2>/dev/null | wc -l)" \
  "changed/untracked paths under src include cmake)"
echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
echo
