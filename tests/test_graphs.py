"""EA502 (and EA501's sample-graph metrics) measure a graph of `sample` rows; a smaller error
comes from averaging more independent graphs of that size (``Sampling.graphs``), never from a
larger graph, whose hubs and islands are another graph's. EA501's value is the corpus's own
graph's: exact when the sample is every row, else estimated from the queries' lists."""

from __future__ import annotations

import numpy as np
import pytest

from embaudit import audit, geometry
from embaudit.measurement.graphs import SampleGraph, averaged_graph
from embaudit.measurement.sampling import Sampling
from embaudit.model import Status
from tests.exports import encoder_like


def _robin_hood_by_hand(rows: np.ndarray, k: int) -> float:
    """The Robin Hood index of the cosine k-NN graph, from the full float64 cosine matrix."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosines = unit @ unit.T
    np.fill_diagonal(cosines, -np.inf)
    lists = np.argsort(-cosines, axis=1, kind="stable")[:, :k]
    occurrence = np.bincount(lists.ravel(), minlength=len(rows))
    return float(np.abs(occurrence - k).sum() / (2 * occurrence.sum()))


def _graph(robin_hood: float, error: float | None, share: float, share_error: float | None):
    hub = geometry.Hubness(0.5, robin_hood, 0.01, 30, np.array([10, 12, 8]))
    return SampleGraph(hub, 10, error, share, share_error, 0.1, 10)


def test_the_mean_of_independent_graphs_and_the_error_of_a_mean():
    graphs = [_graph(0.30, 0.02, 0.04, 0.010), _graph(0.40, 0.03, 0.06, 0.020)]
    mean = averaged_graph(graphs)
    assert mean.graphs == 2
    assert mean.hubness is not None and mean.hubness.robin_hood == pytest.approx(0.35)
    assert mean.robin_hood_error == pytest.approx(np.hypot(0.02, 0.03) / 2)
    assert mean.island_share == pytest.approx(0.05)
    assert mean.island_error == pytest.approx(np.hypot(0.01, 0.02) / 2)
    assert mean.hubness.k_occurrence.tolist() == [10, 12, 8, 10, 12, 8]  # pooled
    # One graph without an error (a single mutual component): the mean has none either.
    assert averaged_graph([*graphs, _graph(0.35, 0.02, 0.0, None)]).island_error is None
    assert averaged_graph(graphs[:1]) is graphs[0]


def test_a_mean_of_means_weighs_each_by_its_graphs():
    """A later round adds graphs to the mean of the earlier ones: the same mean and error as
    averaging every graph at once."""
    graphs = [
        _graph(0.30, 0.02, 0.04, 0.010),
        _graph(0.40, 0.03, 0.06, 0.020),
        _graph(0.20, 0.01, 0.02, 0.030),
        _graph(0.50, 0.04, 0.10, 0.005),
    ]
    at_once = averaged_graph(graphs)
    in_rounds = averaged_graph([averaged_graph(graphs[:2]), *graphs[2:]])
    assert in_rounds.graphs == at_once.graphs == 4
    assert in_rounds.hubness is not None and at_once.hubness is not None
    assert in_rounds.hubness.robin_hood == pytest.approx(0.35) == at_once.hubness.robin_hood
    assert in_rounds.island_share == pytest.approx(at_once.island_share)
    assert in_rounds.robin_hood_error == pytest.approx(np.sqrt(0.003) / 4)
    assert in_rounds.robin_hood_error == pytest.approx(at_once.robin_hood_error)
    assert in_rounds.island_error == pytest.approx(at_once.island_error)


def _spread_by_hand(rows: np.ndarray, k: int) -> float:
    """EA501's value of the whole graph: the inverse Simpson index of the k-occurrences over the
    same for as many slots thrown on the rows uniformly at random."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosines = unit @ unit.T
    np.fill_diagonal(cosines, -np.inf)
    lists = np.argsort(-cosines, axis=1, kind="stable")[:, :k]
    n = len(rows)
    occurrence = np.bincount(lists.ravel(), minlength=n).astype(np.float64)
    slots = occurrence.sum()
    effective = slots**2 / (occurrence**2).sum()
    at_random = slots**2 / (slots + slots * (slots - 1) / n)  # E sum N^2, multinomial
    return float(effective / at_random)


def test_averaged_graphs_estimate_the_mean_graph_of_that_size():
    """Four 800-row graphs against the mean of 60 independent 800-row graphs built by hand."""
    x = encoder_like(6000, 32, seed=4, normalize=False)
    rng = np.random.default_rng(99)
    reference = np.mean(
        [_robin_hood_by_hand(x[rng.choice(len(x), 800, replace=False)], 10) for _ in range(60)]
    )
    one = audit(x, select="EA501", sampling=Sampling(sample=800)).check("EA501")
    four = audit(x, select="EA501", sampling=Sampling(sample=800, graphs=4)).check("EA501")
    one_graph, four_graphs = one.metrics["sample_graph"], four.metrics["sample_graph"]
    assert (one_graph["graphs"], four_graphs["graphs"]) == (1, 4)
    assert four_graphs["rows"] == one_graph["rows"] == 800  # the graph did not grow
    # The error of a mean of four: about half of one graph's.
    one_error, four_error = (g["robin_hood_standard_error"] for g in (one_graph, four_graphs))
    assert 0.3 < four_error / one_error < 0.8
    assert abs(four_graphs["robin_hood"] - reference) < 3 * four_error
    # The first graph is the one measured alone: the others are independent samples.
    assert four_graphs["robin_hood"] != one_graph["robin_hood"]
    # The corpus's value does not come from the sample's graphs: more graphs leave it alone.
    assert four.value == one.value


def test_an_undecided_island_share_averages_more_graphs_and_keeps_the_graph_size():
    x = encoder_like(8000, 16, seed=1)
    sampling = Sampling(sample=1000)
    first = audit(x, select="EA502", sampling=sampling).check("EA502")
    assert first.status == Status.PASS
    # A threshold just above the value, inside its 95% interval: undecided by one graph.
    threshold = first.value + first.metrics["standard_error"]
    report = audit(x, select="EA502", sampling=sampling, thresholds={"EA502": threshold})
    adaptive = report.params["adaptive"]
    check = report.check("EA502")
    assert adaptive["grew"] == ["EA502"] and adaptive["rounds"] > 1
    graphs = 2 ** (adaptive["rounds"] - 1)
    assert check.metrics["sampling"] == {"graphs": graphs}
    assert check.metrics["graphs"] == graphs and check.metrics["sample"] == 1000
    assert check.metrics["standard_error"] < first.metrics["standard_error"]
    undecided = abs(check.value - threshold) <= 1.96 * check.metrics["standard_error"]
    assert bool(check.metrics.get("inconclusive")) == undecided
    assert check.status == (Status.WARN if check.value > threshold else Status.PASS)


def test_an_undecided_hubness_searches_more_queries_not_more_graphs():
    x = encoder_like(8000, 48, seed=1)
    sampling = Sampling(queries=300, sample=1000)
    first = audit(x, select="EA501", sampling=sampling).check("EA501")
    threshold = first.value - first.metrics["standard_error"]
    report = audit(x, select="EA501", sampling=sampling, thresholds={"EA501": threshold})
    check = report.check("EA501")
    rounds = report.params["adaptive"]["rounds"]
    assert rounds > 1 and check.metrics["sampling"] == {"queries": 300 * 2 ** (rounds - 1)}
    assert check.metrics["queries"] == 300 * 2 ** (rounds - 1)
    assert check.metrics["sample_graph"]["graphs"] == 1
    assert check.metrics["standard_error"] < first.metrics["standard_error"]


def test_a_clear_hubness_is_measured_on_one_graph():
    report = audit(
        encoder_like(8000, 48, seed=1), select="EA501,EA502", sampling=Sampling(sample=1000)
    )
    assert "adaptive" not in report.params
    assert report.check("EA502").metrics["graphs"] == 1
    assert report.check("EA501").metrics["sample_graph"]["graphs"] == 1


def test_a_sample_of_every_row_is_one_exact_graph_whatever_graphs_asks():
    x = encoder_like(900, 24, seed=2)
    check = audit(x, select="EA501", sampling=Sampling(sample=900, graphs=4)).check("EA501")
    assert check.metrics["sample_graph"]["graphs"] == 1 and check.metrics["standard_error"] is None
    assert check.value == pytest.approx(_spread_by_hand(x, 10), abs=1e-12)
    assert check.metrics["sample_graph"]["robin_hood"] == pytest.approx(
        _robin_hood_by_hand(x, 10), abs=1e-12
    )


def _whole_graph_spread(rows: np.ndarray, k: int, block: int = 1000) -> float:
    """EA501's value by brute force over every row, blockwise in float64 (rows too many for one
    cosine matrix)."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    n = len(rows)
    occurrence = np.zeros(n)
    for start in range(0, n, block):
        cosines = unit[start : start + block] @ unit.T
        cosines[np.arange(len(cosines)), np.arange(start, start + len(cosines))] = -np.inf
        lists = np.argpartition(-cosines, k, axis=1)[:, :k]
        occurrence += np.bincount(lists.ravel(), minlength=n)
    slots = occurrence.sum()
    return float(slots**2 / (occurrence**2).sum() / (slots**2 / (slots + slots * (slots - 1) / n)))


def _tight_clusters(n: int, d: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    rows = centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, d))
    return rows * rng.lognormal(0.0, 1.0, size=(n, 1))  # norms do not move cosine lists


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(lambda: encoder_like(12_000, 32, seed=5, normalize=False), id="encoder-like"),
        pytest.param(lambda: _tight_clusters(12_000, 24, 40, 0.5, seed=6), id="tight-clusters"),
    ],
)
def test_the_corpus_graph_spread_is_estimated_within_its_error_from_the_queries(rows):
    """1,000 queries of 12,000 rows against the whole graph by brute force: the estimate is that
    of the corpus's graph (not of a smaller one), within three of its standard errors."""
    x = rows()
    check = audit(x, select="EA501", sampling=Sampling(queries=1000)).check("EA501")
    exact = _whole_graph_spread(x, 10)
    assert check.metrics["queries"] == 1000 and check.metrics["population"] == len(x)
    assert abs(check.value - exact) < 3 * check.metrics["standard_error"]
    # A 5,000-row graph's value is another graph's: further from the corpus's than the error.
    graph = check.metrics["sample_graph"]
    assert graph["rows"] == 5000 and graph["rows"] < len(x)


def test_hubness_is_judged_at_the_corpus_size_in_both_directions():
    """100,000 × 128 rows: tight clusters whose whole graph is hub-ridden (Robin Hood index 0.54
    by brute force) warn, although their 5,000-row sample graph looks like a clean corpus's
    (0.39); looser clusters pass."""
    hubby = _tight_clusters(100_000, 128, 50, 0.5, seed=1)
    clean = _tight_clusters(100_000, 128, 256, 1.0, seed=2)
    judged = {}
    for name, x in (("hubby", hubby), ("clean", clean)):
        judged[name] = audit(x, select="EA501").check("EA501")
    assert judged["hubby"].status == Status.WARN and judged["clean"].status == Status.PASS
    assert judged["hubby"].value < 0.25 < judged["clean"].value
    assert judged["hubby"].metrics["sample_graph"]["robin_hood"] < 0.5  # the sample's graph
