"""Corpus hygiene on a generated corpus with planted defects, and on a query file from another
distribution: each new check's value (EA005, EA206, EA502, EA503, and the query file's
results spread in EA501) next to its brute-force figure over every row.

    python benchmarks/hygiene.py [--n 100000] [--d 384] [--queries-n 2000]

The corpus is tests/exports.py's ``encoder_like`` rows (clusters, a common direction) with 10%
of its rows replaced by perturbed copies of others (cosine about 0.995 to them), 1% by rows in
independent random directions (isolated), and 300 tight groups of 4 rows (islands). The query
file holds rows of another distribution (other clusters, heavy noise) and 5% near-copies of
corpus rows. Brute force: every row (every query) against every corpus row in float32 blocks,
nearest cosine and mean cosine in float64; EA502 on the mutual 10-NN graph of every row (the
audit then runs with ``sample = n``, so that both read the same graph). Prints a Markdown
section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402

import embaudit  # noqa: E402
from embaudit import geometry  # noqa: E402
from embaudit.checks.graphs import FLOOR_MADS, MAD_TO_SD  # noqa: E402
from embaudit.measurement.sampling import Sampling  # noqa: E402
from tests.exports import encoder_like  # noqa: E402

BLOCK = 2048


def corpus(n: int, d: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    x = encoder_like(n, d, seed=0, common=0.5)
    rows = rng.permutation(n)
    copies, isolated = rows[: n // 10], rows[n // 10 : n // 10 + n // 100]
    grouped = rows[n // 10 + n // 100 :][: 300 * 4].reshape(300, 4)
    originals = rng.choice(rows[n // 5 :], size=len(copies))
    scale = np.linalg.norm(x[originals], axis=1)[:, None] / np.sqrt(d)
    x[copies] = x[originals] + 0.07 * scale * rng.standard_normal((len(copies), d))
    x[isolated] = rng.standard_normal((len(isolated), d))
    for group in grouped:
        x[group] = 3 * rng.standard_normal(d) + 0.3 * rng.standard_normal((4, d))
    return x.astype(np.float32), {"copies": copies, "isolated": isolated}


def query_file(x: np.ndarray, count: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    n, d = x.shape
    q = encoder_like(count, d, seed=9, common=0.5) + 0.35 * rng.standard_normal((count, d))
    near = rng.choice(n, size=count // 20, replace=False)
    q[: len(near)] = x[near] + 0.05 * np.linalg.norm(x[near], axis=1)[:, None] / np.sqrt(d) * (
        rng.standard_normal((len(near), d))
    )
    return q.astype(np.float32)


def nearest(queries: np.ndarray, x: np.ndarray, self_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """Nearest cosine (own row excluded when ``self_rows``) and mean cosine to the other rows,
    of every query against every corpus row."""
    unit_x = geometry.unit_rows(x.astype(np.float64)).astype(np.float32)
    unit_q = geometry.unit_rows(queries.astype(np.float64)).astype(np.float32)
    total = unit_x.astype(np.float64).sum(axis=0)
    best = np.empty(len(queries))
    for start in range(0, len(queries), BLOCK):
        sims = unit_q[start : start + BLOCK] @ unit_x.T
        if self_rows:
            rows = np.arange(start, min(start + BLOCK, len(queries)))
            sims[rows - start, rows] = -np.inf
        best[start : start + BLOCK] = sims.max(axis=1)
    own = 1.0 if self_rows else 0.0
    mean = (unit_q.astype(np.float64) @ total - own) / (len(x) - own)
    return best, mean


def floor_of(near: np.ndarray) -> float:
    median = np.median(near)
    return float(median - FLOOR_MADS * MAD_TO_SD * np.median(np.abs(near - median)))


def islands(x: np.ndarray) -> float:
    graph = geometry.cosine_knn_graph(geometry.unit_rows(x.astype(np.float64)), 10)
    return geometry.island_shares(graph, 10)[0]


def row(name: str, check: embaudit.CheckResult, brute: float, form: str = "{:.4f}") -> str:
    error = check.metrics.get("standard_error")
    shown = form.format(check.value) + (f" ± {form.format(error)}" if error else "")
    return f"| {check.code} {name} | {shown} | {form.format(brute)} | {check.status.value} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--queries-n", type=int, default=2000)
    args = parser.parse_args()
    x, planted = corpus(args.n, args.d)
    q = query_file(x, args.queries_n)
    folder = Path(tempfile.mkdtemp(prefix="embaudit-hygiene-"))
    np.save(folder / "corpus.npy", x)
    np.save(folder / "queries.npy", q)

    started = time.perf_counter()
    report = embaudit.audit(folder / "corpus.npy", trained_with="cosine")
    audit_seconds = time.perf_counter() - started
    full_graph = embaudit.audit(
        folder / "corpus.npy", trained_with="cosine", sampling=Sampling(sample=args.n)
    )
    queried = embaudit.audit(
        folder / "corpus.npy",
        trained_with="cosine",
        query_file=str(folder / "queries.npy"),
        sampling=Sampling(queries=args.queries_n),
    )

    started = time.perf_counter()
    near_x, mean_x = nearest(x, x, self_rows=True)
    near_q, mean_q = nearest(q, x, self_rows=False)
    contrast_x = (1 - mean_x) / (1 - near_x)
    contrast_q = (1 - mean_q) / (1 - near_q)
    floor = floor_of(near_x)
    island_share = islands(x)
    brute_seconds = time.perf_counter() - started

    n, d = args.n, args.d
    lines = [
        f"## Corpus hygiene: {n:,} × {d}, planted defects, and a query file of "
        f"{args.queries_n:,} rows",
        "",
        f"Machine: {machine()}. `python benchmarks/hygiene.py --n {n} --d {d} --queries-n "
        f"{args.queries_n}`. Planted: {len(planted['copies']):,} perturbed copies (10%), "
        f"{len(planted['isolated']):,} isolated rows (1%), 300 tight groups of 4 rows; the query "
        "file: rows of another distribution, 5% of them near-copies of corpus rows. Brute force "
        "over every row; the audits at the defaults (500 queries, a 5,000-row sample) except "
        f"EA502's reference run with `sample = {n:,}` (the whole corpus, the graph the brute force "
        f"builds). Audit {audit_seconds:.1f} s, brute force {brute_seconds:.1f} s.",
        "",
        "| check | embaudit (± standard error) | brute force | status |",
        "|---|---|---|---|",
        row("near-duplicates", report.check("EA005"), float(np.mean(near_x >= 0.99))),
        row(
            "distance-concentration", report.check("EA206"), float(np.median(contrast_x)), "{:.3f}"
        ),
        row("graph-islands (sample = n)", full_graph.check("EA502"), island_share),
        row("isolated-rows", report.check("EA503"), float(np.mean(near_x < floor))),
        "",
        f"EA502 at the default 5,000-row sample: {report.check('EA502').value:.4f} "
        f"(a sample's graph is sparser: tight groups of 4 rarely keep two members in it). "
        f"EA503's floor: {report.check('EA503').metrics['floor']:.4f} (brute force {floor:.4f}).",
        "",
        f"With `--query-file` ({args.queries_n:,} queries, all searched):",
        "",
        "| check | embaudit (± standard error) | brute force | status |",
        "|---|---|---|---|",
        row(
            "near-duplicates in the corpus", queried.check("EA005"), float(np.mean(near_q >= 0.99))
        ),
        row(
            "distance-concentration", queried.check("EA206"), float(np.median(contrast_q)), "{:.3f}"
        ),
        row(
            "isolated from the corpus",
            queried.check("EA503"),
            float(np.mean(near_q < floor)),
        ),
        "",
        "EA503 with the query file compares with the floor of "
        f"{queried.check('EA503').metrics['floor_from']} "
        f"({queried.check('EA503').metrics['floor']:.4f}; brute force over every corpus row "
        f"{floor:.4f}). EA501 (query hubness): {queried.check('EA501').metrics['queries']}.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
