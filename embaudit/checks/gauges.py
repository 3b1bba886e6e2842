"""EA3xx, gauges: how the cosine neighbours move under random diagonal rescalings (EA301), under
the canonical gauge (EA302), and under a truncation of the dimensions (EA303)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.checks.base import AuditData, register
from embaudit.checks.common import (
    DECLARE,
    DIMENSION_LIST_CAP,
    SKIP,
    USE_DOT,
    overlap_summary,
    query_population,
)
from embaudit.estimates import (
    combined_standard_error,
    crossed_error_from,
    crossed_standard_error,
)
from embaudit.measurement.gauges import canonical_queries, headline_level
from embaudit.model import Action, Advice, Finding, Level, Status, TrainedWith


def _gauge_verdict(
    data: AuditData, value: float, limit: float, message: str, metrics: dict[str, Any]
) -> Finding:
    """Shared by EA301 and EA302: what a gauge-sensitive neighbourhood means per objective."""
    trained_with = data.params.trained_with
    if trained_with.fixes_gauge:
        fixed_by = (
            "whose per-factor penalty fixes the split up to a rotation"
            if trained_with == TrainedWith.DOT_REGULARIZED
            else "whose objective fixes the scale of every dimension"
        )
        return Finding(
            Status.PASS,
            value,
            f"{message}; irrelevant for a {trained_with}-trained model, {fixed_by}",
            metrics,
        )
    if value >= limit:
        return Finding(Status.PASS, value, message, metrics)
    if trained_with == TrainedWith.DOT:
        return Finding(
            Status.FAIL,
            value,
            f"{message}: cosine neighbours of a dot-product model depend on an arbitrary "
            "per-dimension scale",
            metrics,
            impact=Level.UNTRUSTWORTHY,
            recommendation=USE_DOT,
        )
    return Finding(
        Status.WARN,
        value,
        f"{message}: if the model was trained with a dot product, cosine neighbours are partly "
        "arbitrary",
        metrics,
        impact=Level.CAUTION,
        recommendation=DECLARE,
    )


def s50(levels: list[float], overlaps: list[float]) -> tuple[float | None, str | None]:
    """The rescaling s at which overlap@k falls to 0.5, interpolated linearly in log s.

    Returns (value, None), or (None, "<") when it is below the smallest level tried, (None, ">")
    when above the largest.
    """
    if overlaps[0] < 0.5:
        return None, "<"
    for (s0, o0), (s1, o1) in itertools.pairwise(zip(levels, overlaps, strict=True)):
        if o1 < 0.5 <= o0:
            t = (o0 - 0.5) / (o0 - o1)
            return float(math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))), None
    return None, ">"


@register(
    "EA301",
    measures=(
        "overlap@k of cosine kNN of X and X·D, D = exp(N(0, s²)), s ∈ {0.1, 0.25, 0.5, 1}, "
        "against every row; `s50`"
    ),
    rule="below 0.8 at s = 0.5: fail (`dot`), warn (`unknown`)",
    summary="How far cosine neighbours move under random per-dimension rescaling.",
    what=(
        "For random diagonal gauges D = exp(N(0, s^2)) at s = 0.1, 0.25, 0.5 and 1.0 "
        "(gauge-draws each: 6 by default, of 10 gauge queries: few, since a value whose 95% "
        "interval holds its threshold is measured again with more, and more draws than "
        "queries, since the value's error comes mostly from the draws: on four exports of "
        "100,000 rows six draws of 25 queries gave half the error of three of 50 at the same "
        "cost, and an error estimated from three draws too often came out small) computes the "
        "overlap@k between the exact cosine kNN of X and of X·D for a sample of queries "
        "(gauge-queries at s = 0.5; the first half of them at the other levels, which give "
        "s50 only) against every row of the file (an overlap depends on how many rows are "
        "searched, which decide how near the neighbours are: the value is the corpus's own; "
        "gauge-rows, an opt-in speed knob, searches a random sample of that many rows "
        "instead, the same in every round, and the check then says that its value is that of "
        "a corpus of that size; metrics.rows counts the rows searched), the mean absolute "
        "change of cosine on random pairs, and s50, the rescaling at which half of the "
        "neighbours change. The headline value is the overlap at s = 0.5. Each level's "
        "standard_error covers the queries and the gauge draws: the two-way random-effects "
        "variance of the mean over (draws × queries), from the mean squares (MS_draw + "
        "MS_query − MS_residual) / (D·Q); each query's overlap carries the draw of the gauge "
        "rows around it, so the error over queries covers that draw too "
        "(benchmarks/gauge_rows.py --draws). When the threshold lies inside the value's 95% "
        "interval, the audit measures s = 0.5 again with twice the gauge draws or twice the "
        "gauge queries, whichever leaves the smaller expected error (metrics.error_from: the "
        "side the error mostly comes from, from the variance components of the draws × "
        "queries table); the other levels, which only s50 reads, keep the first measurement's "
        "(each row of metrics.levels gives its queries and draws)."
    ),
    why=(
        "A model trained with a dot product (matrix factorisation, two-tower retrieval) is "
        "invariant to A·D, B·D^-1: the loss cannot see the scale of each dimension, but cosine "
        "can. If modest rescalings move the cosine neighbours, those neighbours are partly an "
        "accident of the optimiser, and normalizing afterwards does not fix it."
    ),
    fix=(
        "Rank with the dot product the model was trained with. If you need cosine, retrain on "
        "the sphere: L2-normalized outputs with a cosine objective, such as the cosine embedding "
        "loss (1 - cos for positive pairs, max(0, cos - m) for negatives), a cosine-margin "
        "triplet loss -log(e^{s(cos_ap - m)} / (e^{s(cos_ap - m)} + e^{s cos_an})), or InfoNCE. "
        "Normalizing a dot-product model's output after training does not remove the gauge."
    ),
    reference="Steck, Ekanadham & Kallus (2024), 'Is Cosine-Similarity of Embeddings Really "
    "About Similarity?', Companion Proceedings of the ACM Web Conference, arXiv:2403.05440",
    threshold=0.8,
    threshold_rationale=(
        "0.8 at s = 0.5: scales varying by a factor e^±0.5 ≈ 1.65 should not change more than "
        "one neighbour in five if cosine reflects the model rather than its gauge."
    ),
    samples=("queries", "gauge_queries", "gauge_draws"),
    reads=("gauges",),
)
def gauge_sensitivity(data: AuditData, threshold: float) -> Finding:
    neighbors, sample = data.neighbors, data.geometry
    if neighbors is None or neighbors.k == 0 or not neighbors.gauge:
        return Finding(Status.SKIP, None, SKIP)
    levels = sorted(neighbors.gauge)
    level_overlaps, rows = [], []
    own = data.params.sampling.gauge_queries  # the gauge queries this check's value rests on
    by_level = {s: np.asarray([draw[:own] for draw in neighbors.gauge[s]]) for s in levels}
    for s in levels:
        draws = by_level[s]
        overlap = float(np.mean(draws))  # every draw has the same queries
        level_overlaps.append(overlap)
        rows.append(
            {
                "s": s,
                "overlap_at_k": overlap,
                "draws": [float(d.mean()) for d in draws],
                "queries": len(draws[0]),  # a round measures the judged level alone
                "standard_error": crossed_standard_error(draws),
                "cosine_change": sample.cosine_change.get(s) if sample is not None else None,
            }
        )
    value_level = headline_level(levels)
    value = level_overlaps[levels.index(value_level)]
    half, bound = s50(levels, level_overlaps)
    searched, sample_note = _gauge_rows(data)
    metrics = {
        "levels": rows,
        "standard_error": rows[levels.index(value_level)]["standard_error"],
        # Where the error of the judged level mostly comes from: the size a round doubles.
        "error_from": crossed_error_from(by_level[value_level]),
        "s50": half,
        "s50_bound": bound,
        "queries": min(neighbors.gauge_queries, own),
        "rows": searched,
        "k": neighbors.k,
    }
    where = f"{half:.2f}" if half is not None else f"{bound} {levels[0 if bound == '<' else -1]:g}"
    message = _with_notes(
        f"overlap@{neighbors.k} {value:.2f} at s = {value_level:g}; s50 {where}", sample_note
    )
    return _gauge_verdict(data, value, threshold, message, metrics)


@register(
    "EA302",
    measures=(
        "overlap@k of cosine kNN of X and of X with unit-std columns, dead dimensions left out "
        "(gauge-invariant), against every row"
    ),
    rule="below 0.8: fail (`dot`), warn (`unknown`)",
    summary="Cosine neighbours against those of the column-standardized data.",
    what=(
        "Computes the overlap@k between the cosine kNN of X and of X with every live column "
        "scaled to unit standard deviation, for twice the gauge queries (one gauge: its error "
        "is its queries' and its scale's) against every row (as EA301; with gauge-rows, against"
        " that sample of rows, whose value is that of a corpus of that size), the column "
        "standard deviations estimated on a sample of the corpus's rows (four times as many as "
        "--sample; when EA302 is measured again, undecided, those of every row, from the pass's"
        " column statistics). Its standard_error combines the queries' error (query_error) with"
        " the scale's own (scale_error; none for the scale of every row): the root mean square "
        "of how far the value moves when the estimated scale is jittered once more by its own "
        "estimation error (each column's log std moved by N(0, v), v = (m4/m2^2 - 1)/(4m), the "
        "delta-method variance on the m rows; 3 draws), which is how far, in distribution, the "
        "estimated scale moved the value from that of the exact one; the two add in quadrature,"
        " widened by the Student t factor of their Satterthwaite degrees of freedom. Dead "
        "dimensions (EA004's rule: a std at most its threshold times the root mean square "
        "coordinate, on the same sample) are left out, scale 0: they carry no information about"
        " which rows are near, and the computed std of a constant column is rounding noise "
        "(about 1e-17 of its value in float64) that must not become a scale. Standardizing is "
        "gauge-invariant: (X·D) standardized = X standardized for any diagonal D, and a dead "
        "column of X·D is dead in X, so this compares the file's gauge with a canonical one. "
        "metrics.dead_dimensions lists the dimensions left out."
    ),
    why=(
        "If the cosine neighbours of the exported gauge differ from those of the canonical "
        "gauge, then the per-dimension scales the export happens to have are steering cosine. "
        "For a dot-product model those scales are arbitrary."
    ),
    fix=(
        "Rank with the dot product the model was trained with; if you need cosine, standardize "
        "the columns first (and document it) or train on the sphere."
    ),
    reference="Steck, Ekanadham & Kallus (2024), arXiv:2403.05440",
    threshold=0.8,
    threshold_rationale="As EA301: at most one neighbour in five may depend on the gauge.",
    samples=("queries", "gauge_queries"),
    reads=("canonical",),
)
def canonical_gauge(data: AuditData, threshold: float) -> Finding:
    neighbors = data.neighbors
    if neighbors is None or neighbors.k == 0 or not len(neighbors.canonical):
        return Finding(Status.SKIP, None, SKIP)
    own = canonical_queries(data.params.sampling.gauge_queries)  # a round may search more
    canonical, jitter = neighbors.canonical[:own], [j[:own] for j in neighbors.canonical_jitter]
    summary = overlap_summary(canonical, query_population(data))
    value = summary["overlap_at_k"]
    dead = np.flatnonzero(neighbors.canonical_scale == 0)
    searched, sample_note = _gauge_rows(data)
    query_error = summary["standard_error"]
    # The scale is estimated too (unless from every row): its error joins the queries'.
    scale_error = canonical_scale_error(canonical, jitter)
    if query_error is not None or scale_error is not None:
        queries = None if query_error is None else (query_error, len(canonical) - 1)
        summary["standard_error"] = combined_standard_error(queries, scale_error)
    metrics = summary | {
        "query_error": query_error,
        "scale_error": None if scale_error is None else scale_error[0],
        "rows": searched,
        "k": neighbors.k,
        "dead_dimensions": [int(j) for j in dead[:DIMENSION_LIST_CAP]],
        "dead_dimension_count": len(dead),
    }
    message = _with_notes(
        f"overlap@{neighbors.k} {value:.2f} with the column-standardized data",
        sample_note,
        f"dead dimensions left out: {len(dead)}" if len(dead) else "",
    )
    return _gauge_verdict(data, value, threshold, message, metrics)


def _gauge_rows(data: AuditData) -> tuple[int, str]:
    """How many rows a gauge check's queries searched (a sample's clean rows, or every clean
    row), and what its message says of a sample."""
    assert data.neighbors is not None
    sampled, usable = data.neighbors.gauge_rows_searched, data.stats.n_clean
    if sampled is None:
        return usable, ""
    return sampled, (
        f"on a sample of {sampled:,} of the {usable:,} rows (gauge-rows): the value of a corpus "
        "of that size, not of this one"
    )


def _with_notes(message: str, *notes: str) -> str:
    """``message`` with the notes that are not empty in one parenthesis."""
    kept = [note for note in notes if note]
    return f"{message} ({'; '.join(kept)})" if kept else message


def canonical_scale_error(
    canonical: npt.NDArray[np.float64], jittered: list[npt.NDArray[np.float64]]
) -> tuple[float, int] | None:
    """EA302's error from its estimated scale, and the draws it rests on: the root mean square,
    over draws, of how far the value moves when the scale is jittered once more by its own
    estimation error. Where the value's change under such an increment does not depend on where
    it starts, that is the root mean square of how far the estimated scale moved it from the
    value of the exact scale. None without draws (a scale estimated on every row is exact)."""
    if not jittered or not len(canonical):
        return None
    base = float(canonical.mean())
    moves = [float(draw[: len(canonical)].mean()) - base for draw in jittered]
    return math.sqrt(float(np.mean(np.square(moves)))), len(moves)


@register(
    "EA303",
    measures=(
        "with `--truncate M`: overlap@k of cosine kNN on the first M dimensions against all d "
        "(Matryoshka exports)"
    ),
    rule="warn below 0.8",
    summary="Cosine neighbours on the first M dimensions against those on all of them.",
    what=(
        "With --truncate M (repeatable), computes the overlap@k between the exact cosine kNN "
        "of the query sample on the first M dimensions and on all d, against the whole file. "
        "A truncation is the diagonal gauge D = (1…1, 0…0), so it runs in the same pass and "
        "the same matrix product as EA301; a row with nothing in its first M dimensions scores "
        "0 against every row there. The value is the overlap at the smallest M; "
        "metrics.dimensions lists every M with its standard error."
    ),
    why=(
        "Matryoshka-trained encoders (and API embeddings with a 'dimensions' parameter) are "
        "meant to be cut to their first M dimensions to save memory and search time. Whether "
        "the cut keeps the neighbours depends on the model and the data: a model not trained "
        "for it loses most of them, and even a Matryoshka model loses more at small M. This is "
        "the share of today's cosine neighbours the truncated vectors still return."
    ),
    fix=(
        "Keep at least the smallest M whose overlap reaches the threshold (metrics.dimensions), "
        "or deploy all d dimensions. Re-normalize the truncated vectors before indexing with "
        "L2 or inner product (their norms are no longer 1)."
    ),
    reference="Kusupati et al. (2022), 'Matryoshka Representation Learning', NeurIPS, "
    "arXiv:2205.13147",
    threshold=0.8,
    threshold_rationale=(
        "As EA301: a truncation should not change more than one neighbour in five. Tighten it "
        "for retrieval that must match the full vectors."
    ),
    option="truncate",
    samples=("queries",),
    reads=("truncation",),
)
def truncation(data: AuditData, threshold: float) -> Finding:
    neighbors = data.neighbors
    if neighbors is None or neighbors.k == 0 or not neighbors.truncation:
        return Finding(Status.SKIP, None, SKIP)
    d = data.stats.d
    rows = [
        {"m": m} | overlap_summary(per_query, query_population(data))
        for m, per_query in sorted(neighbors.truncation.items())
    ]
    smallest = rows[0]
    value = smallest["overlap_at_k"]
    metrics = {
        "standard_error": smallest["standard_error"],  # of the value: the smallest M's overlap
        "dimensions": rows,
        "d": d,
        "k": neighbors.k,
        "queries": neighbors.queries,
    }
    others = "; ".join(f"{row['overlap_at_k']:.2f} at M = {row['m']}" for row in rows[1:])
    message = (
        f"overlap@{neighbors.k} {value:.2f} on the first {smallest['m']} of {d} dimensions"
        + (f" ({others})" if others else "")
    )
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    enough = [row["m"] for row in rows if row["overlap_at_k"] >= threshold]
    keep = f"at least {enough[0]} dimensions" if enough else f"all {d} dimensions"
    return Finding(
        Status.WARN,
        value,
        f"{message}: truncating to {smallest['m']} changes more neighbours than the threshold "
        "allows",
        metrics,
        recommendation=Advice(
            f"Keep {keep} of the vectors (truncation changes the cosine neighbours)",
            (Action.TRUNCATION,),
            specificity=1,
        ),
    )
