"""Rows per worker-second of the pass at 16-d and at 768-d, alternated in one process.

    python benchmarks/bench_rate_by_d.py [--data /tmp] [--reps 3]

One pass worker audits a directory of 1,000,000 × 16 and one of 100,000 × 768 float32 `.npy`
shards (benchmarks/make_shards.py), in turn, ``--reps`` times; the rate is the rows over the
pass's map seconds. Alternating keeps the ratio fair on a shared machine. The data is deleted at
the end.

``--blas-threads`` (default 1) is the BLAS threads of that worker: 1 is the work of one Ray task
(a task holds one CPU, and Ray starts its workers with one OpenMP thread); ``0`` lets the worker
take every core for its products, as ``LocalEngine(workers=1)`` does on its own, which favours
768-d rows (their products split over the cores; a 16-d pass is mostly not products).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_shards import write_shards  # noqa: E402

import embaudit  # noqa: E402
from embaudit.engines import LocalEngine  # noqa: E402

SIZES = ((1_000_000, 16), (100_000, 768))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=1)
    arguments = parser.parse_args()
    folders = {d: arguments.data / f"rate_{rows}_{d}" for rows, d in SIZES}
    for rows, d in SIZES:
        if not folders[d].exists():
            write_shards(folders[d], rows, d, 1_000_000, 0, 0)
    rates: dict[int, list[float]] = {d: [] for _, d in SIZES}
    try:
        for _ in range(arguments.reps):
            for rows, d in SIZES:
                threads = arguments.blas_threads or None
                engine = LocalEngine(workers=1, blas_threads=threads)
                report = embaudit.audit(folders[d], engine=engine, seed=0)
                rates[d].append(rows / report.timings["map_seconds"])
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
    for d, values in rates.items():
        runs = ", ".join(f"{value:,.0f}" for value in values)
        print(f"d = {d}: {statistics.median(values):,.0f} rows/s (runs: {runs})")
    ratio = statistics.median(rates[16]) / statistics.median(rates[768])
    blas = arguments.blas_threads or "every core's"
    print(f"16-d / 768-d: {ratio:.1f}x (one pass worker, {blas} BLAS thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
