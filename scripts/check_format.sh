#!/bin/sh
# Fails when a tracked C/C++ source or header differs from what .clang-format
# makes of it.  `sh scripts/check_format.sh --fix` rewrites them instead.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' '*.cpp' | grep -v '^tests/fuzz/corpus/')
if [ "${1:-}" = --fix ]; then
  clang-format -i $files
  exit 0
fi
bad=""
for f in $files; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
  echo "not formatted as .clang-format says (run: sh scripts/check_format.sh --fix):"
  for f in $bad; do echo "  $f"; done
  exit 1
fi
echo "format: $(echo "$files" | wc -l) files match .clang-format"
