"""``embaudit gauge`` at its defaults on a recommender's towers, before and after the blocked
evaluation of the worst-gauge search.

    python benchmarks/bench_gauge.py [--items 3000] [--users 20000] [--d 32] [--repeats 2]

The towers are an implicit-feedback model's: a users × items click matrix with power-law item
popularity, its rank-d truncated SVD split as items = V·√Σ·D, users = U·√Σ·D⁻¹ with a random
diagonal gauge D (as ALS leaves it). ``audit_gauge`` runs at its defaults, alternately with the
current evaluation and with the evaluation as first written (every row's k nearest selected by
an argpartition of the whole m × m cosine matrix, each flip forming its candidate Gram matrix),
in one process, so that both see the same machine load. Prints each run's wall time, the ratio,
and whether the two reports' values are equal (they must be).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.sparse.linalg import svds

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_index import machine  # noqa: E402

import embaudit  # noqa: E402
from embaudit.gauge import _Neighbours  # noqa: E402
from tests.test_gauge_references import selected_overlap  # noqa: E402  (the evaluation as first written)


def towers(items: int, users: int, d: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """float32 item and user factors of a rank-d SVD of a power-law click matrix, in a random
    gauge."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    clicks = 20 * users
    user = rng.integers(users, size=clicks)
    item = rng.choice(items, size=clicks, p=popularity / popularity.sum())
    matrix = scipy.sparse.csr_matrix((np.ones(clicks), (user, item)), shape=(users, items))
    matrix.data[:] = 1.0
    left, values, right = svds(matrix, k=d, random_state=seed)
    gauge = np.exp(rng.normal(0.0, 0.5, size=d))
    item_rows = right.T * np.sqrt(values) * gauge
    user_rows = left * np.sqrt(values) / gauge
    return item_rows.astype(np.float32), user_rows.astype(np.float32)


def selected_flip(search: _Neighbours, gram: np.ndarray, column: np.ndarray, delta: float) -> float:
    return selected_overlap(search, gram + delta * np.outer(column, column))


@contextmanager
def first_written() -> Iterator[None]:
    """The search evaluated as first written, for the duration of the block."""
    saved = _Neighbours.overlap, _Neighbours.flip_overlap
    _Neighbours.overlap, _Neighbours.flip_overlap = selected_overlap, selected_flip  # type: ignore[method-assign]
    try:
        yield
    finally:
        _Neighbours.overlap, _Neighbours.flip_overlap = saved  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    item_rows, user_rows = towers(args.items, args.users, args.d)
    with tempfile.TemporaryDirectory() as folder:
        items, users = Path(folder, "items.npy"), Path(folder, "users.npy")
        np.save(items, item_rows)
        np.save(users, user_rows)
        seconds: dict[str, list[float]] = {"before": [], "after": []}
        reports = {}
        for _ in range(args.repeats):
            for name in ("before", "after"):
                started = time.perf_counter()
                if name == "before":
                    with first_written():
                        report = embaudit.audit_gauge(items, users, config=False)
                else:
                    report = embaudit.audit_gauge(items, users, config=False)
                seconds[name].append(time.perf_counter() - started)
                reports[name] = report.sides[0].to_dict()
    same = reports["before"] == reports["after"]
    before, after = min(seconds["before"]), min(seconds["after"])
    shape = f"{args.items:,} × {args.d} items, {args.users:,} × {args.d} users"
    print(f"## `embaudit gauge` on {shape}\n")
    command = " ".join(["python benchmarks/bench_gauge.py", *sys.argv[1:]])
    print(f"```bash\n{command}\n```\n")
    print("| evaluation | wall (s), each run | best |")
    print("|---|---|---|")
    for name, label in (("before", "as first written"), ("after", "blocked")):
        runs = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(f"| {label} | {runs} | {min(seconds[name]):.2f} |")
    side = reports["after"]
    print(
        f"\nratio {before / after:.2f}× ({side['evaluations']} evaluations, worst overlap@"
        f"{side['k']} {side['worst_overlap_at_k']:.4f}); values equal: {same}\n"
    )
    print(f"Machine: {machine()}.")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
