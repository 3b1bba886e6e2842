"""EA501 and EA502 measure a graph of `sample` rows; a smaller error comes from averaging more
independent graphs of that size (``Sampling.graphs``), never from a larger graph, whose hubs and
islands are another graph's."""

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


def test_averaged_graphs_estimate_the_mean_graph_of_that_size():
    """Four 800-row graphs against the mean of 60 independent 800-row graphs built by hand."""
    x = encoder_like(6000, 32, seed=4, normalize=False)
    rng = np.random.default_rng(99)
    reference = np.mean(
        [_robin_hood_by_hand(x[rng.choice(len(x), 800, replace=False)], 10) for _ in range(60)]
    )
    one = audit(x, select="EA501", sampling=Sampling(sample=800)).check("EA501")
    four = audit(x, select="EA501", sampling=Sampling(sample=800, graphs=4)).check("EA501")
    assert (one.metrics["graphs"], four.metrics["graphs"]) == (1, 4)
    assert four.metrics["sample"] == one.metrics["sample"] == 800  # the graph did not grow
    # The error of a mean of four: about half of one graph's.
    assert 0.3 < four.metrics["standard_error"] / one.metrics["standard_error"] < 0.8
    assert abs(four.value - reference) < 3 * four.metrics["standard_error"]
    # The first graph is the one measured alone: the others are independent samples.
    assert four.value != one.value


def test_an_undecided_hubness_averages_more_graphs_and_keeps_the_graph_size():
    x = encoder_like(8000, 48, seed=1)
    sampling = Sampling(sample=1000)
    first = audit(x, select="EA501", sampling=sampling).check("EA501")
    assert first.status == Status.PASS
    # A threshold just above the value, inside its 95% interval: undecided by one graph.
    threshold = first.value + first.metrics["standard_error"]
    report = audit(x, select="EA501", sampling=sampling, thresholds={"EA501": threshold})
    adaptive = report.params["adaptive"]
    check = report.check("EA501")
    assert adaptive["grew"] == ["EA501"] and adaptive["rounds"] > 1
    graphs = 2 ** (adaptive["rounds"] - 1)
    assert check.metrics["sampling"] == {"graphs": graphs}
    assert check.metrics["graphs"] == graphs and check.metrics["sample"] == 1000
    assert check.metrics["standard_error"] < first.metrics["standard_error"]
    undecided = abs(check.value - threshold) <= 1.96 * check.metrics["standard_error"]
    assert bool(check.metrics.get("inconclusive")) == undecided
    assert check.status == (Status.WARN if check.value > threshold else Status.PASS)


def test_a_clear_hubness_is_measured_on_one_graph():
    report = audit(
        encoder_like(8000, 48, seed=1), select="EA501,EA502", sampling=Sampling(sample=1000)
    )
    assert "adaptive" not in report.params
    assert all(check.metrics["graphs"] == 1 for check in report.checks)


def test_a_sample_of_every_row_is_one_exact_graph_whatever_graphs_asks():
    x = encoder_like(900, 24, seed=2)
    check = audit(x, select="EA501", sampling=Sampling(sample=900, graphs=4)).check("EA501")
    assert check.metrics["graphs"] == 1 and check.metrics["standard_error"] is None
    assert check.value == pytest.approx(_robin_hood_by_hand(x, 10), abs=1e-12)
