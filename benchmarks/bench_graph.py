"""The sample's cosine kNN graph (EA501, EA502, and the isotropic reference they are read
against): its selection of each row's nearest, against ``np.argpartition`` over whole rows, the
baseline it replaced, in one process.

    python benchmarks/bench_graph.py [--m 5000] [--reps 5]

For each shape (d = 768 and d = 16; Gaussian rows, and rows a fifth of which are copies of
others, whose cosines tie exactly) it times, best of ``--reps``:

* the selection of a 512-row block's ``k + 5`` nearest among ``m`` rows (k = 10, the graph's
  default block and margin): ``np.argpartition(-sims)`` (what a practitioner writes, and the
  graph's selection before) against :func:`embaudit.geometry.largest_columns`, and checks that
  they select the same scores;
* the whole graph of ``m`` rows (:func:`embaudit.geometry.cosine_knn_graph`, the float32
  products included), and the bare float32 product of the ``m`` rows with themselves.

Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info

from embaudit.geometry import RERANK_MARGIN, cosine_knn_graph, largest_columns, unit_rows

BLOCK = 512
K = 10


def _best(reps: int, function, *args) -> float:
    """The shortest of ``reps`` runs of ``function(*args)``, in seconds."""
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - started)
    return best


def _argpartition(sims: np.ndarray, count: int) -> np.ndarray:
    """The baseline: each row's ``count`` largest by a partition of the whole row."""
    return np.argpartition(-sims, count - 1, axis=1)[:, :count]


def _gram(single: np.ndarray) -> np.ndarray:
    return single @ single.T


def _rows(m: int, d: int, copies: bool, rng: np.random.Generator) -> np.ndarray:
    rows = rng.standard_normal((m, d))
    if copies:  # a fifth of the rows repeat others: exact ties
        rows[rng.choice(m, m // 5, replace=False)] = rows[rng.choice(m, m // 5, replace=False)]
    return unit_rows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    blas = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    kernel = blas[0].get("architecture") if blas else "not OpenBLAS"
    print(f"numpy {np.__version__}, OpenBLAS kernel {kernel}; {time.strftime('%Y-%m-%d')}\n")
    print(
        "| rows | argpartition, a block (ms) | largest_columns, a block (ms) | ratio "
        "| graph (s) | bare product (s) | same scores |"
    )
    print("|---|---|---|---|---|---|---|")
    proposed = K + RERANK_MARGIN
    for d in (768, 16):
        for copies in (False, True):
            unit = _rows(args.m, d, copies, np.random.default_rng(d))
            single = unit.astype(np.float32)
            sims = single[:BLOCK] @ single.T
            sims[np.arange(BLOCK), np.arange(BLOCK)] = -np.inf
            baseline = _argpartition(sims, proposed)
            ours = largest_columns(sims, proposed)
            same = np.array_equal(
                np.sort(np.take_along_axis(sims, baseline, axis=1), axis=1),
                np.sort(np.take_along_axis(sims, ours, axis=1), axis=1),
            )
            before = _best(args.reps, _argpartition, sims, proposed)
            after = _best(args.reps, largest_columns, sims, proposed)
            graph = _best(args.reps, cosine_knn_graph, unit, K)
            bare = _best(args.reps, _gram, single)
            name = f"{args.m:,} × {d}" + (", a fifth copies" if copies else "")
            print(
                f"| {name} | {before * 1e3:.1f} | {after * 1e3:.1f} | {before / after:.1f}× "
                f"| {graph:.3f} | {bare:.3f} | {'yes' if same else 'NO'} |"
            )


if __name__ == "__main__":
    main()
