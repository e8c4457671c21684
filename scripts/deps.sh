#!/bin/sh
# Install the Debian packages a target needs, only those that are missing.
#   scripts/deps.sh build   compiler and CMake (make demo)
#   scripts/deps.sh test    everything the test suite uses (make test)
set -eu
want="build-essential cmake"
if [ "${1:-build}" = test ]; then
  want="$want pkg-config clang clang-format libclang-rt-14-dev valgrind python3 python3-numpy python3-pandas python3-pytest python3-torch python3-venv python3-setuptools python3-pip python3-build python3-wheel chromium openmpi-bin libopenmpi-dev"
fi
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
