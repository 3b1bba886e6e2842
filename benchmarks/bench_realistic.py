"""`embaudit check` on realistic 1M × 768 exports, against the bare float32 product and against
the pipeline a practitioner writes by hand, in one run (issue #14's measurement).

    python benchmarks/bench_realistic.py [--n 1000000] [--d 768] [--kinds normalized,...]

Three kinds of float32 data, generated once under benchmarks/data/ (make_data.py's clusters):

* ``normalized``: clustered unit rows;
* ``lognormal``: the same rows times log-normal norms exp(N(0, 1)), as unnormalized exports are;
* ``anisotropic``: sentence-encoder-like rows: unit clustered rows plus a common direction of
  length 0.8 (mean cosine about 0.4, as sentence encoders give) and three rogue dimensions 8
  times the others, normalized.

For each, with a warm page cache, in one process (each embaudit run in a child process,
whose peak RSS is read from ``getrusage``), the bare product and embaudit ``--reps`` times
(default 3), alternating, so that a slow spell of a shared machine weighs on both; their medians
are compared:

* the bare product: 1,000 query rows against every row in 65,536-row chunks, float32;
* embaudit's products alone, the floor of its pass at the default sample sizes: its queries
  and the rows it stacks for the gauges (the gauge queries under every random gauge, the
  canonical gauge and its jitters) against every row (with ``gauge-rows``, the gauge rows
  against their sample of rows);
* ``embaudit check FILE --format json`` with default options: wall time, ratio to the bare
  product, peak RSS;
* the practitioner's pipeline: the file read into memory, ``faiss.knn`` of the 1,000 query
  rows against every row for cosine (a normalized copy), L2 and inner product; gauge searches
  of the same 1,000 rows (4 levels × 2 draws) against every row, rescaled; covariance
  eigenvalues of 50,000 rows; a hubness kNN graph of 10,000 rows.

faiss-cpu's wheels bundle their own OpenBLAS, older than numpy's: on a processor it does not
recognize it falls back to a generic kernel (``Prescott``), and ``faiss.knn`` runs several times
slower than numpy's product on the same machine (a virtualized Intel Xeon: 8.3 s against
1.5 s for 1,000 × 200,000 × 768). The practitioner is given the kernel numpy's OpenBLAS chose
(``OPENBLAS_CORETYPE``, set before faiss is imported, unless already set), so that the baseline
is not slowed by a library's misdetection; the embaudit child runs without it. The header names
both libraries' kernels.

Prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

_INHERITED_CORETYPE = os.environ.get("OPENBLAS_CORETYPE")
_NUMPY_KERNEL = next(
    (i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"),
    None,
)
if _INHERITED_CORETYPE is None and _NUMPY_KERNEL:
    os.environ["OPENBLAS_CORETYPE"] = _NUMPY_KERNEL

import faiss  # noqa: E402  (after OPENBLAS_CORETYPE: its bundled OpenBLAS reads it on load)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import lognormal_export, machine  # noqa: E402
from make_data import clustered_chunks, ensure  # noqa: E402

from embaudit.measurement.gauges import JITTER_DRAWS, canonical_queries, level_queries  # noqa: E402
from embaudit.measurement.sampling import Sampling, gauge_corpus  # noqa: E402

CHUNK = 65_536
QUERIES = 1000
KINDS = ("normalized", "lognormal", "anisotropic")


def anisotropic_export(path: Path, n: int, d: int, seed: int = 0) -> Path:
    """Clusters, a common direction and three rogue dimensions, normalized (once)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 2)
    direction = rng.standard_normal(d)
    common = (0.8 * direction / np.linalg.norm(direction)).astype(np.float32)
    rogue = np.ones(d, dtype=np.float32)
    rogue[[3 % d, 101 % d, 577 % d]] = 8.0
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    start = 0
    for block in clustered_chunks(n, d, seed=seed, normalize=True):
        rows = (block + common) * rogue
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[start : start + len(rows)] = rows
        start += len(rows)
    out.flush()
    del out
    return path


def export(kind: str, n: int, d: int) -> Path:
    data = HERE / "data"
    if kind == "normalized":
        return ensure(data / f"clustered_{n}_{d}.npy", n, d)
    if kind == "lognormal":
        return lognormal_export(data / f"lognormal_{n}_{d}.npy", n, d, sigma=1.0)
    return anisotropic_export(data / f"sentence_like_{n}_{d}.npy", n, d)


def warm(path: Path) -> None:
    with path.open("rb") as stream:
        while stream.read(1 << 26):
            pass


def stacked_rows() -> tuple[int, int]:
    """The query rows embaudit's pass multiplies at the default sample sizes: against every row
    (the queries), and against the gauge rows (the gauge queries without a gauge and under
    every random gauge, the canonical gauge and its jitters)."""
    sampling = Sampling()
    levels, queries = sampling.gauge_levels, sampling.gauge_queries
    # The canonical gauge and its jitters, the gauge queries without a gauge (their own lists,
    # the gauges' references, as many as the canonical gauge's) when the gauges search a sample
    # of rows (over every row they are the base search's), and under every random gauge the
    # queries of its level (all of them at the judged level, half at the others: level_queries).
    own = 0 if sampling.gauge_rows is None else 1
    unscaled = canonical_queries(queries) * (own + 1 + JITTER_DRAWS)
    scaled = sum(sampling.gauge_draws * level_queries(s, levels, queries) for s in levels)
    return sampling.queries, unscaled + scaled


def bare_product(x: np.ndarray, queries: np.ndarray) -> float:
    started = time.perf_counter()
    for start in range(0, len(x), CHUNK):
        queries @ np.asarray(x[start : start + CHUNK]).T
    return time.perf_counter() - started


def own_products(x: np.ndarray, rng: np.random.Generator) -> float:
    """The products of embaudit's pass alone, at the default sample sizes (its floor): its
    queries against every row, its gauge rows against the gauge rows (gathered beforehand)."""
    queries, gauge_stacked = stacked_rows()
    drawn = gauge_corpus(len(x), Sampling().gauge_rows, seed=0)  # the audit's own gauge rows
    if drawn is None:  # one search of every row
        queries, gauge_stacked = queries + gauge_stacked, 0
    rows = np.sort(rng.choice(len(x), size=min(len(x), queries), replace=False))
    seconds = bare_product(x, np.ascontiguousarray(x[rows], dtype=np.float32))
    if not gauge_stacked:
        return seconds
    gauge_rows = np.ascontiguousarray(x if drawn is None else x[drawn], dtype=np.float32)
    stacked = np.ascontiguousarray(gauge_rows[:gauge_stacked], dtype=np.float32)
    return seconds + bare_product(gauge_rows, stacked)


def embaudit_run(path: Path) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MiB) and the report of ``embaudit check --format json``."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(done.stdout)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "sys.stderr.write(f'{peak}\\n')\n"
    )
    command = [sys.executable, "-m", "embaudit", "check", str(path), "--format", "json"]
    environment = dict(os.environ)
    if _INHERITED_CORETYPE is None:
        environment.pop("OPENBLAS_CORETYPE", None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    seconds = time.perf_counter() - started
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024, json.loads(done.stdout)


def practitioner(x: np.ndarray, query_rows: np.ndarray, k: int = 10, seed: int = 0) -> float:
    """The diagnostics as one writes them by hand with faiss and numpy."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    started = time.perf_counter()
    raw = np.array(x, dtype=np.float32)  # np.load(path): the file read into memory
    normalized = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    faiss.knn(normalized[query_rows], normalized, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    del normalized
    faiss.knn(raw[query_rows], raw, k + 1, metric=faiss.METRIC_L2)
    faiss.knn(raw[query_rows], raw, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    # The gauges against every row, as embaudit searches them (a sample of rows would answer
    # for a smaller corpus): 1,000 gauge queries under 4 levels × 2 draws.
    sample = raw
    gauge_queries = raw[query_rows]
    for s in (0.1, 0.25, 0.5, 1.0):
        for _ in range(2):
            scale = np.exp(rng.normal(0, s, d)).astype(np.float32)
            rescaled = sample * scale
            rescaled /= np.linalg.norm(rescaled, axis=1, keepdims=True)
            queried = gauge_queries * scale
            queried /= np.linalg.norm(queried, axis=1, keepdims=True)
            faiss.knn(queried, rescaled, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    np.linalg.eigvalsh(np.cov(raw[rng.choice(n, size=min(n, 50_000), replace=False)].T))
    graph = raw[rng.choice(n, size=min(n, 10_000), replace=False)]
    graph = graph / np.linalg.norm(graph, axis=1, keepdims=True)
    faiss.knn(graph, graph, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    del raw
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    """The median of ``values`` and, when there are several, their range."""
    median = f"{statistics.median(values):.1f}"
    return median if len(values) == 1 else f"{median} ({min(values):.1f}–{max(values):.1f})"


def kernels() -> str:
    """The OpenBLAS kernels numpy and faiss run with, and the one faiss detects by itself."""
    found = [
        f"{Path(i['filepath']).name.split('-')[0]} {i.get('version')} {i.get('architecture')}"
        for i in threadpool_info()
        if i.get("internal_api") == "openblas"
    ]
    detected = subprocess.run(
        [
            sys.executable,
            "-c",
            "import faiss; from threadpoolctl import threadpool_info; "
            "print([i.get('architecture') for i in threadpool_info() "
            "if 'faiss' in i['filepath'] and i.get('internal_api') == 'openblas'])",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"},
    ).stdout.strip()
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return f"{'; '.join(found)} (OPENBLAS_CORETYPE={coretype}; faiss alone detects {detected})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--reps",
        type=int,
        default=3,
        help="runs of the bare product and of embaudit, alternating (medians are compared)",
    )
    args = parser.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        path = export(kind, args.n, args.d)
        warm(path)
        x = np.load(path, mmap_mode="r")
        rng = np.random.default_rng(1)
        query_rows = np.sort(rng.choice(len(x), size=QUERIES, replace=False))
        queries = np.ascontiguousarray(x[query_rows], dtype=np.float32)
        floor = own_products(x, rng)
        bare, seconds, peak = [], [], 0.0
        for _ in range(args.reps):  # alternating, so that a slow spell of the machine hits both
            bare.append(bare_product(x, queries))
            taken, rss, report = embaudit_run(path)
            seconds.append(taken)
            peak = max(peak, rss)
        hand = practitioner(x, query_rows)
        rows.append((kind, bare, floor, seconds, peak, hand, report["verdict"]["level"]))
        print(rows[-1], file=sys.stderr, flush=True)
    queries, gauge_stacked = stacked_rows()
    rows_searched = Sampling().gauge_rows
    products = (
        f"{queries + gauge_stacked:,} rows against every row"
        if rows_searched is None
        else f"{queries:,} rows against every row, {gauge_stacked:,} against {rows_searched:,}"
    )
    lines = [
        f"## Realistic exports: `embaudit check` on {args.n:,} × {args.d}, against the bare "
        "product and a practitioner's pipeline",
        "",
        f"Machine: {machine()}. `python benchmarks/bench_realistic.py --n {args.n} --d {args.d} "
        f"--reps {args.reps}`; warm page cache; the bare product and embaudit (in a child "
        "process, default options, `--format json`) run alternately, medians (and ranges) of "
        f"the runs; peak RSS the largest. BLAS kernels: {kernels()}.",
        "",
        "| data | bare product (s) | embaudit's products alone "
        f"({products}) (s) | embaudit (s) | embaudit / bare | "
        "embaudit / its products | practitioner (s) | practitioner / embaudit | "
        "embaudit peak RSS (MiB) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, bare, floor, seconds, peak, hand, verdict in rows:
        bare_median, median = statistics.median(bare), statistics.median(seconds)
        lines.append(
            f"| {kind} | {spread(bare)} | {floor:.1f} | {spread(seconds)} | "
            f"{median / bare_median:.2f}× | {median / floor:.2f}× | {hand:.1f} | "
            f"{hand / median:.2f}× | {peak:,.0f} | {verdict} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
