"""A directory of `.npy` shards for the scale benchmarks, written as it is generated.

    python benchmarks/make_shards.py DIR --rows 20000000 --d 16 [--shard-rows 1000000] [--seed 0]

Deterministic: shard s holds rows drawn from ``default_rng([seed, s])`` (anisotropic Gaussian
rows with a common offset and norms that vary), written block by block into a memory-mapped
``.npy`` (a shard never sits in memory whole). Shard s ≥ 1 also carries copies of the first
``--planted`` rows of shard s - 1 (at its rows 1,000, 1,001, …): ``planted × (shards - 1)``
duplicate rows, each in a group of two across two shards, which `embaudit check` must find
(EA003). With ``--metadata DIR2`` it writes the parallel parquet metadata (an ``id`` column of
``shard-row`` strings) that ``--ids-from`` reads. Prints what it wrote as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BLOCK_ROWS = 262_144
#: Where the copies of the previous shard's first rows go, in each shard after the first.
PLANTED_AT = 1000


def _block(rng: np.random.Generator, rows: int, scales: np.ndarray) -> np.ndarray:
    x = rng.standard_normal((rows, len(scales)), dtype=np.float32) * scales
    x += np.float32(0.5)
    x *= rng.uniform(0.5, 1.5, size=(rows, 1)).astype(np.float32)
    return x


def write_shards(
    folder: Path, rows: int, d: int, shard_rows: int, seed: int, planted: int
) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    scales = np.random.default_rng([seed, 2**31]).uniform(0.2, 2.0, size=d).astype(np.float32)
    shards = -(-rows // shard_rows)
    previous_first: np.ndarray | None = None
    for shard in range(shards):
        n = min(shard_rows, rows - shard * shard_rows)
        rng = np.random.default_rng([seed, shard])
        out = np.lib.format.open_memmap(
            folder / f"emb_{shard:05d}.npy", mode="w+", dtype=np.float32, shape=(n, d)
        )
        for start in range(0, n, BLOCK_ROWS):
            out[start : start + BLOCK_ROWS] = _block(rng, min(BLOCK_ROWS, n - start), scales)
        if previous_first is not None:
            copies = previous_first[: max(0, min(planted, n - PLANTED_AT))]
            out[PLANTED_AT : PLANTED_AT + len(copies)] = copies
        previous_first = np.array(out[:planted])
        out.flush()
        del out
    return {"rows": rows, "d": d, "shards": shards, "planted_duplicates": planted * (shards - 1)}


def write_metadata(folder: Path, rows: int, shard_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(-(-rows // shard_rows)):
        n = min(shard_rows, rows - shard * shard_rows)
        ids = pa.array([f"{shard}-{row}" for row in range(n)])
        pq.write_table(pa.table({"id": ids}), folder / f"meta_{shard:05d}.parquet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--shard-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planted", type=int, default=10)
    parser.add_argument("--metadata", type=Path)
    arguments = parser.parse_args()
    started = time.perf_counter()
    written = write_shards(
        arguments.folder,
        arguments.rows,
        arguments.d,
        arguments.shard_rows,
        arguments.seed,
        arguments.planted,
    )
    if arguments.metadata is not None:
        write_metadata(arguments.metadata, arguments.rows, arguments.shard_rows)
    written["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
