"""``--query-file``: the kNN checks measure what queries from another file see of the corpus.

Every figure is compared with float64 brute force of those queries against the whole corpus
(nothing excluded: the queries are not corpus rows); with ``queries`` at least the corpus size,
EA503's floor comes from every corpus row, so it too has an exact reference."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embaudit import audit
from embaudit.checks.graphs import FLOOR_MADS, MAD_TO_SD
from embaudit.model import Status
from embaudit.options import Sampling
from tests.exports import encoder_like

N, D, Q, K = 3000, 48, 200, 10
EVERY = Sampling(queries=N, gauge_queries=Q)


def _rows() -> np.ndarray:
    return encoder_like(N + Q, D, seed=0, common=0.5)


def _corpus() -> np.ndarray:
    return _rows()[:N]


def _held_out() -> np.ndarray:
    """Rows drawn with the corpus but left out of it: queries like the corpus."""
    return _rows()[N:]


def _foreign(count: int = Q) -> np.ndarray:
    """Queries from another distribution: the corpus's rows plus heavy noise."""
    rng = np.random.default_rng(8)
    return encoder_like(count, D, seed=9, common=0.5) + 0.35 * rng.standard_normal((count, D))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _save(tmp_path, name: str, rows: np.ndarray) -> str:
    path = tmp_path / name
    np.save(path, rows.astype(np.float32))
    return str(path)


def _brute(corpus: np.ndarray, queries: np.ndarray) -> dict[str, np.ndarray]:
    c, q = corpus.astype(np.float32).astype(np.float64), queries.astype(np.float32)
    q = q.astype(np.float64)
    cos = _unit(q) @ _unit(c).T
    l2 = ((q[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    return {
        "cos": cos,
        "cos_top": np.argsort(-cos, axis=1, kind="stable")[:, :K],
        "l2_top": np.argsort(l2, axis=1, kind="stable")[:, :K],
        "nearest": cos.max(axis=1),
        "mean": cos.mean(axis=1),
    }


def test_the_neighbour_checks_measure_the_query_file(tmp_path):
    corpus, queries = _corpus(), _foreign()
    noise = 0.05 / np.sqrt(D) * np.random.default_rng(3).standard_normal((300, D))
    corpus[-300:] = corpus[:300] + noise  # 20% of the corpus rows have a near-copy in it
    queries[:20] = corpus[:20] - noise[:20]  # 10% of the queries have a near-copy in the corpus
    report = audit(
        _save(tmp_path, "c.npy", corpus),
        query_file=_save(tmp_path, "q.npy", queries),
        sampling=EVERY,
        trained_with="cosine",
    )
    brute = _brute(corpus, queries)
    assert report.input["queries"]["path"].endswith("q.npy")
    assert report.input["queries"]["drawn"] == Q
    # EA401: cosine against L2 neighbours of the queries, none of them excluded.
    overlap = [
        len(set(a) & set(b)) / K for a, b in zip(brute["cos_top"], brute["l2_top"], strict=True)
    ]
    assert report.check("EA401").value == pytest.approx(np.mean(overlap), abs=1e-12)
    # EA005 measures the corpus, not the queries: every corpus row is drawn after them here.
    ea005 = report.check("EA005")
    unit = _unit(corpus.astype(np.float32).astype(np.float64))
    within = unit @ unit.T
    np.fill_diagonal(within, -np.inf)
    corpus_share = np.mean(within.max(axis=1) >= 0.99)
    assert corpus_share == pytest.approx(0.2, abs=0.01)
    assert ea005.value == pytest.approx(corpus_share, abs=1e-12)
    assert np.mean(brute["nearest"] >= 0.99) == pytest.approx(0.1)  # the queries' own share
    assert ea005.metrics["queries"] == N and "query " not in ea005.message
    ea206 = report.check("EA206")
    contrast = (1 - brute["mean"]) / (1 - brute["nearest"])
    assert ea206.value == pytest.approx(np.median(contrast), rel=1e-5)
    # Query hubness (EA504): every query of the file searched, so its spread is exact.
    ea504 = report.check("EA504")
    counts = np.bincount(np.asarray(brute["cos_top"]).ravel(), minlength=N).astype(float)
    slots = Q * K
    at_random = slots**2 / (slots + slots * (slots - 1) / N)
    assert ea504.value == pytest.approx(slots**2 / (counts**2).sum() / at_random, rel=1e-12)
    assert ea504.metrics["standard_error"] is None and ea504.metrics["population"] == Q
    assert ea504.metrics["never_returned"] == pytest.approx(np.mean(counts == 0))
    top = max(1, -(-N // 100))
    assert ea504.metrics["top_share"] == pytest.approx(np.sort(counts)[::-1][:top].sum() / slots)


def test_ea503_measures_the_queries_against_the_corpus_floor(tmp_path):
    corpus = _corpus()
    unit = _unit(corpus)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    corpus_nearest = cos.max(axis=1)
    median = np.median(corpus_nearest)
    floor = median - FLOOR_MADS * MAD_TO_SD * np.median(np.abs(corpus_nearest - median))
    path = _save(tmp_path, "c.npy", corpus)
    foreign = audit(path, query_file=_save(tmp_path, "f.npy", _foreign()), sampling=EVERY)
    check = foreign.check("EA503")
    assert check.metrics["floor"] == pytest.approx(floor, abs=1e-6)
    assert check.metrics["floor_from"] == f"{N} corpus rows"
    nearest = _brute(corpus, _foreign())["nearest"]
    assert check.value == pytest.approx(np.mean(nearest < floor), abs=1e-12)
    assert check.status == Status.WARN
    # Queries like the corpus are not isolated from it.
    alike = audit(path, query_file=_save(tmp_path, "h.npy", _held_out()), sampling=EVERY)
    assert alike.check("EA503").status == Status.PASS


def test_examples_name_the_query_file_ids(tmp_path):
    queries = _foreign()
    ids = [f"q-{i}" for i in range(Q)]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(queries.astype(np.float32).ravel()), D)
    pq.write_table(pa.table({"id": ids, "embedding": vectors}), tmp_path / "q.parquet")
    report = audit(
        _save(tmp_path, "c.npy", _corpus()), query_file=tmp_path / "q.parquet", sampling=EVERY
    )
    examples = report.check("EA503").metrics["examples"]
    assert examples and all(str(e["row"]).startswith("q-") for e in examples)
    assert report.input["queries"]["id_column"] == "id"


@pytest.mark.parametrize("spec", ["Flat", "HNSW16"])
def test_the_index_is_searched_with_the_query_file(tmp_path, spec):
    corpus = _corpus()
    report = audit(
        _save(tmp_path, "c.npy", corpus),
        query_file=_save(tmp_path, "q.npy", _held_out()),
        sampling=EVERY,
        index=spec,
        trained_with="cosine",
    )
    recall = report.check("EA701").value
    if spec == "Flat":
        assert recall == 1.0  # nothing of the queries' own is dropped from the exact index
    else:
        assert 0.5 < recall <= 1.0


def test_the_query_file_must_have_the_corpus_dimension(tmp_path, cli_process):
    corpus = _save(tmp_path, "c.npy", _corpus())
    narrow = _save(tmp_path, "q.npy", _foreign()[:, :16])
    result = cli_process("check", corpus, "--query-file", narrow)
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"embaudit: error: --query-file {narrow} has d = 16; the corpus {corpus} has d = 48: "
        "the queries must come from the same model"
    ]
    missing = cli_process("check", corpus, "--query-file", tmp_path / "none.npy")
    assert missing.code == 2 and "none.npy" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_the_cli_reports_the_query_file(tmp_path, cli_process):
    corpus = _save(tmp_path, "c.npy", _corpus())
    queries = _save(tmp_path, "q.npy", _foreign())
    result = cli_process("check", corpus, "--query-file", queries, "-f", "json")
    assert result.code in (0, 1), result.stderr
    assert result.stderr == "" or "note:" in result.stderr
    report = json.loads(result.stdout)
    assert report["input"]["queries"]["path"] == queries
    assert report["params"]["query_file"] == queries


def test_compare_knn_measures_the_metrics_of_the_query_file(tmp_path):
    from embaudit import compare_knn

    corpus = _corpus() * np.exp(np.random.default_rng(4).normal(0, 0.5, size=(N, 1)))
    queries = _foreign()
    report = compare_knn(
        _save(tmp_path, "c.npy", corpus), query_file=_save(tmp_path, "q.npy", queries), queries=Q
    )
    brute = _brute(corpus, queries)
    overlap = [
        len(set(a) & set(b)) / K for a, b in zip(brute["cos_top"], brute["l2_top"], strict=True)
    ]
    pair = next(p for p in report.comparison.pairs if (p.a, p.b) == ("cosine", "l2"))
    assert pair.by_k[K] == pytest.approx(np.mean(overlap), abs=1e-12)
    assert report.input["queries"]["drawn"] == Q
    assert report.params["query_file"].endswith("q.npy")


def test_compare_knn_refuses_a_query_file_for_two_exports(tmp_path, cli_process):
    corpus = _save(tmp_path, "c.npy", _corpus())
    result = cli_process("compare-knn", corpus, corpus, "--query-file", corpus)
    assert result.code == 2
    assert result.stderr.startswith("embaudit: error: --query-file applies to one file")


def test_the_query_file_takes_its_own_key_and_column(tmp_path, cli_process):
    """``--column`` / ``--key`` are the corpus's: an ``.npy`` query file for a parquet column
    takes neither, an ``.npz`` one names its member with ``--query-key``, a parquet one its
    column with ``--query-column``; each gives the report of the same queries in an ``.npy``."""
    corpus = tmp_path / "c.parquet"
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(_corpus().astype(np.float32).ravel()), D)
    pq.write_table(pa.table({"vec": vectors}), corpus)
    queries = _foreign()[:50].astype(np.float32)
    npy = _save(tmp_path, "q.npy", queries)
    np.savez(tmp_path / "q.npz", other=queries[:, :3], asked=queries)
    pq.write_table(
        pa.table({"query": pa.FixedSizeListArray.from_arrays(pa.array(queries.ravel()), D)}),
        tmp_path / "q.parquet",
    )
    common = {"column": "vec", "k": K, "sampling": Sampling(queries=50), "select": ["EA401"]}
    reference = audit(corpus, query_file=npy, **common).check("EA401").value
    from_npz = audit(corpus, query_file=tmp_path / "q.npz", query_key="asked", **common)
    from_parquet = audit(corpus, query_file=tmp_path / "q.parquet", query_column="query", **common)
    assert from_npz.check("EA401").value == reference
    assert from_parquet.check("EA401").value == reference
    result = cli_process(
        "check", corpus, "--column", "vec", "--query-file", npy, "--query-key", "x"
    )
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--query-key" in result.stderr and "Traceback" not in result.stderr


def test_query_hubness_judges_what_the_query_file_retrieves_in_both_directions(tmp_path):
    """Queries drawn like the corpus spread their results (EA504 passes); queries that all ask
    about the same few rows concentrate them (it fails); the value is exact with every query of
    the file searched, and equals the spread of the slots counted by brute force."""
    rows = encoder_like(6400, 32, seed=11, normalize=False)
    corpus, like = rows[:6000], rows[6000:]  # held-out rows of the same export
    rng = np.random.default_rng(12)
    about_few = corpus[rng.integers(5, size=400)] + 0.01 * rng.standard_normal((400, 32))
    found = {}
    for name, queries in (("like", like), ("few", about_few)):
        np.save(tmp_path / f"{name}.npy", queries)
        check = audit(corpus, query_file=str(tmp_path / f"{name}.npy")).check("EA504")
        cosines = _unit(queries.astype(np.float32).astype(np.float64)) @ _unit(corpus).T
        lists = np.argsort(-cosines, axis=1, kind="stable")[:, :K]
        counts = np.bincount(np.asarray(lists).ravel(), minlength=len(corpus)).astype(float)
        slots = counts.sum()
        spread = slots**2 / (counts**2).sum() / (slots**2 / (slots + slots * (slots - 1) / 6000))
        assert check.value == pytest.approx(spread, rel=1e-9)
        found[name] = check
    assert found["like"].status == Status.PASS and found["few"].status == Status.FAIL
    assert found["few"].metrics["top_share"] > 0.9
