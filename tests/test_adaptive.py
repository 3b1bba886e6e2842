"""Gates that do not flap: a sampled check whose threshold lies inside its value's 95% interval,
where the side of the threshold decides its status, is measured again with the sample sizes it
rests on doubled (at most 8 times the requested sizes); still undecided, it says so."""

from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np
import pytest

from embaudit import LocalEngine, audit, draw
from embaudit.index import BuiltIndex
from embaudit.measurement import steps
from embaudit.measurement.gauges import canonical_queries
from embaudit.measurement.sampling import Sampling
from embaudit.measurement.steps import PARTS, measure
from embaudit.model import Status
from embaudit.pipelines import check as check_pipeline
from embaudit.pipelines.check import MAX_ROUNDS, _grown
from embaudit.sources import open_source
from tests.exports import encoder_like

#: The requested gauge sizes: a round doubles one of them.
GAUGE_QUERIES, GAUGE_DRAWS = Sampling().gauge_queries, Sampling().gauge_draws


def _clusters(sigma: float) -> np.ndarray:
    """300 clusters of 10 rows: EA301 at s = 0.5 is about 0.91 at sigma 0.6, 0.8 at 0.95."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(300), 10)
    return rng.standard_normal((300, 128))[labels] + sigma * rng.standard_normal((3000, 128))


def test_a_clear_case_is_measured_once():
    report = audit(_clusters(0.6), select="EA301", trained_with="dot")
    assert "adaptive" not in report.params
    assert (report.params["gauge_queries"], report.params["gauge_draws"]) == (
        GAUGE_QUERIES,
        GAUGE_DRAWS,
    )
    check = report.check("EA301")
    error = check.metrics["standard_error"]
    assert abs(check.value - check.threshold) > 1.96 * error  # why it was not measured again
    assert check.status == Status.PASS and "inconclusive" not in check.message


def test_a_case_at_the_threshold_is_measured_again_until_decided_or_the_cap():
    report = audit(_clusters(0.95), seed=2, select="EA301", trained_with="dot")
    adaptive = report.params["adaptive"]
    assert adaptive["grew"] == ["EA301"] and adaptive["rounds"] > 1
    grown = 2 ** (adaptive["rounds"] - 1)
    # Each round doubles the gauge queries or the gauge draws (the side the error comes from):
    # twice the gauges' work per round.
    check = report.check("EA301")
    sizes = check.metrics["sampling"]
    assert sizes["queries"] == min(500 * grown, 3000)  # at most every row
    more_queries = sizes["gauge_queries"] // GAUGE_QUERIES
    more_draws = sizes["gauge_draws"] // GAUGE_DRAWS
    assert more_queries * more_draws == grown
    assert (GAUGE_QUERIES * more_queries, GAUGE_DRAWS * more_draws) == (
        sizes["gauge_queries"],
        sizes["gauge_draws"],
    )
    assert check.metrics["queries"] == GAUGE_QUERIES * more_queries
    assert check.metrics["error_from"] in ("draws", "queries")
    # The report's sample sizes are the requested ones; the other checks keep that measurement.
    assert (report.params["gauge_queries"], report.params["gauge_draws"]) == (
        GAUGE_QUERIES,
        GAUGE_DRAWS,
    )
    interval = 1.96 * check.metrics["standard_error"]
    undecided = abs(check.value - check.threshold) <= interval
    # Inconclusive exactly when the threshold is still inside the interval at the cap.
    assert ("EA301" in adaptive["inconclusive"]) == undecided
    assert bool(check.metrics.get("inconclusive")) == undecided
    assert ("inconclusive at the cap" in check.message) == undecided
    if not undecided:
        assert adaptive["rounds"] <= MAX_ROUNDS + 1
    else:
        assert adaptive["rounds"] == MAX_ROUNDS + 1
    # The status follows the point estimate.
    assert check.status == (Status.PASS if check.value >= check.threshold else Status.FAIL)


@pytest.mark.parametrize("objective", ["cosine", "dot-regularized", "unknown", "l2"])
def test_the_declaration_changes_statuses_never_what_is_measured(objective):
    """A cosine-trained model's EA301 passes whatever its value (the objective fixes the gauge),
    yet the audit measures it again as for a dot-trained one: the rounds, the sample sizes and
    the value are the same for every declaration, only the status differs."""
    dot = audit(_clusters(0.95), seed=2, select="EA301", trained_with="dot")
    other = audit(_clusters(0.95), seed=2, select="EA301", trained_with=objective)
    assert other.params["adaptive"] == dot.params["adaptive"]
    assert dot.params["adaptive"]["rounds"] > 1
    mine, theirs = other.check("EA301"), dot.check("EA301")
    assert mine.value == theirs.value
    assert mine.metrics["sampling"] == theirs.metrics["sampling"]
    assert mine.metrics["standard_error"] == theirs.metrics["standard_error"]
    if objective in ("cosine", "dot-regularized"):
        assert mine.status == Status.PASS


def test_sizes_double_up_to_the_cap_and_the_rows():
    first = Sampling()
    q, d = GAUGE_QUERIES, GAUGE_DRAWS
    grown = _grown(first, ["EA301"], first, n=10_000)
    assert grown is not None
    # A round doubles the gauge queries or the gauge draws, in turn: twice the gauges' work.
    assert (grown.queries, grown.gauge_queries, grown.gauge_draws) == (1000, 2 * q, d)
    again = _grown(grown, ["EA301"], first, n=10_000, round_number=2)
    assert again is not None and (again.gauge_queries, again.gauge_draws) == (2 * q, 2 * d)
    assert grown.sample == first.sample  # EA301 does not rest on the geometry sample
    # EA302, pending with EA301 on a round of draws, still grows its gauge queries.
    both = _grown(first, ["EA301", "EA302"], first, n=10_000, round_number=2)
    assert both is not None and (both.gauge_queries, both.gauge_draws) == (2 * q, 2 * d)
    # A size at its cap leaves the turn to the other one.
    draws_capped = Sampling(gauge_draws=8 * d)
    turned = _grown(draws_capped, ["EA301"], first, n=10_000, round_number=2)
    assert turned is not None and (turned.gauge_queries, turned.gauge_draws) == (2 * q, 8 * d)
    # Where the checks' errors come from, when they say, decides the side instead of the turn.
    for prefer, sizes in (("gauge_draws", (q, 2 * d)), ("gauge_queries", (2 * q, d))):
        for round_number in (1, 2):
            chosen = _grown(
                first, ["EA301"], first, n=10_000, round_number=round_number, prefer=prefer
            )
            assert chosen is not None and (chosen.gauge_queries, chosen.gauge_draws) == sizes
    capped_side = _grown(draws_capped, ["EA301"], first, n=10_000, prefer="gauge_draws")
    assert capped_side is not None and (capped_side.gauge_queries, capped_side.gauge_draws) == (
        2 * q,
        8 * d,
    )
    capped = Sampling(queries=4000, gauge_queries=8 * q, gauge_draws=8 * d)
    assert _grown(capped, ["EA301"], first, n=10_000) is None  # 8 times each: the cap
    assert _grown(Sampling(queries=700), ["EA401"], Sampling(queries=700), n=900).queries == 900
    assert _grown(Sampling(queries=900), ["EA401"], Sampling(queries=900), n=900) is None
    assert _grown(first, ["EA101"], first, n=10_000) is None  # not a sampled check
    # Queries from a 300-row query file: at most its rows, whatever the corpus's.
    few = Sampling(queries=200)
    assert _grown(few, ["EA701"], few, n=10_000, query_rows=300).queries == 300
    assert _grown(Sampling(queries=300), ["EA701"], few, n=10_000, query_rows=300) is None
    assert _grown(few, ["EA203"], few, n=10_000, query_rows=300).sample == 2 * few.sample
    # EA302 searches its canonical gauge for twice the gauge queries: from a query file of 3q
    # rows, 1.5q gauge queries already search every row there, so nothing more grows (a round
    # would search the same rows again); EA301's random gauges search the gauge queries alone.
    canonical = _grown(first, ["EA302"], first, n=10_000, query_rows=3 * q)
    assert canonical is not None and canonical.gauge_queries == -(-3 * q // 2)
    assert _grown(canonical, ["EA302"], first, n=10_000, query_rows=3 * q) is None
    gauged = _grown(first, ["EA301"], first, n=10_000, query_rows=3 * q, prefer="gauge_queries")
    assert gauged is not None and gauged.gauge_queries == 2 * q
    # EA005 counts the corpus's near-duplicates on corpus rows, also next to a query file.
    assert _grown(few, ["EA005"], few, n=10_000, query_rows=300).queries == 400
    assert _grown(Sampling(queries=300), ["EA005"], few, n=10_000, query_rows=300) is not None


def test_queries_that_are_every_row_carry_no_error_and_are_not_measured_again():
    """480 clean rows and 500 queries: every row is a query, so the overlaps and the index's
    recall are exact (no error, no round, whatever the threshold); with more rows they carry one."""
    x = encoder_like(480, 32, seed=4, normalize=False)
    report = audit(x, select="EA4,EA7", index="HNSW4", thresholds={"EA701": 0.98})
    assert "adaptive" not in report.params
    for code in ("EA401", "EA402", "EA701", "EA702"):
        assert report.check(code).metrics["standard_error"] is None, code
        assert "inconclusive" not in report.check(code).message
    larger = audit(encoder_like(2000, 32, seed=4, normalize=False), select="EA401", index="HNSW4")
    assert larger.check("EA401").metrics["standard_error"] > 0


@pytest.mark.parametrize("seed", [0, 2, 8])
def test_a_seed_that_flipped_the_gate_no_longer_does(seed, monkeypatch):
    """Measured once, these seeds fail EA301 (their values fall below 0.8); measured until
    decided, they pass (benchmarks/flapping.py: 20 of 20 seeds pass, against 14 measured
    once)."""
    x = _clusters(0.95)
    again = audit(x, seed=seed, select="EA301", trained_with="dot").check("EA301")
    monkeypatch.setattr("embaudit.pipelines.check.MAX_ROUNDS", 0)
    once = audit(x, seed=seed, select="EA301", trained_with="dot").check("EA301")
    assert once.status == Status.FAIL and once.value < 0.8
    assert again.status == Status.PASS and again.value >= 0.8


def _at_threshold(x: np.ndarray, code: str, sampling: Sampling, **options) -> float:
    """A threshold inside ``code``'s 95% interval where its side decides the status."""
    first = audit(x, select=code, sampling=sampling, **options).check(code)
    return first.value + first.metrics["standard_error"]


@pytest.mark.parametrize(
    ("code", "parts", "options"),
    [
        ("EA301", ["gauges"], {}),
        ("EA302", ["canonical"], {}),
        ("EA401", ["lists"], {}),
        ("EA203", ["sample"], {}),
        ("EA502", ["graphs"], {}),
        ("EA501", ["lists"], {}),
        # The index is built once; the larger query sample searches it again.
        ("EA701", ["lists"], {"index": "HNSW32"}),
        ("EA702", ["lists"], {"index": "IVF16,Flat", "index_metric": "ip"}),
        # Undecided alone, a list check's rounds do not search the index again.
        ("EA401", ["lists"], {"index": "HNSW32"}),
    ],
)
def test_a_round_measures_what_its_check_reads_and_gives_the_value_of_measuring_all(
    code, parts, options, monkeypatch
):
    """Measured again for one undecided check, a round measures only the parts that check reads
    (no base lists for the gauges, no statistics again, no pass for the graphs); its
    value and error are those of a whole measurement at the grown sizes."""
    # 16 dimensions give EA502's graphs islands to count (at 32, none).
    x = encoder_like(6000, 16 if code == "EA502" else 32, seed=4, normalize=False)
    sampling = Sampling(queries=200, gauge_queries=20, gauge_draws=2, sample=600)
    threshold = _at_threshold(x, code, sampling, **options)
    built, searched = [], []
    build, search = check_pipeline.build_index, BuiltIndex.search

    def counted_build(*args, **kwargs):
        built.append(args[1].spec)
        return build(*args, **kwargs)

    def counted_search(self, *args, **kwargs):
        searched.append(len(args[0].query_rows))
        return search(self, *args, **kwargs)

    monkeypatch.setattr(check_pipeline, "build_index", counted_build)
    monkeypatch.setattr(BuiltIndex, "search", counted_search)
    calls: list[list[str]] = []
    passes: list[bool] = []  # whether each pass computed the statistics
    given: list[bool] = []  # whether it took every row's norm from the first pass
    measure, run = check_pipeline.measure, LocalEngine.run

    def recorded(*args, **kwargs):
        calls.append(sorted(kwargs["parts"]))
        return measure(*args, **kwargs)

    searches: list[list[tuple[int, int]]] = []  # per pass, (queries, gauge blocks) per search

    def counted(self, source, plan, **kwargs):
        passes.append(plan.statistics)
        given.append(plan.norms is not None)
        searches.append(
            [(len(s.search.query_rows), len(s.search.blocks) - 1) for s in plan.searches]
        )
        return run(self, source, plan, **kwargs)

    monkeypatch.setattr(check_pipeline, "measure", recorded)
    monkeypatch.setattr(LocalEngine, "run", counted)
    report = audit(x, select=code, sampling=sampling, thresholds={code: threshold}, **options)
    rounds = report.params["adaptive"]["rounds"]
    assert built == ([options["index"]] if options else [])  # built once, whatever the rounds
    again = rounds - 1 if code.startswith("EA7") else 0
    assert len(searched) == (1 + again if options else 0)
    assert searched == sorted(searched) and len(set(searched)) == len(searched)  # more queries
    assert rounds > 1 and calls == [sorted(PARTS)] + [parts] * (rounds - 1)
    # Later passes feed only the search or the sample: the statistics are the first pass's.
    assert passes == [True] + [False] * (0 if code == "EA502" else rounds - 1)
    assert given == [not statistics for statistics in passes]  # the norms, not computed again
    # A round searches what the measurement before it lacks: the new queries alone, or the
    # new (gauge query, gauge) pairs of the judged level alone, as many as there were.
    if parts == ["lists"]:
        assert [round_[0][0] for round_ in searches[1:]] == [
            sampling.queries * 2**r for r in range(rounds - 1)
        ]
    if code == "EA301":
        pairs = sampling.gauge_queries * sampling.gauge_draws
        assert [q * blocks for ((q, blocks),) in searches[1:]] == [
            pairs * 2**r for r in range(rounds - 1)
        ]
    check = report.check(code)
    monkeypatch.setattr(check_pipeline, "MAX_ROUNDS", 0)
    grown = replace(sampling, **check.metrics["sampling"])
    if code == "EA302":  # a round's canonical gauge is every row's: a sample of every row
        assert check.metrics["scale_error"] is None
        grown = replace(grown, sample=len(x))
    direct = audit(x, select=code, sampling=grown, **options).check(code)
    assert direct.value == pytest.approx(check.value, rel=1e-12, abs=1e-15)
    error = check.metrics["standard_error"]
    assert direct.metrics["standard_error"] == pytest.approx(error, rel=1e-12)
    for size in ("queries", "sample", "graphs"):  # what each says it was measured on
        assert check.metrics.get(size) == direct.metrics.get(size)
    # EA301's levels: each draw's overlap and the pairs' cosine change under the same gauges at
    # the level it judges (s = 0.5); the other levels, which only s50 reads, are not searched
    # again: they keep the first measurement's.
    if code == "EA301":
        first = audit(x, select=code, sampling=sampling, **options).check(code)
        judged = {row["s"]: row for row in direct.metrics["levels"]}[0.5]
        kept = {row["s"]: row for row in first.metrics["levels"]}
        assert check.metrics["levels"] == [
            judged if row["s"] == 0.5 else kept[row["s"]] for row in check.metrics["levels"]
        ]
        assert [row["s"] for row in check.metrics["levels"]] == [0.1, 0.25, 0.5, 1.0]
    else:
        assert check.metrics.get("levels") == direct.metrics.get("levels")
    # The index's: its recall along the knob for the grown query sample (times aside).
    for key in ("recall_at_k", "recall", "exact_agreement"):
        assert check.metrics.get(key) == direct.metrics.get(key)

    def untimed(sweep):
        return [{k: v for k, v in point.items() if k != "ms_per_query"} for point in sweep or []]

    assert untimed(check.metrics.get("sweep")) == untimed(direct.metrics.get("sweep"))


def test_graphs_keep_their_size_when_the_sample_grows_in_the_same_rounds(monkeypatch):
    """EA203 and EA502 undecided together: the rounds grow the sample for EA203, while EA502's
    value stays that of graphs of the first sample's size (its estimand), as a measurement of
    that many graphs of that size gives."""
    x = encoder_like(6000, 16, seed=4, normalize=False)
    sampling = Sampling(queries=200, gauge_queries=20, gauge_draws=2, sample=600)
    thresholds = {code: _at_threshold(x, code, sampling) for code in ("EA203", "EA502")}
    report = audit(x, select="EA203,EA502", sampling=sampling, thresholds=thresholds)
    assert report.params["adaptive"]["grew"] == ["EA203", "EA502"]
    ea203, ea502 = report.check("EA203"), report.check("EA502")
    assert ea203.metrics["sample"] > 600  # the sample grew
    assert ea502.metrics["sample"] == 600 and ea502.metrics["graphs"] > 1
    monkeypatch.setattr(check_pipeline, "MAX_ROUNDS", 0)
    direct = audit(
        x, select="EA502", sampling=replace(sampling, graphs=ea502.metrics["graphs"])
    ).check("EA502")
    assert direct.value == pytest.approx(ea502.value, rel=1e-12)
    assert direct.metrics["standard_error"] == pytest.approx(ea502.metrics["standard_error"])
    assert direct.metrics["reference"] == ea502.metrics["reference"]  # isotropic, same size


def test_a_second_estimate_that_decides_the_status_is_measured_again_too(monkeypatch):
    """EA204's share is exact, but its r^2 decides failure or warning: with the r^2 floor inside
    r^2's 95% interval the rounds grow the sample and its pairs (and nothing else), and the
    result is that of a whole measurement at the grown sizes; far from the floor, one round."""
    x = encoder_like(6000, 32, seed=4, normalize=False)
    sampling = Sampling(sample=600, pairs=5000)
    options = {"select": "EA204", "sampling": sampling, "thresholds": {"EA204": 0.01}}
    first = audit(x, **options).check("EA204")
    assert "adaptive" not in audit(x, **options).params  # r^2 0.97 ± 0.005: far from 0.5
    assert first.status == Status.WARN and "undecided_by" not in first.metrics
    r2, error = first.metrics["r2_without"], first.metrics["r2_standard_error"]
    assert 0 < error < 0.05
    monkeypatch.setattr(
        importlib.import_module("embaudit.checks.shape"), "ROGUE_R2_FLOOR", r2 + error
    )
    calls: list[list[str]] = []
    taken: list[int] = []  # rows read by position, per measurement
    measure, take = check_pipeline.measure, LocalEngine.take

    def recorded(*args, **kwargs):
        calls.append(sorted(kwargs["parts"]))
        taken.append(0)
        return measure(*args, **kwargs)

    def counted(self, source, rows):
        taken[-1] += len(rows)
        return take(self, source, rows)

    monkeypatch.setattr(check_pipeline, "measure", recorded)
    monkeypatch.setattr(LocalEngine, "take", counted)
    report = audit(x, **options)
    adaptive = report.params["adaptive"]
    assert adaptive["grew"] == ["EA204"] and adaptive["rounds"] > 1
    assert calls == [sorted(PARTS)] + [["sample"]] * (adaptive["rounds"] - 1)
    # The sample is collected in the pass: a round for it alone reads no query or scale rows.
    assert taken[0] > 0 and taken[1:] == [0] * (adaptive["rounds"] - 1)
    check = report.check("EA204")
    grown = 2 ** (adaptive["rounds"] - 1)
    assert check.metrics["sampling"] == {"sample": 600 * grown, "pairs": 5000 * grown}
    assert check.metrics["r2_standard_error"] < error  # more rows and pairs: a smaller error
    inside = "undecided_by" in check.metrics
    assert ("EA204" in adaptive["inconclusive"]) == inside
    assert ("inconclusive at the cap" in check.message) == inside
    assert check.status == (
        Status.FAIL if check.metrics["r2_without"] < r2 + error else Status.WARN
    )
    monkeypatch.setattr(check_pipeline, "MAX_ROUNDS", 0)
    direct = audit(x, **(options | {"sampling": replace(sampling, **check.metrics["sampling"])}))
    expected = direct.check("EA204")
    for key in ("r2_without", "r2_standard_error", "share", "sample", "pairs"):
        assert check.metrics[key] == pytest.approx(expected.metrics[key], rel=1e-12)


def test_the_judged_level_does_not_depend_on_the_order_of_the_levels():
    """0.25 and 1 are as near 0.5 on a log scale: the lower is judged, in whatever order the
    levels are given, by the check and by the rounds alike."""
    from embaudit.measurement.gauges import headline_level

    assert headline_level((1.0, 0.25)) == headline_level((0.25, 1.0)) == 0.25
    assert headline_level((1.0, 0.1, 0.5, 0.25)) == 0.5
    assert headline_level((2.0,)) == 2.0


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((20, 2), (20, 4)),  # more draws
        ((20, 2), (40, 2)),  # more gauge queries
        ((20, 2), (40, 4)),  # both: an L of new (query, draw) pairs
        ((40, 2), (20, 4)),  # fewer queries, more draws: the kept draws' first queries
        ((20, 4), (40, 2)),  # more queries, fewer draws: the first draws for the new queries
    ],
)
def test_a_round_of_the_gauges_equals_measuring_them_whole(before, after):
    """A round that extends the previous gauge overlaps (gauge queries x draws) gives, draw by
    draw and query by query, the overlaps of measuring the grown sizes from the start."""
    source = open_source(encoder_like(3000, 24, seed=2, normalize=False))
    sampling = Sampling(queries=60, gauge_queries=before[0], gauge_draws=before[1], sample=400)
    grown = replace(sampling, gauge_queries=after[0], gauge_draws=after[1])
    first = measure(source, k=10, seed=1, sampling=sampling)
    again = measure(
        source, k=10, seed=1, sampling=grown, parts=["gauges"], previous=first, levels=(0.5,)
    )
    whole = measure(source, k=10, seed=1, sampling=grown)
    assert again.neighbors is not None and whole.neighbors is not None
    assert again.neighbors.gauge_search is not None
    searched = again.neighbors.gauge_search
    pairs = sum(block.n_queries for block in searched.blocks[1:])
    assert pairs == after[0] * after[1] - min(before[0], after[0]) * min(before[1], after[1])
    assert len(again.neighbors.gauge[0.5]) == after[1]
    for mine, reference in zip(again.neighbors.gauge[0.5], whole.neighbors.gauge[0.5], strict=True):
        np.testing.assert_array_equal(mine, reference)
    assert again.neighbors.gauge_queries == whole.neighbors.gauge_queries == after[0]
    np.testing.assert_array_equal(
        again.neighbors.query_rows[: after[0]], whole.neighbors.query_rows[: after[0]]
    )


def test_a_round_whose_queries_are_drawn_again_measures_the_gauges_whole(monkeypatch):
    """A draw of more than half the rows is a permutation's prefix, not the stream's, so a
    round that grows the queries past half the rows draws other queries: it keeps none of the
    previous gauge overlaps (they belong to other rows) and equals a whole measurement."""
    monkeypatch.setattr(draw, "PERMUTED_ROWS", 1000)  # the regimes of a large file, at 3,000
    source = open_source(encoder_like(3000, 8, seed=2, normalize=False))
    sampling = Sampling(queries=700, gauge_queries=20, gauge_draws=2, sample=400)
    grown = replace(sampling, queries=1600, gauge_queries=40)
    first = measure(source, k=10, seed=1, sampling=sampling)
    again = measure(
        source, k=10, seed=1, sampling=grown, parts=["gauges"], previous=first, levels=(0.5,)
    )
    whole = measure(source, k=10, seed=1, sampling=grown)
    assert first.neighbors is not None and again.neighbors is not None
    assert whole.neighbors is not None
    # The test's premise: the first gauge queries are other rows after the round's draw.
    assert not np.array_equal(first.neighbors.query_rows[:20], whole.neighbors.query_rows[:20])
    for mine, reference in zip(again.neighbors.gauge[0.5], whole.neighbors.gauge[0.5], strict=True):
        np.testing.assert_array_equal(mine, reference)
    np.testing.assert_array_equal(again.neighbors.query_rows[:40], whole.neighbors.query_rows[:40])


def test_the_gauge_checks_undecided_together_each_search_their_own_sizes(monkeypatch):
    """EA301 and EA302 undecided in the same round: the canonical gauge is searched apart at
    EA302's gauge queries, the random gauges at EA301's own sizes (not at EA302's queries), and
    each value is that of a whole measurement at its own grown sizes."""
    x = encoder_like(6000, 32, seed=4, normalize=False)
    sampling = Sampling(queries=200, gauge_queries=20, gauge_draws=2, sample=600)
    thresholds = {code: _at_threshold(x, code, sampling) for code in ("EA301", "EA302")}
    searched: list[list[tuple[list[str], int]]] = []
    run = LocalEngine.run

    def recorded(self, source, plan, **kwargs):
        searched.append(
            [([b.name for b in s.search.blocks], len(s.search.query_rows)) for s in plan.searches]
        )
        return run(self, source, plan, **kwargs)

    monkeypatch.setattr(LocalEngine, "run", recorded)
    report = audit(x, select="EA301,EA302", sampling=sampling, thresholds=thresholds)
    assert {"EA301", "EA302"} <= set(report.params["adaptive"]["grew"])
    first_round = searched[1]
    canonical = [queries for names, queries in first_round if "canonical" in names]
    gauged = [names for names, _ in first_round if any(n.startswith("gauge s=") for n in names)]
    # EA302's gauge queries, doubled; the canonical gauge searches twice them (canonical_queries).
    assert canonical == [canonical_queries(2 * sampling.gauge_queries)]
    assert len(gauged) == 1 and "canonical" not in gauged[0]  # apart
    # The random gauges' queries are EA301's own, never more (EA302's grew to 40).
    own = report.check("EA301").metrics["sampling"]["gauge_queries"]
    gauge_queries = [q for names, q in first_round if any(n.startswith("gauge s=") for n in names)]
    assert gauge_queries[0] <= own < canonical[0]
    monkeypatch.setattr(check_pipeline, "MAX_ROUNDS", 0)
    for code in ("EA301", "EA302"):
        check = report.check(code)
        grown = replace(sampling, **check.metrics["sampling"])
        if code == "EA302":
            grown = replace(grown, sample=len(x))  # its scale is every row's in a round
        direct = audit(x, select=code, sampling=grown).check(code)
        assert direct.value == pytest.approx(check.value, rel=1e-12, abs=1e-15), code


@pytest.mark.parametrize("n", [3000, 2304])
def test_a_round_that_adds_one_query_gives_the_lists_of_measuring_all(n):
    """One new query alone is multiplied as a matrix product too (BLAS's matrix-vector path
    and its small-matrix kernels round otherwise): its features, and so the lists, equal those
    of a whole measurement. At 2,304 rows the chunk ends in a slab of one tile."""
    source = open_source(encoder_like(n, 32, seed=2, normalize=False))
    sampling = Sampling(queries=60, gauge_queries=10, gauge_draws=1, sample=300)
    first = measure(source, k=10, seed=1, sampling=sampling)
    one_more = replace(sampling, queries=61)
    again = measure(source, k=10, seed=1, sampling=one_more, parts=["lists"], previous=first)
    whole = measure(source, k=10, seed=1, sampling=one_more)
    assert again.neighbors is not None and whole.neighbors is not None
    assert again.neighbors.search is not None and whole.neighbors.search is not None
    for mine, reference in zip(
        again.neighbors.search.lists, whole.neighbors.search.lists, strict=True
    ):
        np.testing.assert_array_equal(mine.rows, reference.rows)
        np.testing.assert_array_equal(mine.features, reference.features)


@pytest.mark.parametrize(("chunk_rows", "workers"), [(2050, 1), (4097, 2), (257, 2), (3, 2)])
def test_the_features_do_not_depend_on_how_the_rows_are_cut(chunk_rows, workers):
    """Every product of a search takes BLAS's general matrix path, in whole tiles, however many
    rows a chunk ends with: the neighbours' features (their float32 products, a gauge's row
    factors) are bit for bit those of the default chunks, not only the lists."""
    source = open_source(encoder_like(6000, 32, seed=2, normalize=False))
    sampling = Sampling(queries=200, gauge_queries=20, gauge_draws=2, sample=400)
    reference = measure(source, k=10, seed=1, sampling=sampling)
    cut = measure(
        source,
        k=10,
        seed=1,
        sampling=sampling,
        chunk_rows=chunk_rows,
        engine=LocalEngine(workers=workers),
    )
    assert reference.neighbors is not None and cut.neighbors is not None
    searches = [(reference.neighbors.search, cut.neighbors.search)]
    searches.append((reference.neighbors.gauge_search, cut.neighbors.gauge_search))
    for mine, theirs in searches:
        assert mine is not None and theirs is not None
        for a, b in zip(mine.lists, theirs.lists, strict=True):
            np.testing.assert_array_equal(a.rows, b.rows)
            np.testing.assert_array_equal(a.features, b.features)


def test_the_gauges_cosine_change_keeps_its_sample_when_another_check_grows_it():
    """EA301 and EA203 undecided together: the round draws EA203's larger sample, but EA301's
    cosine changes stay measured on the first sample, as when EA301 alone is measured again
    and as in a whole measurement at EA301's own sizes."""
    source = open_source(encoder_like(3000, 24, seed=2, normalize=False))
    sampling = Sampling(queries=60, gauge_queries=20, gauge_draws=2, sample=400)
    own301 = replace(sampling, queries=120, gauge_draws=4)
    own203 = replace(sampling, sample=800)
    largest = replace(own301, sample=800)
    first = measure(source, k=10, seed=1, sampling=sampling)
    rounds = {
        "both": measure(
            source,
            k=10,
            seed=1,
            sampling=largest,
            parts=["gauges", "sample"],
            previous=first,
            levels=(0.5,),
            part_sizes={"gauges": own301, "sample": own203},
        ),
        "alone": measure(
            source,
            k=10,
            seed=1,
            sampling=own301,
            parts=["gauges"],
            previous=first,
            levels=(0.5,),
            part_sizes={"gauges": own301},
        ),
        "whole": measure(source, k=10, seed=1, sampling=own301),
    }
    changes = {name: m.geometry.cosine_change[0.5] for name, m in rounds.items() if m.geometry}
    assert len(changes) == 3
    assert changes["both"] == changes["alone"] == changes["whole"]
    assert rounds["both"].geometry is not None and first.geometry is not None
    assert rounds["both"].geometry.m > first.geometry.m  # the round's sample grew


@pytest.mark.parametrize("gauge_rows", [None, 1500])
def test_the_gauge_searches_take_their_queries_own_lists_from_the_base_search(
    gauge_rows, monkeypatch
):
    """Over every row, the gauge search of the first pass, the canonical gauge's of a round and
    the grown gauge searches of EA301 rounds (their new queries first), one after the other,
    stack the gauges' rows alone: their queries' own cosine lists are the base search's (this
    pass's, then the first pass's, carried through the rounds that search no base list, in the
    search's order of them); over a sample of rows (gauge-rows) they search them themselves.
    The overlaps are those of searches that stack their own base block, bit for bit."""
    source = open_source(encoder_like(4000, 24, seed=3, normalize=False))
    sampling = Sampling(
        queries=80, gauge_queries=6, gauge_draws=2, sample=500, gauge_rows=gauge_rows
    )
    grown = replace(sampling, gauge_queries=12)
    listed: list[list[bool]] = []  # per pass, per gauge search: its base block's listed
    run = LocalEngine.run

    def recorded(self, source, plan, **kwargs):
        gauged = [s.search for s in plan.searches if len(s.search.blocks) > 1]
        listed.append([search.blocks[0].listed for search in gauged])
        for search in gauged:  # the gauges' rows alone, when unlisted
            rows = sum(b.n_queries for b in search.blocks if b.listed)
            assert len(search.stacked) == rows
        return run(self, source, plan, **kwargs)

    monkeypatch.setattr(LocalEngine, "run", recorded)

    def measured() -> tuple:
        first = measure(source, k=8, seed=2, sampling=sampling)
        again = measure(source, k=8, seed=2, sampling=grown, parts=["canonical"], previous=first)
        gauges = measure(
            source, k=8, seed=2, sampling=grown, parts=["gauges"], previous=first, levels=[0.5]
        )
        more = replace(grown, gauge_draws=4)
        third = measure(
            source, k=8, seed=2, sampling=more, parts=["gauges"], previous=gauges, levels=[0.5]
        )
        return first.neighbors, again.neighbors, gauges.neighbors, third.neighbors

    unlisted = measured()
    assert listed == [[gauge_rows is not None]] * 4
    gauge_search, grown_search = steps._gauge_search, steps.grown_gauge_search
    monkeypatch.setattr(
        steps, "_gauge_search", lambda drawn, k, blocks, _: gauge_search(drawn, k, blocks, True)
    )
    monkeypatch.setattr(steps, "grown_gauge_search", lambda *args: grown_search(*args[:5], True))
    listed.clear()
    stacked = measured()
    assert listed == [[True]] * 4
    assert unlisted[2].gauge_search.query_rows[0] == unlisted[0].query_rows[6]  # new first
    assert len(unlisted[2].gauge[0.5]) == 2 and len(unlisted[2].gauge[0.5][0]) == 12
    assert [len(overlap) for overlap in unlisted[3].gauge[0.5]] == [12] * 4
    for mine, theirs in zip(unlisted, stacked, strict=True):
        assert mine.gauge.keys() == theirs.gauge.keys()
        for s in mine.gauge:
            for a, b in zip(mine.gauge[s], theirs.gauge[s], strict=True):
                np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(mine.canonical, theirs.canonical)
        for a, b in zip(mine.canonical_jitter, theirs.canonical_jitter, strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(unlisted[1].canonical) == 2 * grown.gauge_queries  # the round's, every row's
