#!/bin/sh
# tests/dist/mpi_check.sh MPI_DIST MPIEXEC: the sharded EMA under mpirun at
# 1 to 4 ranks, resharding 4 -> 3 -> 1 (and 2), and a rank killed during a
# save. Each mpi_dist run compares its boxes with the unsharded run.
set -u
prog=$1
mpiexec=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Open MPI's own allocations are reported as leaks under ASan (frames in
# libmpi and in its plugins, which suppressions cannot name): leak checking
# of the same code paths is done by test_dist (threads) instead.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
fail=0
run() { # NP ARGS...: expect success
  np=$1; shift
  if ! "$mpiexec" -np "$np" --oversubscribe "$prog" "$@" >"$tmp/out" 2>&1; then
    echo "FAIL: mpirun -np $np mpi_dist $*"; cat "$tmp/out"; fail=1
  else
    echo "ok: mpirun -np $np mpi_dist $*"
  fi
}
for n in 1 2 3 4; do run $n fresh "$tmp/n$n"; done
run 3 resume "$tmp/n4" 5 8 "$tmp/r3"      # 4 -> 3
run 1 resume "$tmp/r3" 8 10 "$tmp/r1"     # 3 -> 1
run 2 resume "$tmp/r1" 10 12              # 1 -> 2
id_before=$(grep checkpoint_id "$tmp/r3/manifest.json")
# A rank killed in the middle of a save over r3 (at its 12th collective
# call: every rank has written its new shard file, none the manifest), and
# one killed early (3rd call) into a fresh dir.
for k in 12 3; do
  dst="$tmp/r3"; [ $k = 3 ] && dst="$tmp/torn"
  if "$mpiexec" -np 3 --oversubscribe "$prog" kill "$tmp/r3" 8 "$dst" $k >"$tmp/out" 2>&1; then
    echo "FAIL: the killed save exited 0"; cat "$tmp/out"; fail=1
  elif ! grep -q "signal 9" "$tmp/out"; then
    echo "FAIL: the save failed, but not by the SIGKILL"; cat "$tmp/out"; fail=1
  else
    echo "ok: rank 1 killed at call $k of the save"
  fi
done
[ -e "$tmp/torn/manifest.json" ] && { echo "FAIL: the torn save left a manifest"; fail=1; }
[ "$(grep checkpoint_id "$tmp/r3/manifest.json")" = "$id_before" ] || { echo "FAIL: the manifest changed"; fail=1; }
[ "$(ls "$tmp/r3" | grep -c safetensors)" -gt 3 ] || { echo "FAIL: the killed save left no shard file behind (test too weak)"; fail=1; }
run 3 resume "$tmp/r3" 8 9                 # the previous checkpoint still loads
run 2 resume "$tmp/r3" 8 9 "$tmp/r3"       # and a new save over it works, collecting the garbage
[ "$(ls "$tmp/r3" | grep -c safetensors)" = 2 ] || { echo "FAIL: old shard files were not removed"; ls "$tmp/r3"; fail=1; }
exit $fail
