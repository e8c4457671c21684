#!/bin/sh
# tests/python/venv_install.sh: the package as a user gets it. A clean copy
# of the checkout (tracked and untracked-but-not-ignored files: no build
# tree), installed with pip into a fresh venv (Debian's python3, system
# site-packages for numpy/torch/pytest, nothing downloaded), then the Python
# tests run against the installed package from another directory with no
# environment variable. Also builds a wheel with `python3 -m build
# --no-isolation` and checks that it ships libema.so. Run by `make test`.
set -eu
PY=${PYTHON:-/usr/bin/python3}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ema-venv.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | \
  tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$tmp/src"
"$PY" -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install -q --no-build-isolation --no-index --no-deps --disable-pip-version-check "$tmp/src"
# a copy of the tests elsewhere: nothing next to them points at the checkout
mkdir "$tmp/run"
cp -r "$root/tests/python" "$tmp/run/tests"
cd "$tmp/run"
EMA_LIBRARY='' EMA_EXPECT_INSTALLED="$tmp/venv" "$tmp/venv/bin/python" -c '
import os, sys, ema
site = os.environ["EMA_EXPECT_INSTALLED"]
assert ema.__file__.startswith(site), ema.__file__
assert ema.library_path == os.path.join(os.path.dirname(ema.__file__), "libema.so"), ema.library_path
print("installed:", ema.__file__, ema.library_path, ema.library_version)
'
env -u EMA_LIBRARY EMA_EXPECT_INSTALLED="$tmp/venv" PYTHONDONTWRITEBYTECODE=1 \
  "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider tests
if "$PY" -c 'import build, wheel' 2>/dev/null; then
  (cd "$tmp/src" && "$PY" -m build --no-isolation --outdir "$tmp/dist" >/dev/null)
  whl=$(ls "$tmp"/dist/*.whl)
  "$PY" -m zipfile -l "$whl" | grep "ema/libema.so" >/dev/null || { echo "the wheel $whl lacks ema/libema.so"; exit 1; }
  echo "wheel: $(basename "$whl")"
else
  echo "SKIP wheel: python3-build and python3-wheel are needed"
fi
