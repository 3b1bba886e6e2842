"""Driver and worker memory of `embaudit check --engine ray` on directories of `.npy` shards as
the rows grow, on a two-node local cluster.

    python benchmarks/bench_ray_scale.py --data DIR --runs 2000000x16 20000000x16 200000x768

For each ``ROWSxD``, the shards are generated (benchmarks/make_shards.py: 1M-row shards, 10
duplicate rows planted across each pair of neighbouring shards) unless already there; then a
cluster of two nodes, one CPU each, each node its own raylet (``ray.cluster_utils.Cluster``, as
the tests start it) is started in this process, and the audit runs in a child process joined to
it. While it runs, the driver and every Ray worker this process's cluster started (its
descendants whose command line starts ``ray::``) are polled every 50 ms for their high-water
mark (VmHWM: a poll cannot miss it). Rows per worker-second are the rows over the map's
worker-seconds (the report's ``timings.map_seconds``). Prints one JSON line per run and a
Markdown table for benchmarks/RESULTS.md. ``--keep`` keeps the data; by default it is deleted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402
from bench_ray_memory import high_water  # noqa: E402
from make_shards import write_shards  # noqa: E402


def _parents() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            table[int(entry.name)] = (parent, command)
    return table


def our_workers(root: int) -> list[int]:
    """The Ray workers below ``root`` (the cluster's raylets are its children)."""
    table = _parents()
    workers = []
    for pid, (_, command) in table.items():
        if not command.startswith(b"ray::"):
            continue
        ancestor = pid
        while ancestor > 1:
            ancestor = table.get(ancestor, (1, b""))[0]
            if ancestor == root:
                workers.append(pid)
                break
    return workers


def audit(folder: Path, address: str, root: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "embaudit", "check", str(folder), "--engine", "ray"]
    command += ["--ray-address", address, "-f", "json", "--exit-zero"]
    # The report goes to a file: a pipe nobody reads while polling fills at 64 KiB and blocks
    # the driver at its last write (a 768-d report is larger).
    with tempfile.TemporaryFile() as report_file, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        driver = subprocess.Popen(command, stdout=report_file, stderr=errors)
        peaks: dict[int, int] = {}
        driver_peak = 0
        while driver.poll() is None:
            driver_peak = max(driver_peak, high_water(driver.pid))
            for pid in our_workers(root):
                peaks[pid] = max(peaks.get(pid, 0), high_water(pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        if driver.returncode != 0:
            errors.seek(0)
            failure = errors.read().decode()[-2000:]
            raise SystemExit(f"embaudit exited {driver.returncode}: {failure}")
        report_file.seek(0)
        report = json.loads(report_file.read())
    duplicates = next(c for c in report["checks"] if c["code"] == "EA003")["metrics"]
    timings = report["timings"]
    return {
        "wall_s": round(seconds, 1),
        "driver_peak_mib": driver_peak // 1024,
        "worker_peak_mib": max(peaks.values(), default=0) // 1024,
        "workers": len(peaks),
        "map_worker_s": round(timings["map_seconds"], 1),
        "duplicates_found": duplicates["duplicate_rows"],
        "norm_rank_error": next(c for c in report["checks"] if c["code"] == "EA101")["metrics"].get(
            "quantile_rank_error", 0.0
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", nargs="+", default=["2000000x16", "20000000x16"])
    parser.add_argument("--keep", action="store_true")
    arguments = parser.parse_args()
    import os

    from ray.cluster_utils import Cluster

    print(f"Machine: {machine()}\n", flush=True)
    rows_out = []
    for run in arguments.runs:
        rows, d = (int(value) for value in run.split("x"))
        folder = arguments.data / f"shards_{rows}_{d}"
        if not folder.exists():
            made = write_shards(folder, rows, d, 1_000_000, 0, 10)
        else:
            made = {"planted_duplicates": 10 * (-(-rows // 1_000_000) - 1)}
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        try:
            measured = audit(folder, nodes.address, os.getpid())
        finally:
            nodes.shutdown()
        measured.update(rows=rows, d=d, planted=made["planted_duplicates"])
        measured["rows_per_worker_s"] = round(rows / max(measured["map_worker_s"], 1e-9))
        print(json.dumps(measured), flush=True)
        rows_out.append(measured)
        if not arguments.keep:
            shutil.rmtree(folder)
    print(
        "\n| rows × d | wall | driver peak | largest worker peak | rows / worker-s | "
        "duplicates planted / found |"
    )
    print("|---|---|---|---|---|---|")
    for m in rows_out:
        print(
            f"| {m['rows']:,} × {m['d']} | {m['wall_s']} s | {m['driver_peak_mib']:,} MiB | "
            f"{m['worker_peak_mib']:,} MiB | {m['rows_per_worker_s']:,} | "
            f"{m['planted']} / {m['duplicates_found']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
