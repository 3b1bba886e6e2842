"""Coverage at the corpus's size: does each whole-corpus value lie within 2 reported standard
errors of the same quantity computed over every row?

    python benchmarks/coverage_corpus.py [--seeds 20] [--n 100000] [--only NAME]

Generated exports of 100,000 rows and several shapes (small tight groups with per-column
scales and log-normal norms, large tight clusters, a sentence-encoder-like corpus with planted
near-copies, a matrix-factorisation-like 16-d table). The references are computed here with
faiss's exact flat index (float32 products; another implementation than embaudit's search),
every row a query where the quantity is a property of every row:

- EA005: the share of rows whose nearest other row, bit-identical copies aside, has cosine
  >= 0.99, over every row;
- EA501: the spread of the corpus's whole cosine 10-NN graph (every row's list);
- EA301 (s = 0.5) and EA302: overlap@10 of every-row searches under the gauge for REF_QUERIES
  random rows (EA301: over gauge draws in batches of REF_DRAWS, until the draws' error is at
  most REF_ERROR or REF_MAX_DRAWS are drawn: at small d the gauges' spread dominates, and 12
  draws of a 16-d table left its reference 1.4 errors from that of 48); their own standard
  error is reported and added in quadrature to the audit's in the 2-SE test.

The audit then runs once per seed at its defaults on the same rows; the table prints the share
of seeds within 2 SE (target: at least 90 %).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embaudit import audit
from tests.exports import encoder_like, lognormal_norms

K = 10
REF_QUERIES = 4000
REF_DRAWS = 12
REF_MAX_DRAWS = 48
REF_ERROR = 0.01


def _unit(x: np.ndarray) -> np.ndarray:
    rows = np.asarray(x, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _search(corpus: np.ndarray, queries: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(np.ascontiguousarray(corpus))
    scores, rows = index.search(np.ascontiguousarray(queries), width)
    return scores, rows


def _lists(unit: np.ndarray, rows: np.ndarray, k: int = K) -> np.ndarray:
    """The k nearest other rows of ``rows`` (their own row dropped)."""
    _, found = _search(unit, unit[rows], k + 1)
    keep = found != rows[:, None]
    keep[keep.all(axis=1), -1] = False
    return found[keep].reshape(len(rows), k)


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([len(np.intersect1d(p, q)) / a.shape[1] for p, q in zip(a, b, strict=True)])


def whole_graph(x: np.ndarray) -> dict[str, float]:
    """EA005 and EA501 over every row, from one exact search of every row."""
    unit = _unit(x)
    n = len(x)
    every = np.arange(n)
    scores, found = _search(unit, unit, K + 1)
    # EA005: the nearest other row that is not a bit-identical copy.
    near = np.zeros(n, dtype=bool)
    raw = np.asarray(x)
    for i in range(n):
        for score, row in zip(scores[i], found[i], strict=True):
            if row == i or row < 0:
                continue
            if np.array_equal(raw[row], raw[i]):
                continue
            near[i] = score >= 0.99 - 1e-6
            break
    keep = found != every[:, None]
    keep[keep.all(axis=1), -1] = False
    lists = found[keep].reshape(n, K)
    occurrence = np.bincount(lists.ravel(), minlength=n).astype(np.float64)
    slots = occurrence.sum()
    spread = slots**2 / (occurrence**2).sum() / (slots**2 / (slots + slots * (slots - 1) / n))
    robin_hood = np.abs(occurrence - K).sum() / (2 * slots)
    return {"EA005": float(near.mean()), "EA501": float(spread), "robin_hood": float(robin_hood)}


def gauges(x: np.ndarray, seed: int = 777) -> dict[str, tuple[float, float]]:
    """EA301 at s = 0.5 and EA302 for REF_QUERIES random rows searching every row, with their
    standard errors (EA301: over the draws' means, which share the queries: the draws are the
    independent units)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=REF_QUERIES, replace=False)
    base = _lists(_unit(x), rows)
    draws: list[np.ndarray] = []
    while len(draws) < REF_MAX_DRAWS:
        for _ in range(REF_DRAWS):
            scaled = x * np.exp(rng.normal(0.0, 0.5, size=x.shape[1]))
            draws.append(_overlap(base, _lists(_unit(scaled), rows)))
        per_draw = np.mean(draws, axis=1)
        if per_draw.std(ddof=1) / np.sqrt(len(per_draw)) <= REF_ERROR:
            break
    spread = x.std(axis=0)
    standardised = x / np.where(spread > 0, spread, 1.0)
    canonical = _overlap(base, _lists(_unit(standardised), rows))
    return {
        "EA301": (float(per_draw.mean()), float(per_draw.std(ddof=1) / np.sqrt(len(per_draw)))),
        "EA302": (float(canonical.mean()), float(canonical.std(ddof=1) / np.sqrt(len(rows)))),
    }


def _estimate(report, code: str) -> tuple[float, float]:
    check = report.check(code)
    if code == "EA301":
        (level,) = [row for row in check.metrics["levels"] if row["s"] == 0.5]
        return check.value, float(level["standard_error"])
    error = check.metrics["standard_error"]
    return check.value, 0.0 if error is None else float(error)


def exports(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    groups = rng.standard_normal((n // 20, 64))
    tight = np.repeat(groups, 20, axis=0) + 0.15 * rng.standard_normal((n, 64))
    tight = lognormal_norms(tight * np.exp(rng.normal(0, 0.7, 64)), seed=1)
    centres = rng.standard_normal((50, 128))
    clusters = centres[rng.integers(50, size=n)] + 0.5 * rng.standard_normal((n, 128))
    sentences = encoder_like(n, 384, seed=3, common=0.5)
    copies = rng.choice(n, size=n // 10, replace=False)
    sentences[copies] = sentences[rng.choice(n, size=len(copies))] + 0.02 * rng.standard_normal(
        (len(copies), 384)
    ) / np.sqrt(384)
    factors = rng.standard_normal((n, 16)) * np.exp(rng.normal(0, 1.0, 16))
    factors *= np.exp(rng.normal(0, 0.5, size=(n, 1)))
    return {
        f"tight groups of 20, column scales, log-normal norms, {n:,} × 64": tight,
        f"50 tight clusters, {n:,} × 128": clusters,
        f"sentence-like, 10% near-copies, {n:,} × 384": sentences,
        f"factor table (log-normal columns and norms), {n:,} × 16": factors,
    }


def study(name: str, x: np.ndarray, seeds: int) -> list[str]:
    started = time.perf_counter()
    reference = {code: (value, 0.0) for code, value in whole_graph(x).items()}
    reference |= gauges(x)
    codes = ("EA301", "EA302", "EA005", "EA501")
    covered = dict.fromkeys(codes, 0)
    errors: dict[str, list[float]] = {code: [] for code in codes}
    for seed in range(seeds):
        report = audit(x, seed=seed, select=",".join(codes), trained_with="dot")
        for code in codes:
            estimate, error = _estimate(report, code)
            value, reference_error = reference[code]
            errors[code].append(error)
            covered[code] += abs(estimate - value) <= 2 * np.hypot(error, reference_error)
    print(
        f"{name}: {time.perf_counter() - started:.0f} s; whole graph's Robin Hood index "
        f"{reference['robin_hood'][0]:.3f}",
        file=sys.stderr,
    )
    return [
        f"| {name} | {code} | {reference[code][0]:.4f} ± {reference[code][1]:.4f} | "
        f"{np.mean(errors[code]):.4f} | {covered[code] / seeds:.0%} |"
        for code in codes
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--only", help="run the exports whose name contains this")
    args = parser.parse_args()
    print("| export | check | every-row value ± its error | mean reported SE | within 2 SE |")
    print("|---|---|---:|---:|---:|")
    for name, x in exports(args.n).items():
        if args.only and args.only not in name:
            continue
        for line in study(name, x, args.seeds):
            print(line, flush=True)


if __name__ == "__main__":
    main()
