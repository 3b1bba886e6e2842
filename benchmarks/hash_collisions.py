"""Rows whose 64-bit hash repeats (EA003's candidates) on an export, with the row hash of the
pass and with the former one (each value's float64 bits as one word).

    python benchmarks/hash_collisions.py FILE.npy [--as-float64]

Every candidate is fetched again after the pass and compared bit for bit, which on a parquet
file means decoding its row group. Identical rows always collide; any other repeat is the hash's
fault. ``--as-float64`` hashes the rows as a float32 export written as float64 would be stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embaudit.stats import _hash_rows, _hash_weights, _row_words


def repeated(hashes: np.ndarray) -> int:
    ordered = np.sort(hashes)
    values = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    return int(np.isin(hashes, values).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--as-float64", action="store_true")
    args = parser.parse_args()
    x = np.load(args.file, mmap_mode="r")
    weights = _hash_weights(x.shape[1])
    former, now = [], []
    for start in range(0, len(x), 8192):
        block = np.asarray(x[start : start + 8192])
        if args.as_float64:
            block = block.astype(np.float64)
        former.append(np.einsum("ij,j->i", _row_words(block.astype(np.float64)), weights))
        now.append(_hash_rows(block))
    stored = "float64" if args.as_float64 else str(x.dtype)
    print(f"{Path(args.file).name}: {len(x):,} × {x.shape[1]}, hashed as {stored}")
    print(f"rows with a repeated hash, former (a word per value): {repeated(np.hstack(former))}")
    print(f"rows with a repeated hash, now (halves folded): {repeated(np.hstack(now))}")


if __name__ == "__main__":
    main()
