"""Every check's value and the wall time of `embaudit check` on a generated file.

    python benchmarks/audit_values.py --n 100000 --d 384

Generates benchmarks/data/clustered_{n}_{d}.npy once (normalized clustered vectors, see
make_data.py), runs `embaudit check FILE --format json` in a subprocess, and prints the wall time
(warm page cache: the file is read once before) and a Markdown table of the checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import ensure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--trained-with", default="unknown")
    args = parser.parse_args()
    path = HERE / "data" / f"clustered_{args.n}_{args.d}.npy"
    ensure(path, args.n, args.d)
    path.read_bytes()  # warm the page cache
    command = [
        "embaudit",
        "check",
        str(path),
        "--format",
        "json",
        "--trained-with",
        args.trained_with,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(done.stderr)
    report = json.loads(done.stdout)
    print(f"file: {path.name} ({args.n:,} x {args.d} float32), exit {done.returncode}")
    print(f"wall: {wall:.2f} s (embaudit's own timing: {report['timings']['total_seconds']:.2f} s)")
    print(f"verdict: {report['verdict']['level']}")
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print()
    print("| code | name | status | value |")
    print("|---|---|---|---|")
    for check in report["checks"]:
        value = check["value"]
        shown = "–" if value is None else f"{value:.4g}"
        print(f"| {check['code']} | {check['name']} | {check['status']} | {shown} |")


if __name__ == "__main__":
    main()
