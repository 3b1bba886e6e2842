"""Index readiness on an unnormalized export: EA701 / EA702 for an HNSW index with the cosine and
the inner-product metric, the efSearch sweep, and the wall time of the build and of the audit.

    python benchmarks/bench_index.py [--n 200000] [--d 768] [--spec HNSW32] [--sigma 1.0]

The export is benchmarks/make_data.py's clustered rows (normalized), each rescaled by a
log-normal norm exp(N(0, sigma^2)) as unnormalized exports are (tests/exports.py,
``lognormal_norms``); it is generated once under benchmarks/data/ and read once before timing
(warm page cache). The audits declare a cosine objective (--trained-with cosine): EA702 counts
the cosine neighbours that the index returns. The script prints a Markdown section for
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import embaudit
from embaudit.index import _faiss

faiss = _faiss()  # as embaudit loads it: on numpy's BLAS kernel (bench_faiss_kernel.py)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import clustered_chunks  # noqa: E402


def lognormal_export(path: Path, n: int, d: int, sigma: float, seed: int = 0) -> Path:
    """Clustered unit rows times log-normal norms, written through a memory map (once)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed + 1)
    start = 0
    for block in clustered_chunks(n, d, seed=seed, normalize=True):
        norms = np.exp(rng.normal(0.0, sigma, size=len(block))).astype(np.float32)
        out[start : start + len(block)] = block * norms[:, None]
        start += len(block)
    out.flush()
    del out
    return path


def warm(path: Path) -> None:
    x = np.load(path, mmap_mode="r")
    for start in range(0, len(x), 65_536):
        float(np.asarray(x[start : start + 65_536]).sum())


def timed_audit(path: Path, **options: Any) -> tuple[embaudit.CheckReport, float, float]:
    """The report, its wall time and the CPU time of this process (every thread) in seconds:
    on a machine shared with other jobs, the second does not grow with their load."""
    started, cpu = time.perf_counter(), time.process_time()
    report = embaudit.audit(path, trained_with="cosine", **options)
    return report, time.perf_counter() - started, time.process_time() - cpu


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads); "
        f"{time.strftime('%Y-%m-%d')}"
    )


Timed = tuple[embaudit.CheckReport, float, float]


def section(args: argparse.Namespace, plain: Timed, runs: dict[str, Timed], load: str) -> str:
    lines = [
        f"## Index readiness: {args.spec} on {args.n // 1000}k × {args.d}, unnormalized "
        f"(log-normal norms, σ = {args.sigma:g})",
        "",
        "```bash",
        f"python benchmarks/bench_index.py --n {args.n} --d {args.d} --spec {args.spec} "
        f"--sigma {args.sigma:g}",
        "```",
        "",
        f"`embaudit check FILE --trained-with cosine --index {args.spec} --index-metric METRIC` "
        f"(k = 10, 500 queries). Audit without --index: {plain[1]:.1f} s wall, {plain[2]:.1f} s "
        "CPU.",
        "",
        "| --index-metric | EA701 recall@10 (default efSearch) | EA702 cosine neighbours "
        "returned | EA702 status | recommended | build (wall) | audit with --index (wall, CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric, (report, wall, cpu) in runs.items():
        recall, wanted = report.check("EA701"), report.check("EA702")
        recommended = recall.metrics["recommended"]
        setting = (
            "none" if recommended is None else f"{recommended['param']} {recommended['value']}"
        )
        build = report.timings.get("index_build_seconds", float("nan"))
        lines.append(
            f"| {metric} | {recall.value:.3f} | {wanted.value:.3f} | {wanted.status} | "
            f"{setting} | {build:.1f} s | {wall:.1f} s, {cpu:.1f} s |"
        )
    for metric, (report, _, _) in runs.items():
        recall, wanted = report.check("EA701"), report.check("EA702")
        lines += [
            "",
            f"Sweep, --index-metric {metric} (exact {metric}/cosine agreement "
            f"{wanted.metrics['exact_agreement']:.3f}):",
            "",
            "| efSearch | EA701 recall@10 | EA702 cosine neighbours | ms per query |",
            "|---|---|---|---|",
        ]
        for point, objective in zip(recall.metrics["sweep"], wanted.metrics["sweep"], strict=True):
            lines.append(
                f"| {point['value']} | {point['recall']:.3f} | {objective['overlap_at_k']:.3f} "
                f"| {point['ms_per_query']:.3f} |"
            )
        stages = ", ".join(
            f"{name.removesuffix('_seconds')} {seconds:.1f} s"
            for name, seconds in report.timings.items()
            if name.startswith(("index_", "pass", "total"))
        )
        lines += ["", f"Stages ({metric}): {stages}.", "", f"EA702: {wanted.message}"]
    lines += ["", f"Machine: {machine()}. Load average (1 min) before and after: {load}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--spec", default="HNSW32")
    parser.add_argument("--sigma", type=float, default=1.0)
    args = parser.parse_args()
    path = lognormal_export(
        HERE / "data" / f"lognormal_{args.n // 1000}k_{args.d}_s{args.sigma:g}.npy",
        args.n,
        args.d,
        args.sigma,
    )
    warm(path)
    before = os.getloadavg()[0]
    plain = timed_audit(path)
    runs = {
        metric: timed_audit(path, index=args.spec, index_metric=metric)
        for metric in ("cosine", "ip")
    }
    load = f"{before:.1f}, {os.getloadavg()[0]:.1f}"
    print(section(args, plain, runs, load))


if __name__ == "__main__":
    main()
