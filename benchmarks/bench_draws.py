"""The rows an audit draws before its pass, in a fresh process, against reading them by hand.

    python benchmarks/bench_draws.py [--runs 7] [--file benchmarks/data/clustered_1000000_768.npy]

Before the pass, ``embaudit check`` draws its query rows (500) and the rows its canonical gauge
is estimated on (20,000), clean and in draw order, through one read-ahead. Each run is a fresh
process (its arrays are allocated, and their pages faulted in, for the first time, as in a real
audit), alternating:

* ``embaudit``: ``read_ahead`` of the positions both draws read first, then the two
  ``draw_clean_rows`` (as ``measure`` does);
* ``by hand``: the same number of rows at sorted random positions of ``np.load(mmap_mode="r")``,
  widened to float64 (what one writes to sample a memory-mapped file).

Prints the minimum and median of each and their ratio. The file is the realistic benchmark's
(``bench_realistic.py`` makes it) and its page cache is warmed first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402

EMBAUDIT = """
import sys, time
import numpy as np
from embaudit.draw import draw_clean_rows, first_positions, read_ahead
from embaudit.engines import LocalEngine
from embaudit.sources import open_source
source = open_source(sys.argv[1])
started = time.perf_counter()
queries, scale = np.random.default_rng(1), np.random.default_rng(2)
positions = [first_positions(source.n, 500, queries), first_positions(source.n, 20000, scale)]
take = read_ahead(source, np.concatenate(positions), LocalEngine().take)
draw_clean_rows(source, 500, queries, take)
draw_clean_rows(source, 20000, scale, take)
print(time.perf_counter() - started)
"""

BY_HAND = """
import sys, time
import numpy as np
x = np.load(sys.argv[1], mmap_mode="r")
started = time.perf_counter()
rows = np.sort(np.random.default_rng(1).choice(len(x), 20500, replace=False))
x[rows].astype(np.float64)
print(time.perf_counter() - started)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--file", default=str(HERE / "data" / "clustered_1000000_768.npy"))
    args = parser.parse_args()
    with Path(args.file).open("rb") as stream:
        while stream.read(1 << 26):
            pass
    seconds: dict[str, list[float]] = {"embaudit": [], "by hand": []}
    for _ in range(args.runs):
        for name, script in (("embaudit", EMBAUDIT), ("by hand", BY_HAND)):
            done = subprocess.run(
                [sys.executable, "-c", script, args.file],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds[name].append(float(done.stdout.strip()))
    print(f"Machine: {machine()}. `python benchmarks/bench_draws.py --runs {args.runs}`.\n")
    print("| run | min (s) | median (s) | median / by hand |")
    print("|---|---|---|---|")
    hand = statistics.median(seconds["by hand"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {min(values):.2f} | {median:.2f} | {median / hand:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
