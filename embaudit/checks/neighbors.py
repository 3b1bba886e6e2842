"""Neighbour checks: EA301 gauge sensitivity, EA302 canonical gauge, EA401 cosine vs L2,
EA402 cosine vs dot, EA501 hubness."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from embaudit.checks.base import AuditData, register
from embaudit.checks.defects import DIMENSION_LIST_CAP
from embaudit.estimates import (
    bounded_mean_standard_error,
    combined_standard_error,
    crossed_standard_error,
)
from embaudit.knn import EXTERNAL_ROW
from embaudit.model import Finding, Level, Status, TrainedWith
from embaudit.params import GAUGE_ROWS

#: The rescaling level whose overlap is EA301's headline value.
HEADLINE_LEVEL = 0.5

USE_DOT = "Rank with the dot product the model was trained with, not cosine"
NORMALIZE = "Normalize the vectors before indexing with L2 or inner product"
DECLARE = "Declare the training objective (--trained-with cosine|dot|l2) to settle this"
SKIP = "needs more finite, non-zero rows than k + 1 (otherwise every row is every row's neighbour)"


#: How the error of a mean overlap over the queries is computed (explain's text).
OVERLAP_ERROR = (
    "Its standard_error is over the queries, in Agresti & Coull's form for a mean of values in "
    "[0, 1] (z^2/2 pseudo-queries at each end): it stays above 0 when every query drawn agrees, "
    "as rare misses a sample does not see would otherwise go unreported."
)


def query_population(data: AuditData) -> int | None:
    """The rows the queries are drawn from when they are the corpus's clean rows (None with a
    query file): as many queries as that are every row, and their mean carries no error."""
    neighbors = data.neighbors
    if neighbors is None or bool((neighbors.query_rows == EXTERNAL_ROW).any()):
        return None
    return data.stats.n_clean


def overlap_summary(
    per_query: npt.NDArray[np.float64], population: int | None = None
) -> dict[str, Any]:
    """Mean overlap@k over queries with its standard error (over the queries; none when they
    are every one of the ``population`` rows they are drawn from) and quantiles."""
    n = len(per_query)
    every_row = population is not None and n >= population
    return {
        "overlap_at_k": float(per_query.mean()),
        "standard_error": None if every_row else bounded_mean_standard_error(per_query),
        "p10": float(np.quantile(per_query, 0.1)),
        "p50": float(np.quantile(per_query, 0.5)),
        "queries": n,
    }


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
    summary="How far cosine neighbours move under random per-dimension rescaling.",
    what=(
        "For random diagonal gauges D = exp(N(0, s^2)) at s = 0.1, 0.25, 0.5 and 1.0 (several "
        "draws each) computes the overlap@k between the exact cosine kNN of X and of X·D for a "
        "sample of queries (gauge-queries) against a random sample of the file's rows "
        f"(gauge-rows, {GAUGE_ROWS.default:,} by default; every row of a smaller file), the same "
        "rows for X and X·D and in every round (an overlap depends on how many rows are "
        "searched, which decide how near the neighbours are: the sample measures every larger "
        "export at the same density; set gauge-rows to the row count to search every row; "
        "metrics.rows counts the rows searched), the mean absolute change of cosine on random "
        "pairs, and s50, the rescaling at which half of the neighbours change. The headline value "
        "is the overlap at s = 0.5. Each level's standard_error covers the queries and the gauge "
        "draws: the two-way random-effects variance of the mean over (draws × queries), from the "
        "mean squares (MS_draw + MS_query − MS_residual) / (D·Q); each query's overlap carries "
        "the draw of the gauge rows around it, so the error over queries covers that draw too "
        "(benchmarks/gauge_rows.py --draws)."
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
    for s in levels:
        draws = neighbors.gauge[s]
        overlap = float(np.mean(draws))  # every draw has the same queries
        level_overlaps.append(overlap)
        rows.append(
            {
                "s": s,
                "overlap_at_k": overlap,
                "draws": [float(d.mean()) for d in draws],
                "standard_error": crossed_standard_error(np.asarray(draws)),
                "cosine_change": sample.cosine_change.get(s) if sample is not None else None,
            }
        )
    value_level = min(levels, key=lambda s: abs(math.log(s / HEADLINE_LEVEL)))
    value = level_overlaps[levels.index(value_level)]
    half, bound = s50(levels, level_overlaps)
    searched, sample_note = _gauge_rows(data)
    metrics = {
        "levels": rows,
        "standard_error": rows[levels.index(value_level)]["standard_error"],
        "s50": half,
        "s50_bound": bound,
        "queries": neighbors.gauge_queries,
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
    summary="Cosine neighbours against those of the column-standardized data.",
    what=(
        "Computes the overlap@k between the cosine kNN of X and of X with every live column "
        "scaled to unit standard deviation, for the gauge queries against the gauge rows (as "
        "EA301: a random sample of gauge-rows rows, every row of a smaller file, on which the "
        "overlap depends), the column standard deviations estimated on a sample of the "
        "corpus's rows (four times as many as --sample; when EA302 is measured again, "
        "undecided, those of every row, from the pass's column statistics). Its standard_error "
        "combines the queries' error (query_error) with the scale's own (scale_error; none "
        "for the scale of every row): the root mean square "
        "of how far the value moves when the estimated scale is jittered once more by its own "
        "estimation error (each column's log std moved by N(0, v), v = (m4/m2^2 - 1)/(4m), the "
        "delta-method variance on the m rows; 3 draws), which is how far, in distribution, the "
        "estimated scale moved the value from that of the exact one; the two add in quadrature, "
        "widened by the Student t factor of their Satterthwaite degrees of freedom. Dead "
        "dimensions (EA004's rule: a std at most its threshold times the root mean square "
        "coordinate, on the same sample) are left out, scale 0: they carry no "
        "information about which rows are near, and the computed std of a constant column is "
        "rounding noise (about 1e-17 of its value in float64) that must not become a scale. "
        "Standardizing is gauge-invariant: (X·D) standardized = X standardized for any diagonal "
        "D, and a dead column of X·D is dead in X, so this compares the file's gauge with a "
        "canonical one. metrics.dead_dimensions lists the dimensions left out."
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
    summary = overlap_summary(neighbors.canonical, query_population(data))
    value = summary["overlap_at_k"]
    dead = np.flatnonzero(neighbors.canonical_scale == 0)
    searched, sample_note = _gauge_rows(data)
    query_error = summary["standard_error"]
    # The scale is estimated too (unless from every row): its error joins the queries'.
    scale_error = canonical_scale_error(neighbors.canonical, neighbors.canonical_jitter)
    if query_error is not None or scale_error is not None:
        queries = None if query_error is None else (query_error, len(neighbors.canonical) - 1)
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
    return sampled, f"on a sample of {sampled:,} of the {usable:,} rows"


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


def _agreement(
    data: AuditData, pair: tuple[str, str], threshold: float, decisive: TrainedWith
) -> Finding:
    """EA401 / EA402: do cosine neighbours agree with those of the other metric?"""
    neighbors = data.neighbors
    if neighbors is None or neighbors.k == 0:
        return Finding(Status.SKIP, None, SKIP)
    other = pair[1]
    summary = overlap_summary(neighbors.overlap[pair], query_population(data))
    value = summary["overlap_at_k"]
    metrics = summary | {"k": neighbors.k, "top1_differs": neighbors.top1_differs[pair]}
    metrics["by_k"] = {str(j): v for j, v in neighbors.by_k[pair].items()}
    name = {"l2": "L2", "dot": "inner-product"}[other]
    message = f"overlap@{neighbors.k} of cosine and {name} neighbours {value:.3f}"
    if value >= threshold:
        return Finding(Status.PASS, value, message, metrics)
    trained_with = data.params.trained_with
    if trained_with == decisive or (decisive == TrainedWith.DOT and trained_with.scores_with_dot):
        action = USE_DOT if other == "dot" else "Rank with L2 distance, as the model was trained"
        return Finding(
            Status.FAIL,
            value,
            f"{message}: cosine disagrees with the {name} ranking the model was trained for",
            metrics,
            impact=Level.UNTRUSTWORTHY,
            recommendation=action,
        )
    # Normalizing helps only where cosine is the similarity wanted; a dot or L2 model should
    # rank with its own metric, which EA402 or EA401 then says.
    wants_cosine = trained_with in (TrainedWith.COSINE, TrainedWith.UNKNOWN)
    return Finding(
        Status.WARN,
        value,
        f"{message}: an {name} index will not return the cosine neighbours",
        metrics,
        impact=Level.CAUTION if trained_with == TrainedWith.UNKNOWN else None,
        recommendation=NORMALIZE if wants_cosine else None,
    )


@register(
    "EA401",
    summary="Agreement of cosine and L2 nearest neighbours.",
    what=(
        "Computes, for a sample of queries against the whole file, the overlap@k of the exact "
        "cosine and L2 nearest neighbours (self excluded; neighbours whose scores tie within "
        "float32 rounding count as shared), and the share of queries whose top-1 differs. "
        + OVERLAP_ERROR
    ),
    why=(
        "On unit vectors 1 - cos(x, y) = ||x - y||^2 / 2, so the two rankings coincide exactly "
        "(the value is 1). When norms vary, an L2 index (most ANN libraries' default) returns "
        "other neighbours than cosine; for a model trained with L2 distances, cosine is then not "
        "the similarity it learned."
    ),
    fix=(
        "Normalize the vectors before building an L2 index if you want cosine neighbours; if "
        "the model was trained with L2 distances, rank with L2."
    ),
    threshold=0.9,
    threshold_rationale="0.9: at most one neighbour in ten may differ between the metrics.",
    samples=("queries",),
    reads=("lists",),
)
def cosine_vs_l2(data: AuditData, threshold: float) -> Finding:
    return _agreement(data, ("cosine", "l2"), threshold, TrainedWith.L2)


@register(
    "EA402",
    summary="Agreement of cosine and inner-product nearest neighbours.",
    what=(
        "Computes, for a sample of queries against the whole file, the overlap@k of the exact "
        "cosine and inner-product nearest neighbours (ties within float32 rounding count as "
        "shared), and the share of queries whose top-1 differs. " + OVERLAP_ERROR
    ),
    why=(
        "The inner product is cosine times both norms. When norms vary, inner-product ranking "
        "favours long vectors (often popular items); a dot-product model uses exactly that, so "
        "cosine discards what it learned."
    ),
    fix=(
        "For a dot-product model, rank with the dot product. For a cosine model, normalize the "
        "vectors before building an inner-product index."
    ),
    reference="Steck, Ekanadham & Kallus (2024), arXiv:2403.05440",
    threshold=0.9,
    threshold_rationale="0.9: at most one neighbour in ten may differ between the metrics.",
    samples=("queries",),
    reads=("lists",),
)
def cosine_vs_dot(data: AuditData, threshold: float) -> Finding:
    return _agreement(data, ("cosine", "dot"), threshold, TrainedWith.DOT)


def _isotropic(value: float | None) -> str:
    return "" if value is None else f" (isotropic {value:.2f})"


@register(
    "EA501",
    summary="Points that appear in many neighbour lists (hubs) and in none (antihubs).",
    what=(
        "Builds the exact cosine kNN graph of the sample and measures how unevenly the points "
        "occur in the others' k-nearest lists. Its value is the Robin Hood index: the share of "
        "all list slots that would have to move for every point to occur exactly k times (0 for "
        "a perfectly even graph). Also reported: the skewness of the k-occurrence distribution "
        "(biased, as scipy.stats.skew) and the antihub rate (share of points in no list), each "
        "next to the value for an isotropic Gaussian sample of the same size and dimension. "
        "Hubness depends on the sample size (metrics.sample): the value is that of a graph of "
        "this many random rows, and its standard_error is the delete-one jackknife over them "
        "(each row left out once, from its (k + 1)-nearest-neighbour lists). Measured again "
        "on a larger sample, the value is that of the larger graph, next to its own reference."
    ),
    why=(
        "In high dimensions a few points become nearest neighbours of very many others. Hubs "
        "crowd every result list and antihubs are never retrieved, which degrades recall and "
        "recommendations independently of the metric."
    ),
    fix=(
        "Centre the vectors; consider hubness reduction (mutual proximity, local scaling, CSLS) "
        "before kNN retrieval."
    ),
    reference=(
        "Radovanović, Nanopoulos & Ivanović (2010), 'Hubs in Space', JMLR 11; Feldbauer, "
        "Leodolter, Plant & Flexer (2018), 'Fast approximate hubness reduction for large "
        "high-dimensional data', ICBK (the Robin Hood index); Feldbauer & Flexer (2019), 'A "
        "comprehensive empirical comparison of hubness reduction in high-dimensional spaces', "
        "KAIS"
    ),
    threshold=0.5,
    threshold_rationale=(
        "0.5: half of all list slots would have to move. Skewness, the classic measure, does "
        "not separate harmless from harmful hubness: clustered data has hubs at its cluster "
        "centres (skewness above 2 on the clean clustered fixtures and generated sentence-"
        "encoder-like corpora) and a collapsed geometry can show the same skewness. The Robin "
        "Hood index does (Feldbauer et al. 2018 prefer it for its stability). Calibration, "
        "k = 10, 5,000-row samples: isotropic Gaussians 0.12 (d = 50 … 1,536); clean clustered "
        "and sentence-encoder-like corpora 0.38 to 0.41 (fixtures/sphere.npy 0.38, with 7% "
        "antihubs); heavy-tailed Student t (3 degrees of freedom) 0.18; an uncentred Gaussian "
        "cloud (mean 3 per coordinate, d = 384), the classic hubness case, 0.62 with 30% of "
        "the rows never retrieved; three rogue dimensions 30 times the others 0.69, with 54%. "
        "Robin Hood does not see a single giant hub (one tight group holding a fifth of the "
        "rows: 0.42, skewness 30): that is a near-duplicate problem (EA003), and skewness stays "
        "in metrics."
    ),
    samples=("graphs",),
    reads=("graphs",),
)
def hubness(data: AuditData, threshold: float) -> Finding:
    sample = data.geometry
    graph = sample.graph if sample is not None else None
    hub = graph.hubness if graph is not None else None
    if sample is None or graph is None or hub is None or graph.hubness_k == 0:
        return Finding(Status.SKIP, None, "needs at least 2 finite, non-zero rows")
    metrics = hub.to_dict() | {
        "standard_error": graph.robin_hood_error,
        "k": graph.hubness_k,
        "sample": graph.m,
        "graphs": graph.graphs,
    }
    reference = sample.reference.hubness
    if reference is not None:
        metrics["reference"] = {
            "skewness": reference.skewness,
            "robin_hood": reference.robin_hood,
            "antihub_rate": reference.antihub_rate,
        }

    message = (
        f"Robin Hood index {hub.robin_hood:.2f}"
        f"{_isotropic(reference.robin_hood if reference else None)}, k-occurrence skewness "
        f"{hub.skewness:.2f}{_isotropic(reference.skewness if reference else None)}, antihubs "
        f"{hub.antihub_rate:.1%}"
    )
    hygiene = data.neighbors.hygiene if data.neighbors is not None else None
    if hygiene is not None and hygiene.returned is not None:
        returned = hygiene.returned
        metrics["queries"] = returned
        message += (
            f"; the query file's results: {returned['distinct_rows']:,} distinct rows in "
            f"{returned['slots']:,} slots (uniform: {returned['distinct_if_uniform']:,.0f}), the "
            f"{len(returned['most_returned'])} most returned fill {returned['top_share']:.0%}"
        )
    if hub.robin_hood > threshold:
        return Finding(
            Status.WARN,
            hub.robin_hood,
            f"{message}: hubs crowd the neighbour lists and {hub.antihub_rate:.0%} of the rows "
            "are in none",
            metrics,
            recommendation="Centre the vectors, or apply hubness reduction before kNN retrieval",
        )
    return Finding(Status.PASS, hub.robin_hood, message, metrics)
