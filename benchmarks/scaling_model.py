"""Predicted wall time of `embaudit check --engine ray` for n vectors on w workers.

    python benchmarks/scaling_model.py [--rate 30566] [--efficiency 0.9] ...

The model and every constant are explained in benchmarks/SCALING.md; the defaults are the figures
measured on the 2-core benchmark machine (768-d float32 parquet, default sample sizes) by
benchmarks/bench_engines.py and benchmarks/bench_reduce.py.

    T(n, w) = T_queries + T_map + T_reduce + T_checks + T_geometry

    T_map     = n / (w * rate * efficiency)            the pass, spread over the workers
    T_queries = groups(n) * group_read / (w * efficiency)
                groups(n): row groups holding the ~1,016 candidate query rows
    T_reduce  = reduce_per_row * n                     driver: merge and duplicate check
    T_checks  = checks_per_row * n                     driver: checks on per-row statistics
    T_geometry                                         driver: the 5,000-row sample, constant
"""

from __future__ import annotations

import argparse
import math


def touched_groups(n: int, group_rows: int, candidates: int) -> float:
    """Expected distinct row groups holding ``candidates`` rows drawn without replacement."""
    groups = math.ceil(n / group_rows)
    return groups * (1 - math.exp(-candidates / groups))


def predict(n: int, w: int, args: argparse.Namespace) -> dict[str, float]:
    parallel = w * args.efficiency
    parts = {
        "queries": touched_groups(n, args.group_rows, args.candidates) * args.group_read / parallel,
        "map": n / (args.rate * parallel),
        "reduce": args.reduce_per_row * n,
        "checks": args.checks_per_row * n,
        "geometry": args.geometry,
    }
    parts["total"] = sum(parts.values())
    return parts


def clock(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=26_902, help="rows per worker-second")
    parser.add_argument("--efficiency", type=float, default=0.9, help="parallel efficiency")
    parser.add_argument("--group-rows", type=int, default=65_536, help="rows per row group")
    parser.add_argument("--group-read", type=float, default=0.44, help="worker-s per row group")
    parser.add_argument("--candidates", type=int, default=1_016, help="candidate query rows")
    parser.add_argument("--reduce-per-row", type=float, default=9.9e-8, help="driver s per row")
    parser.add_argument("--checks-per-row", type=float, default=9.1e-8, help="driver s per row")
    parser.add_argument("--geometry", type=float, default=1.65, help="driver s, constant")
    parser.add_argument("--driver-bytes-per-row", type=float, default=34)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000_000, 1_000_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 128])
    args = parser.parse_args()
    print("| rows | workers | queries | map | reduce | checks | geometry | total | driver RAM |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.n:
        for w in args.workers:
            p = predict(n, w, args)
            ram = args.driver_bytes_per_row * n / 2**30
            print(
                f"| {n:,} | {w} | {p['queries']:.0f} s | {p['map']:.0f} s | {p['reduce']:.0f} s "
                f"| {p['checks']:.0f} s | {p['geometry']:.1f} s | **{clock(p['total'])}** "
                f"| {ram:.1f} GiB |"
            )


if __name__ == "__main__":
    main()
