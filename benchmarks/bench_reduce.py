"""The driver's share of a pass, measured at sizes a cluster would send it.

    python benchmarks/bench_reduce.py [--n 1000000 10000000 100000000] [--fragments-of 87381]

Whatever engine runs the map, the driver receives one PartStats per fragment (per-row norms,
finiteness flags and row hashes, and per-dimension sums) and merges them (``stats.finish``: row-
order merge, exact duplicate check), then runs the checks that read per-row statistics (EA001–
EA205 without a sample). This script builds the parts a 768-d export of ``n`` rows would produce
(random norms and hashes, 100 planted duplicate pairs) and times those two steps, each size in a
fresh process, with the process's peak RSS. It feeds the driver terms of benchmarks/SCALING.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.checks import AuditData, run_checks
from embaudit.options import CheckOptions
from embaudit.sources import Chunk, EmbeddingSource, Fragment
from embaudit.stats import Moments, PartStats, finish

D = 768
PLANTED = 100


class Synthetic(EmbeddingSource):
    """n rows known only by position: row r is a constant vector of value r // 2000 + 1, so the
    planted pairs (r a multiple of 4000, and r + 1000) are identical and differ from each other."""

    format = "synthetic"
    path = "synthetic"

    def __init__(self, n: int) -> None:
        self.n, self.d, self.dtype = n, D, np.dtype(np.float32)

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        raise NotImplementedError("the parts are built directly")

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        values = (np.asarray(rows) // 2000 + 1).astype(np.float32)
        return np.repeat(values[:, None], D, axis=1)


def parts(n: int, fragment_rows: int, rng: np.random.Generator) -> list[PartStats]:
    """What the map step sends for n rows: per fragment, 16 bytes per row and the sums."""
    first = set((rng.choice(n // 4000, size=PLANTED, replace=False) * 4000).tolist())
    moments = Moments(fragment_rows, np.zeros(D), np.ones(D) * fragment_rows)
    out, planted = [], {}
    for start in range(0, n, fragment_rows):
        stop = min(n, start + fragment_rows)
        hashes = rng.integers(1, 2**63, size=stop - start, dtype=np.uint64)
        for row in range(start - start % 1000, stop, 1000):
            if start <= row and row in first:
                planted[row] = hashes[row - start]
            if start <= row and row - 1000 in first:
                hashes[row - start] = planted[row - 1000]  # rows r and r + 1000 are equal
        out.append(
            PartStats(
                start=start,
                rows=stop - start,
                norms=rng.lognormal(0.0, 0.2, size=stop - start),
                norm_parts=None,
                clean=np.ones(stop - start, dtype=bool),
                hashes=hashes,
                non_finite=np.empty(0, dtype=np.int64),
                non_finite_count=0,
                nan_rows=0,
                zero=np.empty(0, dtype=np.int64),
                zero_count=0,
                moments=moments,
                unit_sum=np.zeros(D),
                unit_sq_sum=np.ones(D) * (stop - start) / D,
            )
        )
    return out


def one(n: int, fragment_rows: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    made = parts(n, fragment_rows, rng)
    source = Synthetic(n)
    started = time.perf_counter()
    stats = finish(source, made)  # consumes the parts
    reduce_seconds = time.perf_counter() - started
    started = time.perf_counter()
    results = run_checks(AuditData(CheckOptions(), stats))
    checks_seconds = time.perf_counter() - started
    duplicates = next(r for r in results if r.code == "EA003").metrics["duplicate_rows"]
    assert duplicates == PLANTED, duplicates
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "reduce": reduce_seconds, "checks": checks_seconds, "peak_kib": peak_kib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--fragments-of", type=int, default=87_381, help="rows per fragment")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.fragments_of)))
        return
    print(f"{'rows':>13} {'reduce':>9} {'checks':>9} {'peak RSS':>12} {'bytes/row':>10}")
    for n in args.n:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--fragments-of",
            str(args.fragments_of),
        ]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        print(
            f"{row['n']:>13,} {row['reduce']:>8.2f}s {row['checks']:>8.2f}s "
            f"{row['peak_kib'] / 2**20:>10.2f}GiB {row['peak_kib'] * 1024 / row['n']:>10.0f}"
        )
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


if __name__ == "__main__":
    main()
