"""The fold of every row's statistics (``_FragmentFolder.reduce``: float64 norms, moments, unit
rows and sums, row hashes) on one core, on two threads and on two processes at once.

    python benchmarks/bench_fold.py [--d 768] [--reps 12]

Rows: a 64 MiB chunk's worth of float32 rows (CHUNK_BYTES of float64 work) with log-normal
norms, four such chunks taken in turn, BLAS on one thread (as in the pass). Prints seconds per
1M rows for each worker: when two threads take longer each than two processes, the difference
is time spent waiting for the interpreter lock between numpy calls.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from types import SimpleNamespace

import numpy as np
from threadpoolctl import threadpool_limits

from embaudit.sources.base import CHUNK_BYTES
from embaudit.stats.fold import _FragmentFolder
from embaudit.stats.scratch import Scratch


def _chunks(d: int) -> list[np.ndarray]:
    rows = CHUNK_BYTES // (8 * d)
    rng = np.random.default_rng(0)
    chunks = []
    for _ in range(4):
        x = rng.standard_normal((rows, d), dtype=np.float32)
        x *= np.exp(rng.standard_normal(rows)).astype(np.float32)[:, None]
        chunks.append(x)
    return chunks


def _fold(worker: int, d: int, reps: int) -> float:
    """Seconds per 1M rows of one worker folding ``reps`` chunks."""
    chunks = _chunks(d)
    rows = len(chunks[0])
    source = SimpleNamespace(d=d, dtype=np.dtype(np.float32), n=10**6)
    folder = _FragmentFolder(
        source, SimpleNamespace(start=0, n=rows), keep_unit=True, statistics=True, sketch=True
    )
    scratch = Scratch()
    with threadpool_limits(1, user_api="blas"):
        folder.reduce(0, chunks[0], scratch)
        started = time.perf_counter()
        for rep in range(reps):
            folder.reduce(0, chunks[(worker + 2 * rep) % 4], scratch)
    return (time.perf_counter() - started) / reps * 1e6 / rows


def _threads(d: int, reps: int) -> list[float]:
    seconds = [0.0, 0.0]

    def run(worker: int) -> None:
        seconds[worker] = _fold(worker, d, reps)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--reps", type=int, default=12)
    args = parser.parse_args()
    alone = _fold(0, args.d, args.reps)
    threads = _threads(args.d, args.reps)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        processes = pool.starmap(_fold, [(0, args.d, args.reps), (1, args.d, args.reps)])
    print(
        f"d = {args.d}, s per 1M rows: one worker {alone:.2f}; two threads "
        f"{threads[0]:.2f} / {threads[1]:.2f}; two processes "
        f"{processes[0]:.2f} / {processes[1]:.2f}"
    )


if __name__ == "__main__":
    main()
