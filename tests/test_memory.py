"""Memory follows the work in flight, not the bytes read: a file of small-d rows (many rows per
chunk) audited with many stacked queries stays under a bound that one product of a whole chunk
would exceed several times over."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

#: The child audits, then prints its peak resident size (VmHWM, KiB): its own memory map's
#: high-water mark, which a fork of this (larger) process would not inflate as ru_maxrss does.
CHILD = """
import sys
import embaudit.cli
import embaudit.knn.select
embaudit.knn.select.STEP_BYTES = int(sys.argv[1])
try:
    embaudit.cli.main(sys.argv[2:])
except SystemExit:
    pass
peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]
print(int(peak.split()[1]) // 1024, file=sys.stderr)
"""

ROWS, D, QUERIES = 100_000, 16, 4000
#: The bound: the interpreter with numpy, pyarrow and faiss loaded (~200 MiB), the rows, and a
#: few steps of 64 MiB of products.
BOUND_MIB = 700


def _peak_mib(path, step_bytes: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(step_bytes), "check", str(path), "--select", "EA4",
         "--queries", str(QUERIES), "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert '"code": "EA401"' in done.stdout, done.stderr
    return int(done.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def small_d_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((ROWS, D)).astype(np.float32)
    rows *= np.exp(rng.normal(0.0, 1.0, size=(ROWS, 1))).astype(np.float32)
    path = tmp_path_factory.mktemp("memory") / "factors.npy"
    np.save(path, rows)
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_small_d_file_with_many_queries_stays_under_the_bound(small_d_file):
    from embaudit.knn.select import STEP_BYTES

    assert _peak_mib(small_d_file, STEP_BYTES) <= BOUND_MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_bound_holds_because_of_the_steps(small_d_file):
    """The same audit with one step per chunk (a whole chunk's products at once: 4,000 queries
    × 100,000 rows × 4 bytes = 1.5 GiB) exceeds the bound: the test measures the mechanism."""
    assert _peak_mib(small_d_file, 2**40) > 2 * BOUND_MIB
