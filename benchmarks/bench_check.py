"""`embaudit check` against the pipeline a practitioner writes by hand with faiss and numpy.

    python benchmarks/bench_check.py [--n 1000000] [--d 768] [--skip-manual]

On the same file, with the same query rows, gauge draws and sample, it times:

* embaudit: ``embaudit.audit(path)`` end to end with default options, and its stages;
* by hand: a pass for norms and non-finite rows; a normalized copy and ``faiss.knn`` per metric
  (cosine, L2, inner product) for the query sample against the full file; per gauge draw (and the
  canonical gauge) a rescaled, normalized copy and a search; covariance eigenvalues of the
  sample; a cosine kNN graph of the sample for hubness;
* the kNN stage alone (embaudit's NeighborSearch over the file's chunks) against a bare float32
  matrix product of the same shape, in the same process.

It prints both times, their ratio, and the kNN throughput ratio. The file is generated once
(benchmarks/make_data.py) and read once before timing (warm page cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

import embaudit
from embaudit.draw import draw_clean_rows
from embaudit.knn import Block, NeighborSearch
from embaudit.measurement.gauges import canonical_scale, gauge_scales
from embaudit.measurement.sampling import Sampling
from embaudit.sources import open_source
from embaudit.stats import CleanRows, row_norms

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import ensure  # noqa: E402


def timed(label: str, results: dict[str, float]):
    class Timer:
        def __enter__(self) -> None:
            self.started = time.perf_counter()

        def __exit__(self, *_: object) -> None:
            results[label] = time.perf_counter() - self.started

    return Timer()


def by_hand(path: Path, k: int, seed: int, sampling: Sampling) -> dict[str, float]:
    """The same diagnostics, written with numpy and faiss as a practitioner would."""
    stages: dict[str, float] = {}
    x = np.load(path, mmap_mode="r")
    n, d = x.shape
    source = open_source(path)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    query_rows, queries, _ = draw_clean_rows(source, sampling.queries, streams[0])
    gauges = gauge_scales(d, sampling.gauge_levels, sampling.gauge_draws, seed)
    gauge_rows = query_rows[: sampling.gauge_queries]
    with timed("norms and non-finite rows", stages):
        norms = np.empty(n, dtype=np.float32)
        bad = 0
        for start in range(0, n, 65536):
            block = np.asarray(x[start : start + 65536])
            bad += int((~np.isfinite(block).all(axis=1)).sum())
            norms[start : start + 65536] = np.linalg.norm(block, axis=1)
    with timed("normalized copy + 3 searches", stages):
        normalized = np.ascontiguousarray(x, dtype=np.float32) / norms[:, None]
        faiss.knn(normalized[query_rows], normalized, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        del normalized
        raw = np.ascontiguousarray(x, dtype=np.float32)
        faiss.knn(raw[query_rows], raw, k + 1, metric=faiss.METRIC_L2)
        faiss.knn(raw[query_rows], raw, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    scales = [scale for _, scale in gauges] + [canonical_scale(queries)]
    with timed(f"{len(scales)} gauges: rescaled normalized copy + search", stages):
        for scale in scales:
            rescaled = raw * scale.astype(np.float32)
            rescaled /= np.linalg.norm(rescaled, axis=1, keepdims=True)
            faiss.knn(rescaled[gauge_rows], rescaled, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
            del rescaled
    sample_rows = np.sort(streams[1].choice(n, size=min(n, sampling.sample), replace=False))
    sample = np.asarray(x[sample_rows], dtype=np.float64)
    with timed("covariance eigenvalues", stages):
        np.linalg.eigvalsh(np.cov(sample.T))
    with timed("hubness kNN graph", stages):
        unit = (sample / np.linalg.norm(sample, axis=1, keepdims=True)).astype(np.float32)
        faiss.knn(unit, unit, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    del raw
    return stages


def knn_stage(path: Path, k: int, seed: int, sampling: Sampling) -> tuple[float, float, int]:
    """(embaudit kNN stage seconds, bare matmul seconds, stacked query rows), same process."""
    source = open_source(path)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    query_rows, queries, _ = draw_clean_rows(source, sampling.queries, streams[0])
    gauges = gauge_scales(source.d, sampling.gauge_levels, sampling.gauge_draws, seed)
    blocks = [Block("base", len(query_rows))]
    blocks += [Block("g", sampling.gauge_queries, scale) for _, scale in gauges]
    blocks.append(Block("canonical", sampling.gauge_queries, canonical_scale(queries)))
    engine = NeighborSearch(queries, query_rows, k, blocks)
    stacked = engine.stacked
    engine_seconds = bare_seconds = 0.0
    for chunk in source.chunks():
        values = chunk.values.astype(np.float64)
        norms = row_norms(values)
        unit = (values / norms[:, None]).astype(np.float32)
        rows = CleanRows(chunk.start + np.arange(len(values)), values, norms, unit)
        started = time.perf_counter()
        engine.add(rows)
        engine_seconds += time.perf_counter() - started
        started = time.perf_counter()
        stacked @ unit.T
        bare_seconds += time.perf_counter() - started
    return engine_seconds, bare_seconds, stacked.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--skip-manual", action="store_true", help="skip the faiss pipeline")
    args = parser.parse_args()
    path = HERE / "data" / f"clustered_{args.n}_{args.d}.npy"
    if args.n == 1_000_000 and args.d == 768 and (HERE / "data" / "clustered_1m_768.npy").exists():
        path = HERE / "data" / "clustered_1m_768.npy"
    ensure(path, args.n, args.d)
    with path.open("rb") as stream:  # warm the page cache
        while stream.read(1 << 26):
            pass
    sampling, k, seed = Sampling(), 10, 0
    print(f"file: {path.name}, {args.n:,} x {args.d} float32, {path.stat().st_size:,} bytes")
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, faiss {faiss.__version__}"
    )
    print(f"defaults: {sampling.to_dict()}, k={k}, seed={seed}")
    print()

    started = time.perf_counter()
    report = embaudit.audit(path, k=k, seed=seed, sampling=sampling)
    ours = time.perf_counter() - started
    print(f"embaudit check (in process): {ours:.2f} s, verdict {report.verdict.level.value}")
    for stage, seconds in report.timings.items():
        print(f"  {stage:<28} {seconds:7.2f} s")

    started = time.perf_counter()
    done = subprocess.run(
        ["embaudit", "check", str(path), "--quiet"], capture_output=True, text=True, check=False
    )
    cli = time.perf_counter() - started
    print(f"embaudit check (CLI, wall):  {cli:.2f} s, exit {done.returncode}")

    engine_seconds, bare_seconds, stacked = knn_stage(path, k, seed, sampling)
    print()
    print(
        f"kNN stage alone: {engine_seconds:.2f} s; bare float32 product ({stacked} x {args.d}) @ "
        f"({args.d} x {args.n:,}): {bare_seconds:.2f} s"
    )
    print(f"kNN throughput / bare product throughput: {bare_seconds / engine_seconds:.0%}")

    if not args.skip_manual:
        print()
        stages = by_hand(path, k, seed, sampling)
        manual = sum(stages.values())
        print(f"by hand with faiss + numpy: {manual:.2f} s")
        for stage, seconds in stages.items():
            print(f"  {stage:<52} {seconds:7.2f} s")
        print()
        print(f"speed-up of embaudit over the hand-written pipeline: {manual / ours:.1f}x")


if __name__ == "__main__":
    main()
