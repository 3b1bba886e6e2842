"""What the default sample sizes cost and buy: the pass's time against the rows it stacks, and
the standard errors of the checks those rows serve, on bench_realistic.py's exports.

    python benchmarks/bench_sampling.py [--n 1000000] [--d 768] [--kinds lognormal,anisotropic]

embaudit's pass multiplies every chunk by one stack of query rows: the ``queries`` base rows,
and ``gauge_queries`` rows under each of the ``len(gauge_levels) * gauge_draws`` random gauges,
the canonical gauge and its jitters. Its time grows with that stack, which the defaults are
chosen to keep within the performance budget. For each data kind this measures, in one process
and one run (warm page cache, the local engine on every core), the bare float32 product of 1,000
query rows (bench_realistic.py's baseline), then ``measure`` (one pass, no adaptive round) at the
default sizes and with one size changed at a time, and prints per variant the stacked rows, the
measurement's and the pass's seconds and their ratio to the bare product, and the value and
standard error of EA301 (gauge sensitivity), EA302 (canonical gauge) and EA401 (cosine vs L2).
With one draw per level EA301's error cannot hold the draws' variation (it is the queries'
alone): a smaller error there is not a more precise estimate.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_index import machine  # noqa: E402
from bench_realistic import QUERIES, bare_product, export, warm  # noqa: E402

from embaudit.checks import REGISTRY, AuditData  # noqa: E402
from embaudit.measurement.gauges import JITTER_DRAWS  # noqa: E402
from embaudit.measurement.sampling import Sampling  # noqa: E402
from embaudit.measurement.steps import measure  # noqa: E402
from embaudit.options import CheckOptions  # noqa: E402
from embaudit.sources import open_source  # noqa: E402

VARIANTS: dict[str, dict[str, int]] = {
    "defaults": {},
    "gauge_draws 2": {"gauge_draws": 2},
    "gauge_draws 1": {"gauge_draws": 1},
    "gauge_queries 25": {"gauge_queries": 25},
    "queries 250": {"queries": 250},
}
CODES = ("EA301", "EA302", "EA401")


def stacked(sampling: Sampling) -> int:
    """The query rows the first pass stacks at these sizes (gauges, canonical, jitters)."""
    blocks = len(sampling.gauge_levels) * sampling.gauge_draws + 1 + JITTER_DRAWS
    return sampling.queries + sampling.gauge_queries * blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--kinds", default="lognormal,anisotropic")
    args = parser.parse_args()
    lines = [
        f"Machine: {machine()}. `python benchmarks/bench_sampling.py --n {args.n} --d {args.d}`;"
        " one run, warm page cache, `measure` with the local engine (one pass, no round).",
        "",
        "| data | variant | stacked rows | measure (s) | pass (s) | pass / bare | "
        + " | ".join(f"{code} ± se" for code in CODES)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(CODES),
    ]
    for kind in args.kinds.split(","):
        path = export(kind, args.n, args.d)
        warm(path)
        x = np.load(path, mmap_mode="r")
        rows = np.sort(np.random.default_rng(1).choice(len(x), size=QUERIES, replace=False))
        bare = bare_product(x, np.ascontiguousarray(x[rows], dtype=np.float32))
        lines.append(f"| {kind} | bare product of {QUERIES:,} rows | | | {bare:.1f} | 1.00× |")
        source = open_source(path)
        for name, change in VARIANTS.items():
            sampling = replace(Sampling(), **change)
            started = time.perf_counter()
            measured = measure(source, k=10, seed=0, sampling=sampling)
            seconds = time.perf_counter() - started
            data = AuditData(
                replace(CheckOptions(), sampling=sampling),
                measured.stats,
                measured.geometry,
                measured.neighbors,
            )
            estimates = []
            for code in CODES:
                result = REGISTRY[code].run(data)
                error = result.metrics.get("standard_error")
                shown = "–" if error is None else f"{error:.3f}"
                estimates.append(f"{result.value:.3f} ± {shown} ({result.status.value})")
            passed = measured.timings["pass"]
            lines.append(
                f"| {kind} | {name} | {stacked(sampling):,} | {seconds:.1f} | {passed:.1f} | "
                f"{passed / bare:.2f}× | " + " | ".join(estimates) + " |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
