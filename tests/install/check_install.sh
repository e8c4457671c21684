#!/bin/sh
# check_install.sh BUILD_DIR CC CMAKE: install the build into a scratch
# prefix, then compile, link and run a consumer through pkg-config and
# through find_package(ema), against the shared and the static library.
set -eu
build=$1 cc=$2 cmake=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cmake" --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib*)
test -f "$work/prefix/include/ema/ema.h"
ls "$libdir"/libema.so.0 >/dev/null          # SOVERSION = major
ls "$libdir"/libema.a >/dev/null

# pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
if command -v pkg-config >/dev/null; then
  flags=$(pkg-config --cflags --libs libema)
else # the .pc file by hand: what pkg-config would print
  flags="-I$work/prefix/include -L$libdir -lema"
fi
"$cc" -std=c11 -Wall -Werror "$here/consumer/main.c" $flags -o "$work/app_pc"
LD_LIBRARY_PATH="$libdir" "$work/app_pc"

# CMake package, shared and static
for target in ema::ema ema::ema_static; do
  rm -rf "$work/cb"
  "$cmake" -S "$here/consumer" -B "$work/cb" -DCMAKE_PREFIX_PATH="$work/prefix" -DEMA_TARGET="$target" \
    -DCMAKE_C_COMPILER="$cc" >/dev/null
  "$cmake" --build "$work/cb" >/dev/null
  LD_LIBRARY_PATH="$libdir" "$work/cb/app"
done
echo "install_consumers: 3 passed, 0 failed"
