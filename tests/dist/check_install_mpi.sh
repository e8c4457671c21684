#!/bin/sh
# check_install_mpi.sh BUILD_DIR CC CMAKE MPIEXEC: install the build into a
# scratch prefix, then build examples/train_sharded_mpi.c against the
# installed libema_mpi through pkg-config and through find_package(ema
# COMPONENTS mpi), and run both at 2 ranks (the second resumes the first's
# checkpoint).
set -eu
build=$1 cc=$2 cmake=$3 mpiexec=$4
here=$(cd "$(dirname "$0")" && pwd)
example="$here/../../examples/train_sharded_mpi.c"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$cmake" --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib*)
test -f "$work/prefix/include/ema/mpi.h"
ls "$libdir"/libema_mpi.so.0 "$libdir"/libema_mpi.a "$libdir/pkgconfig/libema_mpi.pc" >/dev/null
export PKG_CONFIG_PATH="$libdir/pkgconfig"
"$cc" -std=c11 -Wall -Werror -D_POSIX_C_SOURCE=200809L "$example" $(pkg-config --cflags --libs libema_mpi) -lm \
  -o "$work/app_pc"
cd "$work"
LD_LIBRARY_PATH="$libdir" "$mpiexec" -np 2 --oversubscribe "$work/app_pc" "$work/ck" | grep -q "saved"
"$cmake" -S "$here/consumer_mpi" -B "$work/cb" -DCMAKE_PREFIX_PATH="$work/prefix" -DEXAMPLE="$example" \
  -DCMAKE_C_COMPILER="$cc" >/dev/null
"$cmake" --build "$work/cb" >/dev/null
LD_LIBRARY_PATH="$libdir" "$mpiexec" -np 2 --oversubscribe "$work/cb/app" "$work/ck" | grep -q "resumed"
echo "install_mpi_consumers: 2 passed, 0 failed"
