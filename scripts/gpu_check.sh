#!/bin/sh
# scripts/gpu_check.sh: on a machine with CUDA and torch, build libema (shared
# library only) and run ema.torch's CUDA tests and GPU benchmark in one go
# (tests/python/gpu_check.py); without CUDA it says so and exits 0.
set -e
cd "$(dirname "$0")/.."
if [ ! -e build/libema.so ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" --target ema_shared >/dev/null
fi
PY=${PYTHON:-python3}
EMA_LIBRARY="$PWD/build/libema.so" PYTHONPATH="$PWD/python:$PWD/tests/python" exec "$PY" tests/python/gpu_check.py "$@"
