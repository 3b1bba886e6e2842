"""Peak memory and wall time of ``embaudit check`` on small-d and large-d exports: memory should
follow the work in flight (rows per step × stacked queries), not the bytes read.

    python benchmarks/bench_memory.py cases    # small-d exports and many queries, 1M × 768
    python benchmarks/bench_memory.py sweep    # d = 16, 64, 128, 384, 768 at equal bytes

Files are generated once under benchmarks/data/ (git-ignored), streamed to disk, from fixed
seeds, as data a practitioner might export rather than data tuned for the tool:

* ``groups``: tight groups of 20 rows (a group's rows within 0.05 of its centre), every column
  scaled by exp(N(0, 0.7²)) (a dot-product model's arbitrary gauge), log-normal norms
  exp(N(0, 1)) — the shape of matrix-factorisation factors;
* ``clustered``: make_data.py's 256 clusters with a shared offset, unnormalized.

Each audit runs in a child process; its peak RSS is the child's VmHWM (as ``time -v``
reports). The page cache
is warmed first. Prints Markdown tables for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402
from make_data import clustered_chunks, write_chunks  # noqa: E402

DATA = HERE / "data"
CHUNK = 65_536
SWEEP_BYTES = 128 * 2**20
SWEEP_DIMENSIONS = (16, 64, 128, 384, 768)


def groups_chunks(n: int, d: int, *, size: int = 20, seed: int = 0):
    """Tight groups of ``size`` rows, per-column gauge scales and log-normal norms."""
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.normal(0.0, 0.7, size=d)).astype(np.float32)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        group = (start + np.arange(rows)) // size
        centres = np.random.default_rng([seed, 1]).standard_normal((group.max() + 1, d))
        centres = centres[group].astype(np.float32)
        block = centres + 0.05 * rng.standard_normal((rows, d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        block *= np.exp(rng.normal(0.0, 1.0, size=(rows, 1))).astype(np.float32)
        yield block * scales


def write(path: Path, n: int, d: int, kind: str) -> Path:
    """The export ``kind`` of ``n`` × ``d`` float32 rows at ``path`` (.npy or .parquet), once."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "groups":
        chunks = groups_chunks(n, d)
    else:
        chunks = clustered_chunks(n, d, seed=0, normalize=False)
    partial = path.with_suffix(".partial" + path.suffix)  # the kind is read from the suffix
    # snappy: the codec pyarrow writes by default, as a pandas or polars export would.
    write_chunks(partial, chunks, n, d, compression="snappy")
    partial.rename(path)
    return path


def warm(path: Path) -> None:
    with path.open("rb") as stream:
        while stream.read(1 << 26):
            pass


def audit(path: Path, *options: str) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MiB and exit status of ``embaudit check PATH OPTIONS`` in a
    child process."""
    warm(path)
    # The child reads its own peak from /proc (VmHWM, its memory map's high-water mark): a
    # child's ru_maxrss would include this process's size when it was forked (Linux keeps the
    # larger across exec), and this process wrote the files.
    code = (
        "import sys, embaudit.cli as c\n"
        "try:\n    status = c.main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(peak, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "check", str(path), "--format", "json", *options],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    peak = int(done.stderr.strip().splitlines()[-1]) / 1024
    return seconds, peak, done.returncode


CASES = [
    ("1M × 768 `.npy`, defaults", "clustered", 1_000_000, 768, ".npy", ()),
    ("500,000 × 16 `.npy`, defaults", "groups", 500_000, 16, ".npy", ()),
    ("2M × 16 parquet, defaults", "groups", 2_000_000, 16, ".parquet", ()),
    ("400,000 × 64 `.npy`, defaults", "groups", 400_000, 64, ".npy", ()),
    ("100,000 × 128, `--queries 5000`", "groups", 100_000, 128, ".npy", ("--queries", "5000")),
]


def cases(only: str | None) -> None:
    print(f"Machine: {machine()}\n")
    print("| file | wall | peak RSS | exit |\n|---|---|---|---|")
    for label, kind, n, d, suffix, options in CASES:
        if only and only not in label:
            continue
        path = write(DATA / f"{kind}_{n}_{d}{suffix}", n, d, kind)
        seconds, peak, status = audit(path, *options)
        print(f"| {label} | {seconds:.1f} s | {peak:,.0f} MiB | {status} |", flush=True)


def sweep() -> None:
    print(f"Machine: {machine()}\n")
    print(f"Every file {SWEEP_BYTES // 2**20} MiB of float32 rows (`groups`), defaults.\n")
    print("| d | rows | wall | rows / s | peak RSS |\n|---|---|---|---|---|")
    for d in SWEEP_DIMENSIONS:
        n = SWEEP_BYTES // (4 * d)
        path = write(DATA / f"groups_{n}_{d}.npy", n, d, "groups")
        seconds, peak, _ = audit(path)
        print(f"| {d} | {n:,} | {seconds:.1f} s | {n / seconds:,.0f} | {peak:,.0f} MiB |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("cases", "sweep"))
    parser.add_argument("--only", help="run only the cases whose label contains this text")
    arguments = parser.parse_args()
    if arguments.what == "cases":
        cases(arguments.only)
    else:
        sweep()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
