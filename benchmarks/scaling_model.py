"""Predicted wall time and memory of `embaudit check --engine ray` for n vectors on w workers.

    python benchmarks/scaling_model.py                       # LAION-5B: 5.85B x 768 float16
    python benchmarks/scaling_model.py --n 1000000000 --workers 32 --rate 26902

The model and every constant are explained in benchmarks/SCALING.md; the defaults are figures
measured on the 2-core benchmark machine (benchmarks/bench_engines.py, bench_ray_scale.py, the
shuffle's reduce and the row reads timed in one process) or assumptions said there.

    T(n, w) = T_map + T_shuffle + T_driver

    T_map     = n / (w * rate * efficiency)          the pass, spread over the workers
    T_shuffle = ceil(B / w) * (n / B / sort_rate + 2 f n / B / take_rate)
                one reduce per bucket, after the last map: sort the bucket's hashes, read the
                rows whose hash repeats (f: share of rows that repeat another)
    T_driver  = queries + geometry                   constant (the reduce is merged as it comes)
"""

from __future__ import annotations

import argparse
import math

ENTRY_BYTES = 16  # a clean row's (hash, position) in the shuffle
BUCKET_BYTES = 256 * 2**20
MIN_SHARE_BYTES = 128 * 2**10
FRAGMENT_BYTES = 256 * 2**20
MAX_FRAGMENTS = 2048


def layout(n: int, row_bytes: int) -> tuple[int, int]:
    """Fragments and buckets as embaudit cuts them (sources.base, stats.shuffle)."""
    total = n * row_bytes
    fragment = max(FRAGMENT_BYTES, -(-total // MAX_FRAGMENTS))
    fragments = -(-total // fragment)
    wanted = max(1, -(-n * ENTRY_BYTES // BUCKET_BYTES))
    buckets = 1 << (wanted - 1).bit_length()
    while buckets > 1 and buckets > n * ENTRY_BYTES // fragments // MIN_SHARE_BYTES:
        buckets //= 2
    return fragments, buckets


def predict(n: int, w: int, args: argparse.Namespace) -> dict[str, float]:
    fragments, buckets = layout(n, args.d * args.itemsize)
    per_bucket = n / buckets
    reduce = per_bucket / args.sort_rate + 2 * args.duplicates * per_bucket / args.take_rate
    out = {
        "fragments": fragments,
        "buckets": buckets,
        "map": n / (w * args.rate * args.efficiency),
        "shuffle": math.ceil(buckets / w) * reduce,
        "driver": args.queries + args.geometry,
        "read_gbps": n * args.d * args.itemsize / (n / (w * args.rate * args.efficiency)) / 1e9,
        "traffic_gb": n * ENTRY_BYTES / 1e9,
        "driver_gib": args.driver_base + fragments * (buckets + 1) * args.ref_bytes / 2**30,
        "reduce_gib": per_bucket * ENTRY_BYTES * args.reduce_copies / 2**30,
    }
    out["total"] = out["map"] + out["shuffle"] + out["driver"]
    return out


def clock(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5_850_000_000])
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--itemsize", type=int, default=2, help="bytes per stored value")
    parser.add_argument("--workers", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--rate", type=float, default=40_428, help="rows per worker-second")
    parser.add_argument("--efficiency", type=float, default=0.9, help="parallel efficiency")
    parser.add_argument("--sort-rate", type=float, default=23.9e6, help="entries/s per reduce")
    parser.add_argument("--take-rate", type=float, default=209_830, help="rows/s read by pread")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of repeated rows")
    parser.add_argument("--queries", type=float, default=3.5, help="driver s, query rows")
    parser.add_argument("--geometry", type=float, default=1.23, help="driver s, constant")
    parser.add_argument("--driver-base", type=float, default=0.54, help="GiB, measured at 768-d")
    parser.add_argument("--ref-bytes", type=float, default=1024, help="driver bytes per object")
    parser.add_argument("--reduce-copies", type=float, default=2.5, help="bucket copies held")
    args = parser.parse_args()
    print(
        "| rows | workers | fragments × buckets | map | shuffle | driver | total | read "
        "| shuffle traffic | driver RAM | reduce task RAM |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.n:
        for w in args.workers:
            p = predict(n, w, args)
            print(
                f"| {n:,} | {w} | {p['fragments']:,} × {p['buckets']} | {clock(p['map'])} "
                f"| {p['shuffle']:.0f} s | {p['driver']:.0f} s | **{clock(p['total'])}** "
                f"| {p['read_gbps']:.1f} GB/s | {p['traffic_gb']:.0f} GB "
                f"| {p['driver_gib']:.1f} GiB | {p['reduce_gib']:.2f} GiB |"
            )


if __name__ == "__main__":
    main()
