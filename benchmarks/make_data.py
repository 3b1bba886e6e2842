"""Generate clustered N × d float32 embeddings for benchmarks, without holding them in memory.

    python benchmarks/make_data.py benchmarks/data/clustered_1m_768.npy --n 1000000 --d 768
    python benchmarks/make_data.py benchmarks/data/clustered_1m_768.parquet --n 1000000 --d 768

Vectors are drawn around 256 cluster centres (with a shared offset, so that the data is mildly
anisotropic, like real encoder output) and normalized unless --raw is given. ``.npy`` is written
through a memory map; ``.parquet`` as a fixed_size_list<float> column "embedding" with an int64
"id" column, row groups of 65,536 rows.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHUNK = 65_536


def clustered_chunks(
    n: int, d: int, *, clusters: int = 256, seed: int = 0, normalize: bool = True
) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    offset = rng.standard_normal(d).astype(np.float32) * 0.5
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        labels = rng.integers(clusters, size=rows)
        noise = rng.standard_normal((rows, d), dtype=np.float32)
        block = centres[labels] + offset + noise
        if normalize:
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        yield block


def write(path: Path, n: int, d: int, *, seed: int, normalize: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_chunks(path, clustered_chunks(n, d, seed=seed, normalize=normalize), n, d)


def write_chunks(
    path: Path, chunks: Iterator[np.ndarray], n: int, d: int, compression: str = "none"
) -> None:
    """``n`` × ``d`` float32 rows, given a block at a time, to ``path``: an ``.npy`` through a
    memory map, else parquet (an int64 "id" column and a fixed_size_list<float> "embedding"
    column, a row group per block, ``compression`` its codec)."""
    if path.suffix == ".npy":
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        start = 0
        for block in chunks:
            out[start : start + len(block)] = block
            start += len(block)
        out.flush()
        del out
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), d))])
    with pq.ParquetWriter(path, schema, compression=compression) as writer:
        start = 0
        for block in chunks:
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), d)
            ids = pa.array(np.arange(start, start + len(block), dtype=np.int64))
            writer.write_table(pa.table({"id": ids, "embedding": vectors}, schema=schema))
            start += len(block)


def ensure(path: Path, n: int, d: int, seed: int = 0) -> Path:
    """Generate the normalized clustered file at ``path`` unless it exists; return the path."""
    if not path.exists():
        write(path, n, d, seed=seed, normalize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="do not normalize")
    args = parser.parse_args()
    write(args.path, args.n, args.d, seed=args.seed, normalize=not args.raw)
    print(f"{args.path}: {args.n:,} x {args.d} float32, {args.path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
