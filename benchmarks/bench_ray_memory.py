"""Peak memory of each Ray worker and of the driver under ``embaudit check --engine ray``.

    python benchmarks/bench_ray_memory.py [--d 16,64,768]

For each d, a parquet export of 128 MiB of float32 rows (bench_memory.py's ``groups`` data) is
audited with ``--engine ray`` on a local cluster that embaudit starts for the run. While it runs,
every process whose command line names a Ray worker (``ray::``) and the driver are polled every
50 ms for their high-water mark (VmHWM in /proc, which a poll cannot miss: it only grows). Prints a
Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402
from bench_memory import DATA, SWEEP_BYTES, write  # noqa: E402


def high_water(pid: int) -> int:
    """The process's peak resident size in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ray_workers() -> list[int]:
    workers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::"):
                workers.append(int(entry.name))
    return workers


def run(path: Path) -> tuple[float, int, int, int]:
    """Wall seconds, the driver's peak, the largest worker peak (MiB), the workers seen."""
    started = time.perf_counter()
    driver = subprocess.Popen(
        [sys.executable, "-m", "embaudit", "check", str(path), "--engine", "ray", "-f", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peaks: dict[int, int] = {}
    driver_peak = 0
    while driver.poll() is None:
        driver_peak = max(driver_peak, high_water(driver.pid))
        for pid in ray_workers():
            peaks[pid] = max(peaks.get(pid, 0), high_water(pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    return seconds, driver_peak // 1024, max(peaks.values(), default=0) // 1024, len(peaks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", default="16,64,768")
    arguments = parser.parse_args()
    print(f"Machine: {machine()}\n")
    print(f"Parquet exports of {SWEEP_BYTES // 2**20} MiB of float32 rows, `--engine ray` on a")
    print("local cluster started for the run.\n")
    print("| d | rows | wall | driver peak | largest worker peak | workers |")
    print("|---|---|---|---|---|---|")
    for d in (int(value) for value in arguments.d.split(",")):
        n = SWEEP_BYTES // (4 * d)
        path = write(DATA / f"groups_{n}_{d}.parquet", n, d, "groups")
        seconds, driver, worker, workers = run(path)
        print(f"| {d} | {n:,} | {seconds:.1f} s | {driver:,} MiB | {worker:,} MiB | {workers} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
