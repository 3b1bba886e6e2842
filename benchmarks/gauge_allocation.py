"""How EA301 should spend its (gauge draw, gauge query) pairs: more draws or more queries?

    python benchmarks/gauge_allocation.py [--only NAME] [--resamples 3000]

For each export of benchmarks/coverage_corpus.py (100,000 rows, four shapes), embaudit measures
the overlaps of the judged level (s = 0.5) for 32 gauge draws × 400 gauge queries against every
row: a table of per-(draw, query) overlaps. Allocations of the same or twice the budget are then
drawn from it without replacement (D draws of Q queries), ``--resamples`` times each, and their
crossed standard error (:func:`embaudit.estimates.crossed_standard_error`) is compared with the
table's grand mean: the mean reported error, and the share of resamples within 2 errors of it.
The variance components of the table (the draws', the queries' and the residual standard
deviations) say where the error comes from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from coverage_corpus import exports  # noqa: E402

from embaudit.estimates import _mean_squares, crossed_standard_error  # noqa: E402
from embaudit.measurement.sampling import Sampling  # noqa: E402
from embaudit.measurement.steps import measure  # noqa: E402
from embaudit.sources import open_source  # noqa: E402

ALLOCATIONS = ((3, 50), (4, 38), (6, 25), (8, 19), (3, 100), (6, 50))
TABLE = Sampling(gauge_draws=32, gauge_queries=400, queries=500, gauge_levels=(0.5,))


def components(table: np.ndarray) -> tuple[float, float, float]:
    """The draws', the queries' and the residual standard deviations of a (draws, queries)
    table, from its mean squares."""
    draws, queries = table.shape
    ms_draw, ms_query, ms_residual = _mean_squares(table)
    return (
        float(np.sqrt(max(ms_draw - ms_residual, 0.0) / queries)),
        float(np.sqrt(max(ms_query - ms_residual, 0.0) / draws)),
        float(np.sqrt(ms_residual)),
    )


def study(name: str, x: np.ndarray, resamples: int) -> list[str]:
    measured = measure(open_source(x), k=10, seed=5, sampling=TABLE)
    assert measured.neighbors is not None
    table = np.asarray(measured.neighbors.gauge[0.5])
    truth = float(table.mean())
    sd_draw, sd_query, sd_residual = components(table)
    rng = np.random.default_rng(1)
    cells = [_allocation(table, truth, d, q, resamples, rng) for d, q in ALLOCATIONS]
    head = f"| {name} | {truth:.4f} | {sd_draw:.3f} / {sd_query:.3f} / {sd_residual:.3f} | "
    return [head + " | ".join(cells) + " |"]


def _allocation(
    table: np.ndarray,
    truth: float,
    draws: int,
    queries: int,
    resamples: int,
    rng: np.random.Generator,
) -> str:
    """Mean crossed error of ``resamples`` draws of ``draws`` × ``queries`` from ``table``, and
    the share within 2 errors of its grand mean ``truth``."""
    covered, errors = 0, []
    for _ in range(resamples):
        rows = rng.choice(table.shape[0], draws, replace=False)
        columns = rng.choice(table.shape[1], queries, replace=False)
        part = table[np.ix_(rows, columns)]
        error = crossed_standard_error(part)
        errors.append(error)
        covered += abs(part.mean() - truth) <= 2 * error
    return f"{np.mean(errors):.4f} ({covered / resamples:.0%})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the exports whose name contains this")
    parser.add_argument("--resamples", type=int, default=3000)
    arguments = parser.parse_args()
    heads = " | ".join(f"{d} × {q}" for d, q in ALLOCATIONS)
    print(f"| export | table mean | sd draw / query / residual | {heads} |")
    print("|---|---|---|" + "---|" * len(ALLOCATIONS))
    for name, x in exports(100_000).items():
        if arguments.only and arguments.only not in name:
            continue
        for line in study(name, x, arguments.resamples):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
