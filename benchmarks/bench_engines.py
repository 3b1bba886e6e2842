"""The Ray engine against the local engine on the same parquet file, in one process.

    python benchmarks/bench_engines.py [--n 1000000] [--d 768] [--workers 2] [--repeat 1]

Runs ``embaudit.audit(path)`` with ``engine="local"`` and then on a Ray cluster started in this
process with ``--workers`` CPUs (the start-up is timed apart: a real cluster is already running),
checks that both reports are equal, and prints:

* wall time of each engine and their ratio (the Ray engine's overhead on this machine);
* the map stage: worker-seconds summed over fragments, rows per worker-second (the throughput a
  scaling model multiplies by the number of workers), and the fragment count;
* the driver's own stages (query fetch, reduce and duplicate check, geometry on the sample).

Figures feed ``benchmarks/SCALING.md``. The file is generated once (benchmarks/make_data.py) and
read once before timing (warm page cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import embaudit
from embaudit.engines import LocalEngine, RayEngine
from embaudit.sources import open_source

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import ensure  # noqa: E402


def comparable(report: embaudit.Report) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(report.to_dict()))
    out.pop("timings")
    out["params"].pop("engine")
    return out


def run(path: Path, engine: Any) -> tuple[float, embaudit.Report]:
    started = time.perf_counter()
    report = embaudit.audit(path, engine=engine)
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (best is kept)")
    args = parser.parse_args()
    suffix = f"{args.n // 1000}k" if args.n < 1_000_000 else f"{args.n // 1_000_000}m"
    path = ensure(HERE / "data" / f"clustered_{suffix}_{args.d}.parquet", args.n, args.d)
    with path.open("rb") as stream:  # warm the page cache
        while stream.read(64 * 2**20):
            pass

    import ray

    local_times, local = [], None
    for _ in range(args.repeat):
        seconds, local = run(path, LocalEngine())
        local_times.append(seconds)
    started = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - started
    ray_engine = RayEngine()
    run(path, ray_engine) if args.repeat > 1 else None  # workers warm (imports) when repeating
    ray_times, remote = [], None
    for _ in range(args.repeat):
        seconds, remote = run(path, ray_engine)
        ray_times.append(seconds)
    ray.shutdown()
    assert local is not None and remote is not None
    same = comparable(local) == comparable(remote)

    local_best, ray_best = min(local_times), min(ray_times)
    timings = remote.timings
    map_seconds = timings["map_seconds"]
    fragments = len(open_source(path).fragments())
    print(f"input: {path.name}, {args.n:,} x {args.d} float32 parquet, {fragments} fragments")
    runs = ", ".join(f"{t:.1f}" for t in local_times)
    print(f"local engine: {local_best:.1f} s   (runs: {runs})")
    print(
        f"ray engine ({args.workers} workers): {ray_best:.1f} s   "
        f"(runs: {', '.join(f'{t:.1f}' for t in ray_times)}; cluster start {startup:.1f} s, "
        "not included)"
    )
    print(f"overhead ratio ray / local: {ray_best / local_best:.2f}")
    print(f"reports equal (but for timings and engine): {same}")
    print(
        f"map: {map_seconds:.1f} worker-seconds over {fragments} fragments -> "
        f"{args.n / map_seconds:,.0f} rows per worker-second "
        f"({args.n * args.d * 4 / map_seconds / 2**20:,.0f} MiB/s per worker)"
    )
    pass_seconds = timings["pass_seconds"]
    print(
        f"ray pass wall {pass_seconds:.1f} s -> parallel efficiency "
        f"{map_seconds / (pass_seconds * args.workers):.0%} on {args.workers} workers"
    )
    stages = ("queries", "merge", "reduce", "geometry")
    driver = {name: timings.get(f"{name}_seconds", 0.0) for name in stages}
    driver["checks"] = timings["total_seconds"] - timings["measure_seconds"]
    print(
        "driver stages: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in driver.items())
        + f"; total {timings['total_seconds']:.1f} s"
    )
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}, "
        f"ray {ray.__version__}"
    )


if __name__ == "__main__":
    main()
