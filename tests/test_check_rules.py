"""The rules of the neighbour checks (EA301, EA302, EA401, EA402, EA501) on measurements built by
hand: status, verdict impact, recommendation, value and metrics, per declared objective, on both
sides of each threshold. The measurements themselves are tested against brute force in
tests/test_neighbor_references.py; here they are inputs, so every branch of a rule is reached in
milliseconds. Thresholds are passed explicitly: these tests pin the rules, not the defaults.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from embaudit.checks.base import AuditData
from embaudit.checks.common import (
    DECLARE,
    DIMENSION_LIST_CAP,
    NORMALIZE,
    SKIP,
    USE_DOT,
    overlap_summary,
)
from embaudit.checks.gauges import canonical_gauge, gauge_sensitivity, s50
from embaudit.checks.graphs import REDUCE_HUBS, hubness, query_hubness
from embaudit.checks.metrics import RANK_WITH_L2, cosine_vs_dot, cosine_vs_l2
from embaudit.estimates import bounded_mean_standard_error, combined_standard_error, t_factor
from embaudit.geometry import Hubness
from embaudit.measurement.gauges import HEADLINE_LEVEL
from embaudit.measurement.neighbors import Neighbors
from embaudit.measurement.occurrence import Occurrence
from embaudit.model import Level, Status, TrainedWith
from embaudit.options import CheckOptions

PAIRS = (("cosine", "l2"), ("cosine", "dot"), ("l2", "dot"))
L2_ACTION = RANK_WITH_L2


def neighbors(
    *,
    overlap: float = 1.0,
    k: int = 10,
    queries: int = 4,
    gauge: dict[float, list[list[float]]] | None = None,
    canonical: list[float] | None = None,
    dead: tuple[int, ...] = (),
    d: int = 8,
) -> Neighbors:
    """Per-query overlaps: ``overlap`` for every metric pair, the gauge draws as given."""
    per_query = {pair: np.full(queries, overlap) for pair in PAIRS}
    scale = np.ones(d)
    scale[list(dead)] = 0.0
    return Neighbors(
        k=k,
        queries=queries,
        gauge_queries=2,
        query_rows=np.arange(queries, dtype=np.int64),
        overlap=per_query,
        top1_differs=dict.fromkeys(PAIRS, 0.25),
        by_k={pair: {1: 0.5, k: overlap} for pair in PAIRS},
        gauge={s: [np.array(draw) for draw in draws] for s, draws in (gauge or {}).items()},
        canonical=np.array(canonical if canonical is not None else [1.0, 1.0]),
        canonical_scale=scale,
    )


def data(trained_with: TrainedWith, measured: Neighbors | None, geometry=None) -> AuditData:
    options = CheckOptions(trained_with=trained_with)
    # The queries are a sample of a corpus far larger than them (their mean has an error).
    corpus = SimpleNamespace(n_clean=10**9)
    return AuditData(params=options, stats=corpus, geometry=geometry, neighbors=measured)  # type: ignore[arg-type]


# overlap_summary and s50 --------------------------------------------------------------------


def test_overlap_summary_is_the_mean_with_its_standard_error_and_quantiles():
    per_query = np.array([1.0, 0.5, 0.75, 0.25, 0.0])
    summary = overlap_summary(per_query)
    assert summary["overlap_at_k"] == 0.5
    # Agresti-Coull's form: z^2/2 pseudo-queries at 0 and at 1; symmetric here, so the mean
    # stays 0.5 and each pseudo-query lies 0.5 from it.
    extra = 1.959963984540054**2 / 2
    total = 5 + 2 * extra
    spread = float(((per_query - 0.5) ** 2).sum()) + 2 * extra * 0.25
    assert summary["standard_error"] == pytest.approx(math.sqrt(spread) / total, rel=1e-12)
    assert summary["standard_error"] > per_query.std(ddof=1) / math.sqrt(5) * 0.8
    assert summary["p10"] == pytest.approx(0.1) and summary["p50"] == 0.5
    assert summary["queries"] == 5
    assert overlap_summary(np.array([0.7]))["standard_error"] is None
    # Every query found every neighbour: still an error, that of what 2 queries cannot see.
    assert overlap_summary(np.ones(2))["standard_error"] > 0.1


def test_s50_interpolates_in_log_s_and_says_which_side_it_is_on():
    levels = [0.1, 0.25, 0.5, 1.0]
    assert s50(levels, [0.4, 0.3, 0.2, 0.1]) == (None, "<")
    assert s50(levels, [0.9, 0.8, 0.7, 0.6]) == (None, ">")
    assert s50(levels, [0.9, 0.8, 0.7, 0.5]) == (None, ">")  # reaching 0.5 is not falling below
    value, bound = s50(levels, [0.9, 0.7, 0.3, 0.1])
    assert bound is None
    assert value == pytest.approx(math.exp(math.log(0.25) + 0.5 * math.log(2)), rel=1e-12)
    value, _ = s50(levels, [0.5, 0.4, 0.3, 0.2])  # exactly 0.5 at the first level
    assert value == pytest.approx(0.1, rel=1e-12)
    value, _ = s50(levels, [0.9, 0.8, 0.6, 0.2])
    expected = math.exp(math.log(0.5) + 0.25 * (math.log(1.0) - math.log(0.5)))
    assert value == pytest.approx(expected, rel=1e-12)


# EA401 / EA402 ------------------------------------------------------------------------------

AGREEMENT = [
    # (check, objective, status, impact, recommendation) when the overlap is below threshold
    (cosine_vs_l2, TrainedWith.L2, Status.FAIL, Level.UNTRUSTWORTHY, L2_ACTION),
    (cosine_vs_l2, TrainedWith.UNKNOWN, Status.WARN, Level.CAUTION, NORMALIZE),
    (cosine_vs_l2, TrainedWith.COSINE, Status.WARN, None, NORMALIZE),
    (cosine_vs_l2, TrainedWith.DOT, Status.WARN, None, None),
    (cosine_vs_l2, TrainedWith.DOT_REGULARIZED, Status.WARN, None, None),
    (cosine_vs_dot, TrainedWith.DOT, Status.FAIL, Level.UNTRUSTWORTHY, USE_DOT),
    (cosine_vs_dot, TrainedWith.DOT_REGULARIZED, Status.FAIL, Level.UNTRUSTWORTHY, USE_DOT),
    (cosine_vs_dot, TrainedWith.UNKNOWN, Status.WARN, Level.CAUTION, NORMALIZE),
    (cosine_vs_dot, TrainedWith.COSINE, Status.WARN, None, NORMALIZE),
    (cosine_vs_dot, TrainedWith.L2, Status.WARN, None, None),
]


@pytest.mark.parametrize(("check", "objective", "status", "impact", "action"), AGREEMENT)
def test_disagreement_weighs_by_the_declared_objective(check, objective, status, impact, action):
    finding = check(data(objective, neighbors(overlap=0.85)), 0.9)
    assert (finding.status, finding.impact, finding.recommendation) == (status, impact, action)
    assert finding.value == pytest.approx(0.85)
    name = "L2" if check is cosine_vs_l2 else "inner-product"
    assert finding.message.startswith(f"overlap@10 of cosine and {name} neighbours 0.850: ")
    if status == Status.FAIL:
        assert f"cosine disagrees with the {name} ranking the model was trained for" in (
            finding.message
        )
    else:
        assert f"an {name} index will not return the cosine neighbours" in finding.message
    # Every status carries the same measurement.
    assert finding.metrics["overlap_at_k"] == pytest.approx(0.85)
    assert finding.metrics["queries"] == 4


@pytest.mark.parametrize("check", [cosine_vs_l2, cosine_vs_dot])
@pytest.mark.parametrize("objective", list(TrainedWith))
def test_agreement_at_or_above_the_threshold_passes_for_every_objective(check, objective):
    for overlap in (0.9, 0.95, 1.0):
        finding = check(data(objective, neighbors(overlap=overlap)), 0.9)
        assert finding.status == Status.PASS, overlap
        assert finding.impact is None and finding.recommendation is None
        assert finding.value == pytest.approx(overlap)
    name = "L2" if check is cosine_vs_l2 else "inner-product"
    assert finding.message == f"overlap@10 of cosine and {name} neighbours 1.000"


def test_agreement_metrics_carry_the_summary_the_top1_share_and_the_curve_by_k():
    measured = neighbors(overlap=0.8, k=5, queries=3)
    finding = cosine_vs_dot(data(TrainedWith.UNKNOWN, measured), 0.9)
    assert finding.metrics == {
        "overlap_at_k": pytest.approx(0.8),
        # Three queries that agree on 0.8 do not make the mean exact (tested in test_estimates).
        "standard_error": pytest.approx(bounded_mean_standard_error(np.full(3, 0.8))),
        "p10": pytest.approx(0.8),
        "p50": pytest.approx(0.8),
        "queries": 3,
        "k": 5,
        "top1_differs": 0.25,
        "by_k": {"1": 0.5, "5": 0.8},
    }
    assert cosine_vs_l2(data(TrainedWith.UNKNOWN, measured), 0.9).metrics["by_k"] == {
        "1": 0.5,
        "5": 0.8,
    }


@pytest.mark.parametrize("check", [cosine_vs_l2, cosine_vs_dot, canonical_gauge])
def test_neighbour_checks_skip_without_neighbours(check):
    for measured in (None, neighbors(k=0)):
        finding = check(data(TrainedWith.DOT, measured), 0.9)
        assert finding.status == Status.SKIP and finding.value is None
        assert finding.message == SKIP and finding.impact is None


def test_each_agreement_reads_its_own_pair():
    measured = neighbors(overlap=1.0)
    measured.overlap[("cosine", "l2")][:] = 0.5
    assert cosine_vs_l2(data(TrainedWith.L2, measured), 0.9).status == Status.FAIL
    assert cosine_vs_dot(data(TrainedWith.DOT, measured), 0.9).status == Status.PASS


# EA301 / EA302: the gauge rule --------------------------------------------------------------

GAUGE = [
    (TrainedWith.DOT, Status.FAIL, Level.UNTRUSTWORTHY, USE_DOT),
    (TrainedWith.UNKNOWN, Status.WARN, Level.CAUTION, DECLARE),
    (TrainedWith.COSINE, Status.PASS, None, None),
    (TrainedWith.L2, Status.PASS, None, None),
    (TrainedWith.DOT_REGULARIZED, Status.PASS, None, None),
]
LADDER = {
    0.1: [[1.0, 1.0], [1.0, 0.8]],
    0.25: [[0.8, 0.8], [0.7, 0.7]],
    0.5: [[0.6, 0.6], [0.5, 0.3]],
    1.0: [[0.2, 0.4], [0.2, 0.2]],
}


@pytest.mark.parametrize(("objective", "status", "impact", "action"), GAUGE)
def test_gauge_sensitivity_weighs_by_the_declared_objective(objective, status, impact, action):
    finding = gauge_sensitivity(data(objective, neighbors(gauge=LADDER)), 0.8)
    assert (finding.status, finding.impact, finding.recommendation) == (status, impact, action)
    assert finding.value == pytest.approx(0.5)  # the mean of the draws at s = 0.5
    assert finding.message.startswith("overlap@10 0.50 at s = 0.5; s50 ")
    if objective == TrainedWith.DOT:
        assert finding.message.endswith("depend on an arbitrary per-dimension scale")
    elif objective == TrainedWith.UNKNOWN:
        assert finding.message.endswith(
            ": if the model was trained with a dot product, cosine neighbours are partly arbitrary"
        )
    elif objective == TrainedWith.DOT_REGULARIZED:
        assert "irrelevant for a dot-regularized-trained model, whose per-factor penalty" in (
            finding.message
        )
    else:
        assert f"irrelevant for a {objective}-trained model, whose objective fixes" in (
            finding.message
        )


@pytest.mark.parametrize("objective", [TrainedWith.DOT, TrainedWith.UNKNOWN])
def test_gauge_sensitivity_at_or_above_the_threshold_passes(objective):
    finding = gauge_sensitivity(data(objective, neighbors(gauge=LADDER)), 0.5)
    assert finding.status == Status.PASS and finding.impact is None
    assert finding.recommendation is None
    assert gauge_sensitivity(data(objective, neighbors(gauge=LADDER)), 0.51).status != (Status.PASS)


def test_gauge_sensitivity_metrics_per_level():
    geometry = SimpleNamespace(cosine_change={0.1: 0.01, 0.25: 0.02, 0.5: 0.05})
    finding = gauge_sensitivity(data(TrainedWith.DOT, neighbors(gauge=LADDER), geometry), 0.8)
    rows = finding.metrics["levels"]
    assert [row["s"] for row in rows] == [0.1, 0.25, 0.5, 1.0]
    assert [row["overlap_at_k"] for row in rows] == pytest.approx([0.95, 0.75, 0.5, 0.25])
    assert rows[0]["draws"] == pytest.approx([1.0, 0.9])
    assert rows[2]["draws"] == pytest.approx([0.6, 0.4])
    assert [row["cosine_change"] for row in rows] == [0.01, 0.02, 0.05, None]
    assert all(row["standard_error"] is not None for row in rows)
    assert finding.metrics["s50"] == pytest.approx(0.5)
    assert finding.metrics["s50_bound"] is None
    assert finding.metrics["queries"] == 2 and finding.metrics["k"] == 10
    assert finding.message == (
        "overlap@10 0.50 at s = 0.5; s50 0.50: cosine neighbours of a dot-product model depend "
        "on an arbitrary per-dimension scale"
    )
    without = gauge_sensitivity(data(TrainedWith.DOT, neighbors(gauge=LADDER)), 0.8)
    assert all(row["cosine_change"] is None for row in without.metrics["levels"])


def test_the_gauge_checks_name_the_rows_they_searched_and_a_sample_of_them():
    every_row = data(TrainedWith.DOT, neighbors(gauge=LADDER))
    sampled = data(TrainedWith.DOT, replace(neighbors(gauge=LADDER), gauge_rows_searched=100_000))
    sampled = replace(sampled, stats=SimpleNamespace(n_clean=2_999_990, n=3_000_000))
    for check in (gauge_sensitivity, canonical_gauge):
        assert check(every_row, 0.8).metrics["rows"] == 10**9  # every clean row
        assert "sample" not in check(every_row, 0.8).message
        finding = check(sampled, 0.8)
        assert finding.metrics["rows"] == 100_000
        assert "(on a sample of 100,000 of the 2,999,990 rows" in finding.message


def test_gauge_sensitivity_standard_errors_are_those_of_each_levels_draws_and_queries():
    from embaudit.estimates import crossed_standard_error

    finding = gauge_sensitivity(data(TrainedWith.DOT, neighbors(gauge=LADDER)), 0.8)
    for row in finding.metrics["levels"]:
        assert row["standard_error"] == crossed_standard_error(np.array(LADDER[row["s"]]))
    assert finding.metrics["standard_error"] == finding.metrics["levels"][2]["standard_error"]


def test_the_headline_level_is_the_one_nearest_one_half_in_log_s():
    assert HEADLINE_LEVEL == 0.5
    ladder = {0.3: [[0.9, 0.9]], 0.9: [[0.4, 0.4]], 2.0: [[0.1, 0.1]]}
    finding = gauge_sensitivity(data(TrainedWith.DOT, neighbors(gauge=ladder)), 0.8)
    # |log(0.3/0.5)| = 0.51 < |log(0.9/0.5)| = 0.59: s = 0.3 is the headline.
    assert finding.value == pytest.approx(0.9)
    assert finding.message.startswith("overlap@10 0.90 at s = 0.3; s50 ")


def test_s50_outside_the_ladder_is_reported_as_a_bound():
    high = {0.1: [[0.9, 0.9]], 0.5: [[0.8, 0.8]], 1.0: [[0.7, 0.7]]}
    finding = gauge_sensitivity(data(TrainedWith.UNKNOWN, neighbors(gauge=high)), 0.5)
    assert finding.metrics["s50"] is None and finding.metrics["s50_bound"] == ">"
    assert finding.message == "overlap@10 0.80 at s = 0.5; s50 > 1"
    low = {0.1: [[0.4, 0.4]], 0.5: [[0.3, 0.3]], 1.0: [[0.2, 0.2]]}
    finding = gauge_sensitivity(data(TrainedWith.UNKNOWN, neighbors(gauge=low)), 0.1)
    assert finding.metrics["s50_bound"] == "<"
    assert finding.message == "overlap@10 0.30 at s = 0.5; s50 < 0.1"


def test_gauge_sensitivity_skips_without_gauge_blocks():
    for measured in (None, neighbors(k=0, gauge=LADDER), neighbors()):
        finding = gauge_sensitivity(data(TrainedWith.DOT, measured), 0.8)
        assert finding.status == Status.SKIP and finding.value is None
        assert finding.message == SKIP


@pytest.mark.parametrize(("objective", "status", "impact", "action"), GAUGE)
def test_canonical_gauge_weighs_by_the_declared_objective(objective, status, impact, action):
    measured = neighbors(canonical=[0.5, 0.7, 0.6], dead=(1, 4))
    finding = canonical_gauge(data(objective, measured), 0.8)
    assert (finding.status, finding.impact, finding.recommendation) == (status, impact, action)
    assert finding.value == pytest.approx(0.6)
    assert finding.message.startswith(
        "overlap@10 0.60 with the column-standardized data (dead dimensions left out: 2)"
    )
    assert finding.metrics["dead_dimensions"] == [1, 4]
    assert finding.metrics["dead_dimension_count"] == 2
    assert finding.metrics["k"] == 10 and finding.metrics["queries"] == 3


def test_canonical_gauge_passes_at_the_threshold_and_lists_dead_dimensions_capped():
    measured = neighbors(canonical=[0.8, 0.8], dead=tuple(range(60)), d=64)
    finding = canonical_gauge(data(TrainedWith.DOT, measured), 0.8)
    assert finding.status == Status.PASS
    assert finding.metrics["dead_dimensions"] == list(range(DIMENSION_LIST_CAP))
    assert finding.metrics["dead_dimension_count"] == 60
    clean = canonical_gauge(data(TrainedWith.DOT, neighbors(canonical=[0.9, 1.0])), 0.8)
    assert clean.message == "overlap@10 0.95 with the column-standardized data"
    assert clean.metrics["dead_dimensions"] == [] and clean.metrics["dead_dimension_count"] == 0
    empty = neighbors(canonical=[])
    assert canonical_gauge(data(TrainedWith.DOT, empty), 0.8).status == Status.SKIP


# EA501 --------------------------------------------------------------------------------------


def hub(robin_hood: float, skewness: float = 1.5, antihubs: float = 0.25) -> Hubness:
    return Hubness(skewness, robin_hood, antihubs, 7, np.array([0, 1, 1, 2, 7]))


def sample(measured: Hubness | None, reference: Hubness | None, k: int = 10):
    graph = SimpleNamespace(hubness=measured, hubness_k=k, robin_hood_error=0.01, graphs=1, m=500)
    return SimpleNamespace(graph=graph, m=500, reference=SimpleNamespace(hubness=reference))


def spread(value: float, error: float | None = 0.02) -> Occurrence:
    return Occurrence(
        spread=value,
        standard_error=error,
        effective_rows=value * 9000.0,
        uniform_rows=9000.0,
        occurrence_cv=1.5,
        population=10_000,
        queries=1000,
        rows=10_000,
        slots=10_000,
        top_share=0.2,
        top_share_uniform=0.01,
        never_returned=0.4,
        never_returned_uniform=0.37,
    )


def spread_data(objective: TrainedWith, found: Occurrence | None, geometry=None) -> AuditData:
    hygiene = SimpleNamespace(occurrence=found, query_occurrence=found)
    measured = SimpleNamespace(hygiene=hygiene, k=10)
    corpus = SimpleNamespace(n_clean=10_000)
    options = CheckOptions(trained_with=objective)
    return AuditData(params=options, stats=corpus, geometry=geometry, neighbors=measured)  # type: ignore[arg-type]


@pytest.mark.parametrize("objective", list(TrainedWith))
def test_hubness_warns_below_its_threshold_whatever_the_objective(objective):
    finding = hubness(spread_data(objective, spread(0.2), sample(hub(0.6), hub(0.1))), 0.25)
    assert finding.status == Status.WARN and finding.impact is None
    assert finding.value == 0.2
    # Centring moves every dot-product score: a model that scores so is told to use the dot.
    assert finding.recommendation == (USE_DOT if objective.scores_with_dot else REDUCE_HUBS)
    assert finding.message == (
        "In the corpus's k-NN graph (every row's list), the results spread over 0.20 ± 0.02 of "
        "what chance would reach (an effective 1,800 of 10,000 rows; k-occurrence CV 1.50); a "
        "500-row sample's graph: Robin Hood 0.60, antihubs 25.0%: hubs crowd the neighbour "
        "lists and many rows are in none"
    )
    graph = finding.metrics["sample_graph"]
    assert graph["robin_hood"] == 0.6 and graph["rows"] == 500
    assert graph["reference"]["robin_hood"] == 0.1
    assert finding.metrics["robin_hood_at_most"] == 0.75  # CV / 2
    assert finding.metrics["standard_error"] == 0.02


def test_hubness_at_or_above_its_threshold_passes():
    for value in (0.25, 0.9):
        finding = hubness(spread_data(TrainedWith.UNKNOWN, spread(value, None)), 0.25)
        assert finding.status == Status.PASS and finding.value == value
        assert finding.recommendation is None
        assert "sample_graph" not in finding.metrics
    assert finding.message == (
        "In the corpus's k-NN graph (every row's list), the results spread over 0.90 of what "
        "chance would reach (an effective 8,100 of 10,000 rows; k-occurrence CV 1.50)"
    )


def test_hubness_skips_without_the_queries_lists():
    for measured in (None, SimpleNamespace(hygiene=None, k=10)):
        options = CheckOptions()
        corpus = SimpleNamespace(n_clean=10)
        found = hubness(AuditData(params=options, stats=corpus, neighbors=measured), 0.25)  # type: ignore[arg-type]
        assert found.status == Status.SKIP and found.value is None
    finding = hubness(spread_data(TrainedWith.UNKNOWN, None), 0.25)
    assert finding.status == Status.SKIP


def test_query_hubness_warns_below_its_threshold_and_skips_without_a_query_file():
    finding = query_hubness(spread_data(TrainedWith.COSINE, spread(0.1)), 0.25)
    assert finding.status == Status.WARN and finding.value == 0.1
    assert "the top 1% of rows fill 20.0% of the slots (at random 1.0%)" in finding.message
    assert finding.metrics["never_returned"] == 0.4
    assert query_hubness(spread_data(TrainedWith.COSINE, spread(0.3)), 0.25).status == Status.PASS
    failed = query_hubness(spread_data(TrainedWith.COSINE, spread(0.04)), 0.25)
    assert failed.status == Status.FAIL and failed.impact is None  # the gate, not the verdict
    assert failed.message.endswith("the queries' results come from a handful of rows")
    assert query_hubness(spread_data(TrainedWith.COSINE, spread(0.05)), 0.25).status == Status.WARN
    skipped = query_hubness(spread_data(TrainedWith.COSINE, None), 0.25)
    assert skipped.status == Status.SKIP and "--query-file" in skipped.message


def test_canonical_gauge_error_joins_the_scales_own():
    """Three jitter draws move the value by 0, -0.1 and +0.1 (the value is 0.6): the scale's
    error is their root mean square, sqrt(0.02 / 3), and joins the queries' error in
    quadrature, widened for the 3 draws it rests on; without draws (a scale from every row)
    the error is the queries' alone."""
    measured = neighbors(canonical=[0.5, 0.7, 0.6])
    exact = canonical_gauge(data(TrainedWith.DOT, measured), 0.8).metrics
    assert exact["scale_error"] is None
    # The queries' error alone, widened for the 2 degrees of freedom of 3 queries.
    assert exact["standard_error"] == pytest.approx(exact["query_error"] * t_factor(2))
    jittered = replace(
        measured,
        canonical_jitter=[
            np.array([0.5, 0.7, 0.6]),
            np.array([0.4, 0.6, 0.5]),
            np.array([0.6, 0.8, 0.7]),
        ],
    )
    metrics = canonical_gauge(data(TrainedWith.DOT, jittered), 0.8).metrics
    scale = math.sqrt(0.02 / 3)
    assert metrics["scale_error"] == pytest.approx(scale)
    # The queries' error of an overlap (Agresti-Coull's form, more than the plain 0.1 / sqrt 3).
    queries = bounded_mean_standard_error(np.array([0.5, 0.7, 0.6]))
    assert metrics["query_error"] == pytest.approx(queries) and queries > 0.1 / math.sqrt(3)
    expected = combined_standard_error((queries, 2), (scale, 3))
    assert metrics["standard_error"] == pytest.approx(expected)
    assert metrics["standard_error"] > math.hypot(queries, scale)
