"""Gates that do not flap: EA301's status over 20 seeds on an export whose value sits at its
threshold, measured once at the default sample sizes (before) and with the audit measuring
again while the threshold lies inside the value's 95% interval (after).

    python benchmarks/flapping.py [--seeds 20] [--sigma 0.95]

The export: 3,000 × 128 rows, 300 clusters of 10 (standard normal centres) plus noise of
standard deviation ``sigma``, declared ``--trained-with dot`` so that EA301 fails below 0.8 at
s = 0.5; at sigma = 0.95 its value is about 0.8. "Before" is the same audit with
``embaudit.pipelines.check.MAX_ROUNDS = 0`` (measure once, as embaudit did before). Prints a
Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402

import embaudit  # noqa: E402
import embaudit.pipelines.check as pipeline  # noqa: E402


def export(sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(300), 10)
    return rng.standard_normal((300, 128))[labels] + sigma * rng.standard_normal((3000, 128))


def run(x: np.ndarray, seeds: int, rounds: int) -> tuple[list[embaudit.CheckResult], float]:
    saved, pipeline.MAX_ROUNDS = pipeline.MAX_ROUNDS, rounds
    started = time.perf_counter()
    try:
        checks = [
            embaudit.audit(x, seed=seed, select="EA301", trained_with="dot").check("EA301")
            for seed in range(seeds)
        ]
    finally:
        pipeline.MAX_ROUNDS = saved
    return checks, (time.perf_counter() - started) / seeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--sigma", type=float, default=0.95)
    args = parser.parse_args()
    x = export(args.sigma)
    before, before_seconds = run(x, args.seeds, 0)
    after, after_seconds = run(x, args.seeds, pipeline.MAX_ROUNDS)

    def counts(checks: list[embaudit.CheckResult]) -> str:
        tally = collections.Counter(check.status.value for check in checks)
        return ", ".join(f"{status} {count}" for status, count in sorted(tally.items()))

    def statuses(checks: list[embaudit.CheckResult]) -> str:
        return " ".join(check.status.value[0].upper() for check in checks)

    inconclusive = sum(bool(check.metrics.get("inconclusive")) for check in after)
    lines = [
        f"## Gates that do not flap: EA301 over {args.seeds} seeds at its threshold",
        "",
        f"Machine: {machine()}. `python benchmarks/flapping.py --seeds {args.seeds} --sigma "
        f"{args.sigma:g}`: 3,000 × 128 rows in 300 clusters of 10 plus noise σ = "
        f"{args.sigma:g}, `--trained-with dot` (EA301 fails below 0.8 at s = 0.5).",
        "",
        "| | statuses by seed (P pass, F fail) | count | EA301 values | seconds per audit |",
        "|---|---|---|---|---|",
        f"| before (measured once) | {statuses(before)} | {counts(before)} | "
        f"{min(c.value for c in before):.3f}–{max(c.value for c in before):.3f} | "
        f"{before_seconds:.1f} |",
        f"| after (measured again while undecided) | {statuses(after)} | {counts(after)} | "
        f"{min(c.value for c in after):.3f}–{max(c.value for c in after):.3f} | "
        f"{after_seconds:.1f} |",
        "",
        f"After: {inconclusive} of {args.seeds} seeds were still inside the interval at the cap "
        "(8× the queries and gauge draws) and say 'inconclusive at the cap'; their status follows "
        "the point estimate.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
