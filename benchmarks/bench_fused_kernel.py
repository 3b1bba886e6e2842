"""What a compiled kernel would buy the pass at small d: the tiles' largest products computed
without writing the products, against what the pass does (one float32 BLAS product per slab,
written, then each tile's maximum), alternated in one process on one thread.

    pip install numba  # not a dependency of embaudit; this script alone needs it
    python benchmarks/bench_fused_kernel.py [--rows 65536] [--stacked 1125] [--reps 3]

At d = 16 a pass spends about half its time on the products and their tiles' maxima (py-spy, one
worker): the product writes 4 bytes per (row, stacked query) and the maxima read them back. The
kernel (numba, vectorized over 64 rows of a tile, four stacked rows at a time) keeps them in the
cache and writes only the maxima; a second variant also writes the products, as the selection
needs them for the tiles it scores. The maxima are compared with the BLAS path's (the largest
absolute difference is printed). Figures per row of the chunk, in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

# This folder holds a coverage.py, which numba would import for the coverage package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

try:
    from numba import njit
except ImportError as missing:  # pragma: no cover - an optional benchmark
    raise SystemExit("this benchmark needs numba: pip install numba") from missing

TILE = 256
SLAB = 8 * TILE
QUERIES, LANES = 4, 64  # stacked rows and chunk rows held at a time
FAST = {"nnan", "nsz", "contract"}


@njit(nogil=True, fastmath=FAST)
def _tile_maxima(stacked, tiles, out, keep, products):  # type: ignore[no-untyped-def]
    """out[s, t]: the largest product of stacked row s in tile t (tiles: (tiles, d, TILE));
    with ``keep``, the products are written to ``products`` too."""
    n_stacked, d = stacked.shape
    acc = np.empty((QUERIES, LANES), np.float32)
    for t in range(tiles.shape[0]):
        x = tiles[t]
        for s0 in range(0, n_stacked, QUERIES):
            held = min(QUERIES, n_stacked - s0)
            for q in range(held):
                out[s0 + q, t] = -np.inf
            for lane in range(0, TILE, LANES):
                for q in range(held):
                    value = stacked[s0 + q, 0]
                    for r in range(LANES):
                        acc[q, r] = value * x[0, lane + r]
                for j in range(1, d):
                    for q in range(held):
                        value = stacked[s0 + q, j]
                        for r in range(LANES):
                            acc[q, r] += value * x[j, lane + r]
                for q in range(held):
                    best = out[s0 + q, t]
                    for r in range(LANES):
                        best = max(best, acc[q, r])
                        if keep:
                            products[s0 + q, t * TILE + lane + r] = acc[q, r]
                    out[s0 + q, t] = best


def _blas(stacked: np.ndarray, rows: np.ndarray, out: np.ndarray, products: np.ndarray) -> None:
    """The pass's way: the products of a slab written, then each tile's maximum."""
    starts = np.arange(0, SLAB, TILE)
    for first in range(0, len(rows), SLAB):
        last = min(first + SLAB, len(rows))
        np.matmul(stacked, rows[first:last].T, out=products[:, first:last])
        tiles = slice(first // TILE, last // TILE)
        out[:, tiles] = np.maximum.reduceat(products[:, first:last], starts, axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--stacked", type=int, default=1_125)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64, 128])
    arguments = parser.parse_args()
    n = arguments.rows // TILE * TILE
    rng = np.random.default_rng(0)
    heads = "BLAS product + tiles' maxima | kernel, maxima only | kernel, products kept"
    print(f"| d | {heads} | maxima differ by |")
    print("|---|---|---|---|---|")
    for d in arguments.dims:
        rows = rng.standard_normal((n, d), dtype=np.float32)
        stacked = rng.standard_normal((arguments.stacked, d), dtype=np.float32)
        tiles = np.ascontiguousarray(rows.reshape(n // TILE, TILE, d).transpose(0, 2, 1))
        products = np.empty((len(stacked), n), np.float32)
        reference = np.empty((len(stacked), n // TILE), np.float32)
        fused = np.empty_like(reference)
        _tile_maxima(stacked, tiles[:1], fused[:, :1], True, products)  # compile
        times: dict[str, list[float]] = {"blas": [], "maxima": [], "kept": []}
        with threadpool_limits(1):
            for _ in range(arguments.reps):
                start = time.perf_counter()
                _blas(stacked, rows, reference, products)
                times["blas"].append(time.perf_counter() - start)
                start = time.perf_counter()
                _tile_maxima(stacked, tiles, fused, False, products)
                times["maxima"].append(time.perf_counter() - start)
                start = time.perf_counter()
                _tile_maxima(stacked, tiles, fused, True, products)
                times["kept"].append(time.perf_counter() - start)
        difference = float(np.abs(fused - reference).max())
        per_row = {name: statistics.median(t) * 1e6 / n for name, t in times.items()}
        print(
            f"| {d} | {per_row['blas']:.2f} µs | {per_row['maxima']:.2f} µs "
            f"| {per_row['kept']:.2f} µs | {difference:.1e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
