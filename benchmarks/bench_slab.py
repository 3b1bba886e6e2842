"""The kNN stage's products of one chunk, slab by slab, against one product of the whole chunk.

    python benchmarks/bench_slab.py [--rows 65536] [--d 768] [--reps 7]

``NeighborSearch._chunk`` multiplies a chunk's rows SLAB at a time and scales and bounds each
slab while it is in the cache. This times, for one chunk of clustered float32 rows (65,536 by
default, the pass's chunk) and 1,300 stacked queries (500 base queries, 50 gauge queries under
12 random gauges, the canonical gauge and 3 jitters, as one search stacked them before the
gauge queries searched a sample of the rows of their own), in one run:

* ``bare``: the bare float32 product of the stacked queries with the whole chunk;
* ``whole``: the chunk prepared as before the slabs: rows sorted by norm, the gauges' row
  factors, one product of the whole chunk, then the gauge rows scaled, the self-matches and the
  tiles' largest products on the whole (queries, rows) array;
* ``chunk``: ``NeighborSearch._chunk``: the same, slab by slab.

Each is run ``--reps`` times, interleaved, with one BLAS thread, then with two threads at once
on two chunks (what the pass's two workers do on a 2-core machine); the minimum and the median
are printed, and the ratios of the minima to ``bare``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_index import machine  # noqa: E402
from make_data import clustered_chunks  # noqa: E402

from embaudit import knn  # noqa: E402
from embaudit.knn import Block, NeighborSearch  # noqa: E402
from embaudit.measurement.gauges import gauge_scales  # noqa: E402
from embaudit.stats import CleanRows  # noqa: E402


def search_for(queries: np.ndarray, d: int) -> NeighborSearch:
    rng = np.random.default_rng(0)
    scales = gauge_scales(d, (0.1, 0.25, 0.5, 1.0), 3, 0)
    scales += [(0.0, np.exp(rng.normal(0.0, 0.3, d))) for _ in range(4)]  # canonical, jitters
    blocks = [Block("base", 500)] + [Block(f"g{i}", 50, s) for i, (_, s) in enumerate(scales)]
    return NeighborSearch(queries, np.arange(len(queries)), 10, blocks)


def whole(search: NeighborSearch, rows: CleanRows) -> None:
    """The chunk's preparation on the whole (queries, rows) array, as before the slabs."""
    order = np.argsort(rows.norms, kind="stable")
    positions, unit = rows.positions[order], rows.unit[order]
    products = search.stacked @ unit.T
    factors = search._row_factors(unit)  # (gauge blocks, whole tiles)
    for index, b in enumerate(search._gauge_blocks if factors is not None else []):
        gauged = slice(search.offsets[b], search.offsets[b] + search.blocks[b].n_queries)
        products[gauged] *= factors[index, : len(positions)]
    own_query, own_column = search._own(positions)
    for b, block in enumerate(search.blocks):
        inside = own_query < block.n_queries
        products[search.offsets[b] + own_query[inside], own_column[inside]] = -np.inf
    starts = np.arange(0, len(positions), knn.TILE)
    np.maximum.reduceat(products, starts, axis=1).astype(np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    blocks = clustered_chunks(2 * args.rows, args.d, seed=3)
    chunks = []
    for block in blocks:
        x = np.asarray(block[: args.rows], dtype=np.float32)
        norms = np.linalg.norm(x.astype(np.float64), axis=1)
        positions = np.arange(len(x)) + len(chunks) * args.rows
        chunks.append(CleanRows(positions, x, norms, (x / norms[:, None]).astype(np.float32)))
        if len(chunks) == 2:
            break
    queries = np.asarray(chunks[0].values[:500], dtype=np.float64)
    search = search_for(queries, args.d)
    stacked = search.stacked
    runs = {
        "bare": lambda rows: stacked @ rows.unit.T,
        "whole": lambda rows: whole(search, rows),
        "chunk": lambda rows: search._chunk(rows),
    }
    print(f"Machine: {machine()}.")
    print(
        f"One chunk of {args.rows:,} × {args.d}, {len(stacked):,} stacked queries, "
        f"SLAB = {knn.SLAB} rows; {args.reps} interleaved runs each.\n"
    )
    print("| threads | run | min (s) | median (s) | min / bare |")
    print("|---|---|---|---|---|")
    for threads in (1, 2):
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        with threadpool_limits(1):
            for _ in range(args.reps):
                for name, run in runs.items():
                    workers = [
                        threading.Thread(target=run, args=(chunks[t],)) for t in range(threads)
                    ]
                    started = time.perf_counter()
                    for worker in workers:
                        worker.start()
                    for worker in workers:
                        worker.join()
                    seconds[name].append(time.perf_counter() - started)
        bare = min(seconds["bare"])
        for name, values in seconds.items():
            print(
                f"| {threads} | {name} | {min(values):.2f} | {statistics.median(values):.2f} | "
                f"{min(values) / bare:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
