"""Corpus hygiene (EA005 near-duplicates, EA206 distance-concentration, EA502 graph-islands,
EA503 isolated-rows) against float64 brute force on generated corpora with planted defects:
perturbed copies, rows far from everything, small tight groups. Each guard is tested both ways:
the planted corpus is flagged and the clean one is not."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as scipy_stats
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from embaudit import audit, geometry
from embaudit.checks.defects import NEAR_DUPLICATE_FAIL
from embaudit.checks.graphs import FLOOR_MADS
from embaudit.estimates import median_standard_error
from embaudit.model import Status
from embaudit.options import Sampling
from tests.exports import encoder_like

N, D = 3000, 48
#: Every clean row is a query and in the geometry sample: values equal their brute force.
ALL = Sampling(queries=N, sample=N)


def _clean(seed: int = 0) -> np.ndarray:
    return encoder_like(N, D, seed=seed, common=0.5)


def _plant_copies(x: np.ndarray, share: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows replaced by a perturbed copy of another row (cosine about 0.995 to it)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    rows = rng.choice(N, size=int(share * N), replace=False)
    originals = rng.choice(np.setdiff1d(np.arange(N), rows), size=len(rows))
    noise = rng.standard_normal((len(rows), D)) * np.linalg.norm(x[originals], axis=1)[:, None]
    x[rows] = x[originals] + 0.07 / np.sqrt(D) * noise
    return x, rows


def _plant_isolated(x: np.ndarray, count: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rows in independent random directions: nothing is near them (nearest cosine about 0.4
    where the corpus's median is 0.85)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    rows = rng.choice(N, size=count, replace=False)
    x[rows] = rng.standard_normal((count, D))
    return x, rows


def _brute(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per row in float64: nearest other cosine and row, mean cosine to the others."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    nearest = cos.max(axis=1)
    np.fill_diagonal(cos, 0.0)
    mean = (cos.sum(axis=1)) / (len(x) - 1)
    return {"nearest": nearest, "mean": mean, "cos": cos}


def test_ea005_equals_the_exact_share_when_every_row_is_a_query():
    x, planted = _plant_copies(_clean(), 0.10)
    report = audit(x, sampling=ALL)
    check = report.check("EA005")
    exact = np.mean(_brute(x)["nearest"] >= 0.99)
    assert check.value == pytest.approx(exact, abs=1e-12)
    # Every planted copy and its original are near-duplicates of each other.
    assert exact >= len(planted) / N
    # The copies and their originals: above 10%, a failure.
    assert check.status == Status.FAIL


def test_ea005_fails_above_ten_percent_and_passes_a_clean_corpus():
    x, _ = _plant_copies(_clean(), 0.12)
    check = audit(x, sampling=ALL).check("EA005")
    assert check.value > NEAR_DUPLICATE_FAIL and check.status == Status.FAIL
    clean = audit(_clean(), sampling=ALL).check("EA005")
    assert clean.value == 0.0 and clean.status == Status.PASS
    assert clean.metrics["upper_95"] == pytest.approx(3 / N)
    few, _ = _plant_copies(_clean(), 0.02)
    assert audit(few, sampling=ALL).check("EA005").status == Status.WARN


def test_ea005_estimate_covers_the_exact_share():
    x, _ = _plant_copies(_clean(), 0.10)
    exact = np.mean(_brute(x)["nearest"] >= 0.99)
    misses = 0
    for seed in range(10):
        check = audit(x, seed=seed, sampling=Sampling(queries=400)).check("EA005")
        error = check.metrics["standard_error"]
        queries = check.metrics["queries"]
        assert error == pytest.approx(
            np.sqrt(check.value * (1 - check.value) / (queries - 1)), rel=1e-9
        )
        misses += abs(check.value - exact) > 3 * error
    assert misses <= 1


def test_ea005_leaves_exact_copies_to_ea003_and_reads_its_cosine_from_the_options():
    x = _clean()
    x[10] = x[20]  # an exact copy
    x[30] = 2.5 * x[40]  # the same direction, another norm: a near-duplicate
    report = audit(x, sampling=ALL)
    check = report.check("EA005")
    assert report.check("EA003").value > 0
    assert check.metrics["exact_copies"] == 2  # rows 10 and 20 find each other
    assert check.metrics["near"] == 2  # rows 30 and 40
    assert {(e["row"], e["nearest"]) for e in check.metrics["examples"]} == {(30, 40), (40, 30)}
    loose = audit(x, sampling=ALL, near_duplicate_cosine=0.5).check("EA005")
    # Brute force: each row's nearest row that is not a bit-identical copy of it.
    cos = _brute(x)["cos"]
    cos[10, 20] = cos[20, 10] = -np.inf
    np.fill_diagonal(cos, -np.inf)
    assert loose.metrics["near"] == int(np.sum(cos.max(axis=1) >= 0.5))


def test_a_copy_within_float_tolerance_is_a_near_duplicate_not_an_exact_one():
    """A row whose nearest row differs from it in the last bits (cosine 1 up to rounding, not
    bit-identical) is not EA003's exact duplicate: EA005 counts it, so that no row is counted
    nowhere; a bit-identical copy stays EA003's."""
    x = _clean().astype(np.float32)
    x[10] = x[20]  # bit-identical
    x[30] = np.nextafter(x[40], np.float32(np.inf))  # every coordinate one ulp away
    report = audit(x, sampling=ALL)
    check = report.check("EA005")
    assert report.check("EA003").metrics["duplicate_rows"] == 1
    assert check.metrics["exact_copies"] == 2  # rows 10 and 20 find each other
    assert check.metrics["near"] == 2  # rows 30 and 40
    assert {(e["row"], e["nearest"]) for e in check.metrics["examples"]} == {(30, 40), (40, 30)}


@pytest.mark.parametrize("order", ["exact first", "near first"])
def test_a_row_with_an_exact_and_a_near_copy_is_a_near_duplicate_in_any_order(order):
    """Each of 300 rows has a bit-identical copy and a copy one ulp away: whichever of the two
    ties put first in a list, every one of the 900 rows has a near-duplicate that is not its
    exact copy, and EA003 counts the 300 exact ones."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, D)).astype(np.float32)
    near = np.nextafter(base, np.float32(np.inf))
    copies = (base.copy(), near) if order == "exact first" else (near, base.copy())
    x = np.concatenate([base, *copies, rng.standard_normal((2100, D)).astype(np.float32)])
    report = audit(x, sampling=ALL, select="EA003,EA005")
    assert report.check("EA005").metrics["near"] == 900
    assert report.check("EA005").value == pytest.approx(900 / N)
    assert report.check("EA003").metrics["duplicate_rows"] == 300


def test_a_nearest_cosine_at_the_cutoff_counts():
    """Two rows at cosine exactly 0.5 (1/√2 · 1/√2 in float32 rounds either way) with
    near-duplicate-cosine 0.5 are both near-duplicates; just above that, neither is."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 400))  # nearest cosines about 0.25 at most
    x[0], x[1] = 0.0, 0.0
    x[0, :2] = 1.0
    x[1, [0, 2]] = 1.0  # x0 · x1 / (|x0| |x1|) = 1 / 2 exactly
    brute = _brute(x)["nearest"]
    assert np.sort(brute)[-2:] == pytest.approx([0.5, 0.5], abs=1e-15)
    assert (np.sort(brute)[:-2] < 0.49).all()
    every = Sampling(queries=200, sample=200)
    at = audit(x, sampling=every, near_duplicate_cosine=0.5, select="EA005").check("EA005")
    assert at.metrics["near"] == 2
    above = audit(x, sampling=every, near_duplicate_cosine=0.5001, select="EA005")
    assert above.check("EA005").metrics["near"] == 0


def test_ea206_is_the_median_contrast_of_brute_force():
    x = _clean()
    brute = _brute(x)
    contrast = (1 - brute["mean"]) / (1 - brute["nearest"])
    check = audit(x, sampling=ALL).check("EA206")
    assert check.value == pytest.approx(np.median(contrast), rel=1e-5)
    assert check.status == Status.PASS
    assert check.metrics["reference"]["median"] == pytest.approx(
        1 / (1 - geometry.isotropic_nearest_cosine(N - 1, D))
    )


def test_ea206_warns_on_isotropic_noise_and_not_on_clustered_rows():
    noise = np.random.default_rng(3).standard_normal((N, 256))
    check = audit(noise, sampling=Sampling(queries=300)).check("EA206")
    assert check.status == Status.WARN
    # The median contrast of isotropic noise is its closed form, within the sampling error.
    reference = check.metrics["reference"]["median"]
    assert abs(check.value - reference) < 4 * check.metrics["standard_error"] + 0.01
    assert audit(_clean(), sampling=Sampling(queries=300)).check("EA206").status == Status.PASS


@pytest.mark.parametrize(("n", "d"), [(100_000, 384), (1000, 32), (10, 3), (50, 2)])
def test_the_isotropic_nearest_cosine_is_the_beta_quantile(n, d):
    a = (d - 1) / 2
    expected = 2 * scipy_stats.beta(a, a).isf(1 - 0.5 ** (1 / n)) - 1
    assert geometry.isotropic_nearest_cosine(n, d) == pytest.approx(expected, abs=1e-6)


def test_the_isotropic_nearest_cosine_matches_a_simulation():
    rng = np.random.default_rng(4)
    d, n = 24, 499
    unit = geometry.unit_rows(rng.standard_normal((3000, d)))
    others = geometry.unit_rows(rng.standard_normal((n, d)))
    simulated = np.median((unit @ others.T).max(axis=1))
    assert geometry.isotropic_nearest_cosine(n, d) == pytest.approx(simulated, abs=0.01)


def _islands_brute(x: np.ndarray, k: int) -> tuple[float, float]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    top = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    adjacency = np.zeros((len(x), len(x)), dtype=bool)
    adjacency[np.repeat(np.arange(len(x)), k), top.ravel()] = True
    mutual = adjacency & adjacency.T
    i, j = np.nonzero(mutual)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=mutual.shape)
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)[labels]
    return float(np.mean((sizes > 1) & (sizes < k + 1))), float(np.mean(sizes == 1))


def _tight_groups(x: np.ndarray, groups: int, size: int, seed: int = 5) -> np.ndarray:
    """Groups of ``size`` rows around a random direction each, far from the corpus."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    rows = rng.choice(N, size=groups * size, replace=False).reshape(groups, size)
    for group in rows:
        centre = rng.standard_normal(D) * 3
        x[group] = centre + 0.3 * rng.standard_normal((size, D))
    return x


def test_ea502_is_the_mutual_knn_component_share_of_brute_force():
    x = _tight_groups(_clean(), groups=40, size=5)
    check = audit(x, sampling=ALL).check("EA502")
    groups, singles = _islands_brute(x, 10)
    assert check.value == pytest.approx(groups, abs=1e-12)
    assert check.metrics["single_rows"] == pytest.approx(singles, abs=1e-12)
    assert check.status == Status.WARN
    assert audit(_clean(), sampling=ALL).check("EA502").status == Status.PASS


def test_mutual_components_agree_with_scipy_on_random_graphs():
    rng = np.random.default_rng(6)
    for _ in range(20):
        m, k = int(rng.integers(5, 60)), int(rng.integers(1, 5))
        graph = np.array(
            [rng.choice(np.delete(np.arange(m), i), k, replace=False) for i in range(m)]
        )
        adjacency = np.zeros((m, m), dtype=bool)
        adjacency[np.repeat(np.arange(m), k), graph.ravel()] = True
        mutual = adjacency & adjacency.T
        _, labels = connected_components(mutual.astype(np.int8), directed=False)
        ours = geometry.mutual_labels(graph)
        np.testing.assert_array_equal(np.bincount(ours)[ours], np.bincount(labels)[labels])


def test_ea503_is_the_share_below_the_robust_floor():
    x, planted = _plant_isolated(_clean(), 150)
    brute = _brute(x)["nearest"]
    median = np.median(brute)
    floor = median - FLOOR_MADS * 1.482602218505602 * np.median(np.abs(brute - median))
    check = audit(x, sampling=ALL).check("EA503")
    assert check.metrics["floor"] == pytest.approx(floor, abs=1e-6)
    assert check.value == pytest.approx(np.mean(brute < floor), abs=1e-12)
    assert check.status == Status.WARN
    assert set(planted) >= {e["row"] for e in check.metrics["examples"]}
    assert audit(_clean(), sampling=ALL).check("EA503").status == Status.PASS


def test_examples_are_named_by_id(tmp_path):
    x, planted = _plant_isolated(_clean(), 150)
    ids = [f"doc-{i}" for i in range(N)]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel()), D)
    pq.write_table(pa.table({"id": ids, "embedding": vectors}), tmp_path / "x.parquet")
    report = audit(tmp_path / "x.parquet", sampling=ALL)
    names = {e["row"] for e in report.check("EA503").metrics["examples"]}
    assert names and names <= {f"doc-{i}" for i in planted}
    assert "doc-" in report.check("EA503").message


def test_the_median_error_matches_its_normal_theory():
    assert median_standard_error([1.0]) is None
    assert median_standard_error([np.inf] * 10 + [1.0]) is None
    # Over many samples the errors average the spread of the medians.
    medians, errors = [], []
    for seed in range(200):
        sample = np.random.default_rng(100 + seed).standard_normal(501)
        medians.append(np.median(sample))
        errors.append(median_standard_error(sample))
    assert np.mean(errors) == pytest.approx(np.std(medians), rel=0.15)
    # ... and the spread of normal medians, sqrt(pi / 2) / sqrt(n).
    assert np.mean(errors) == pytest.approx(np.sqrt(np.pi / 2 / 501), rel=0.1)


def test_near_duplicate_cosine_is_validated(cli_process, tmp_path):
    np.save(tmp_path / "x.npy", _clean().astype(np.float32))
    result = cli_process("check", tmp_path / "x.npy", "--near-duplicate-cosine", "1.5")
    assert result.code == 2 and "--near-duplicate-cosine" in result.stderr
    result = cli_process(
        "check", tmp_path / "x.npy", "--near-duplicate-cosine", "0.5", "-f", "json"
    )
    assert result.code in (0, 1), result.stderr
    check = next(c for c in json.loads(result.stdout)["checks"] if c["code"] == "EA005")
    assert check["metrics"]["near_duplicate_cosine"] == 0.5


def test_ea502_counts_islands_of_the_degree_10_graph_whatever_k():
    x = _tight_groups(_clean(), groups=40, size=5)
    at_10 = audit(x, sampling=ALL).check("EA502")
    at_5 = audit(x, k=5, sampling=ALL).check("EA502")
    assert at_5.value == at_10.value and at_5.metrics["graph_k"] == 10
    assert at_5.value == pytest.approx(_islands_brute(x, 10)[0], abs=1e-12)
    # The degree-5 graph has more, smaller islands: the fixed degree is what keeps k out of it.
    assert _islands_brute(x, 5)[0] > at_10.value
