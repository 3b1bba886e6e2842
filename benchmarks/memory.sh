#!/usr/bin/env bash
# Peak RSS and wall time of `embaudit check` on a generated 1M × 768 float32 file.
#   bash benchmarks/memory.sh [npy|parquet]
# The file (3 GB) is generated once under benchmarks/data/ (git-ignored). The page cache is
# warmed first, so the figure is the warm-cache case.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-npy}
file=benchmarks/data/clustered_1m_768.$kind
[ -e "$file" ] || python benchmarks/make_data.py "$file" --n 1000000 --d 768
cat "$file" > /dev/null
log=$(mktemp)
status=0
/usr/bin/time -v embaudit check "$file" --quiet 2> "$log" || status=$?
echo "file: $file ($(du -h "$file" | cut -f1)), exit status $status"
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$log"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), \
$(free -g | awk '/Mem:/ {print $2}') GiB, Python $(python -c 'import platform; print(platform.python_version())')"
