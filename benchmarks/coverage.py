"""Coverage of the reported standard errors: does ±2 SE cover the exhaustive value?

    python benchmarks/coverage.py [--seeds 100] [--n 4000] [--d 48]

On generated exports small enough for brute force (sentence-encoder-like rows, and the same rows
with log-normal norms), the exhaustive value of each sampled check is computed in float64 over
every row as a query (and, for EA301, over many gauge draws); then the audit runs once per seed at
its default sample sizes, and the share of seeds whose value lies within 2 reported standard
errors of the exhaustive one is printed per check. Target: at least 90 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embaudit import CheckResult, audit
from embaudit.checks.hygiene import FLOOR_MADS, MAD_TO_SD
from embaudit.knn import exact_lists
from embaudit.measure import canonical_scale
from tests.exports import encoder_like, lognormal_norms

#: Gauge draws of the exhaustive EA301 value (the audit draws 3 per level).
REFERENCE_DRAWS = 40


def _top(x: np.ndarray, metric: str, k: int) -> np.ndarray:
    rows = np.arange(len(x))
    blocks = [exact_lists(x, rows[i : i + 500], k, metric)[0] for i in range(0, len(x), 500)]
    return np.concatenate(blocks)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    k = a.shape[1]
    return float(np.mean([len(np.intersect1d(p, q)) / k for p, q in zip(a, b, strict=True)]))


def exhaustive(x: np.ndarray, k: int = 10, seed: int = 12345) -> dict[str, float]:
    """Every check's value with every row a query (and EA301 over many draws), in float64."""
    cosine = _top(x, "cosine", k)
    rng = np.random.default_rng(seed)
    gauge = [_overlap(cosine, _top(x * np.exp(rng.normal(0, 0.5, x.shape[1])), "cosine", k))]
    gauge += [
        _overlap(cosine, _top(x * np.exp(rng.normal(0, 0.5, x.shape[1])), "cosine", k))
        for _ in range(REFERENCE_DRAWS - 1)
    ]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    nearest = cos.max(axis=1)
    np.fill_diagonal(cos, 0.0)
    mean = cos.sum(axis=1) / (len(x) - 1)
    median = np.median(nearest)
    floor = median - FLOOR_MADS * MAD_TO_SD * np.median(np.abs(nearest - median))
    return {
        "EA301": float(np.mean(gauge)),
        # The canonical gauge of every row (the audit estimates it on its query sample).
        "EA302": _overlap(cosine, _top(x * canonical_scale(x), "cosine", k)),
        "EA401": _overlap(cosine, _top(x, "l2", k)),
        "EA402": _overlap(cosine, _top(x, "dot", k)),
        "EA005": float(np.mean(nearest >= 0.99)),
        "EA206": float(np.median((1 - mean) / (1 - nearest))),
        "EA503": float(np.mean(nearest < floor)),
    }


def planted(x: np.ndarray, seed: int = 3) -> np.ndarray:
    """10% of the rows replaced by perturbed copies of others, 3% by random directions: shares
    of EA005 and EA503 away from 0."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    x = x.copy()
    rows = rng.permutation(n)
    copies, outliers = rows[: n // 10], rows[n // 10 : n // 10 + 3 * n // 100]
    originals = rng.choice(rows[n // 5 :], size=len(copies))
    scale = np.linalg.norm(x[originals], axis=1)[:, None] / np.sqrt(d)
    x[copies] = x[originals] + 0.07 * scale * rng.standard_normal((len(copies), d))
    x[outliers] = rng.standard_normal((len(outliers), d))
    return x


def _standard_error(check: CheckResult) -> float:
    """The reported error of a check's value (EA301: of its headline level, s = 0.5)."""
    if check.code == "EA301":
        (level,) = [row for row in check.metrics["levels"] if row["s"] == 0.5]
        return float(level["standard_error"])
    return float(check.metrics["standard_error"])


def study(name: str, x: np.ndarray, seeds: int) -> list[str]:
    started = time.perf_counter()
    reference = exhaustive(x)
    covered = dict.fromkeys(reference, 0)
    errors = {code: [] for code in reference}
    for seed in range(seeds):
        report = audit(x, seed=seed, select="EA3,EA4,EA005,EA206,EA503", ignore="EA303")
        for code, value in reference.items():
            check = report.check(code)
            error = _standard_error(check)
            errors[code].append(error)
            covered[code] += abs(check.value - value) <= 2 * error
    lines = []
    for code, value in reference.items():
        share = covered[code] / seeds
        lines.append(
            f"| {name} | {code} | {value:.4f} | {np.mean(errors[code]):.4f} | {share:.0%} |"
        )
    print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--d", type=int, default=48)
    args = parser.parse_args()
    unit = encoder_like(args.n, args.d, seed=1, common=0.5)
    exports = {
        f"sentence-like {args.n} × {args.d}": unit,
        f"log-normal norms {args.n} × {args.d}": lognormal_norms(unit, seed=2),
        f"planted copies and outliers {args.n} × {args.d}": planted(unit),
    }
    print("| export | check | exhaustive value | mean reported SE | within 2 SE |")
    print("|---|---|---:|---:|---:|")
    for name, x in exports.items():
        for line in study(name, x, args.seeds):
            print(line)


if __name__ == "__main__":
    main()
