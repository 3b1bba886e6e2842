"""EA4xx, metrics: how far cosine neighbours agree with L2 (EA401) and inner-product (EA402)
ones."""

from __future__ import annotations

from embaudit.checks.base import AuditData, register
from embaudit.checks.common import (
    NORMALIZE,
    ON_QUERY_LISTS,
    OVERLAP_ERROR,
    SKIP,
    USE_DOT,
    other_neighbours,
    overlap_summary,
    query_population,
)
from embaudit.model import Action, Advice, Finding, Level, Status, TrainedWith

RANK_WITH_L2 = Advice("Rank with L2 distance, as the model was trained", (Action.METRIC,))

#: EA401's and EA402's threshold, 0.9, in words.
_AGREEMENT_RATIONALE = "0.9: at most one neighbour in ten may differ between the metrics."


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
        action = USE_DOT if other == "dot" else RANK_WITH_L2
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
    fix = NORMALIZE if wants_cosine else None
    return other_neighbours(value, message, f"an {name} index", metrics, trained_with, fix)


@register(
    "EA401",
    measures="overlap@k of cosine and L2 kNN (exactly 1 on unit vectors)",
    rule="below 0.9: fail (`l2`), else warn",
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
    threshold_rationale=_AGREEMENT_RATIONALE,
    **ON_QUERY_LISTS,
)
def cosine_vs_l2(data: AuditData, threshold: float) -> Finding:
    return _agreement(data, ("cosine", "l2"), threshold, TrainedWith.L2)


@register(
    "EA402",
    measures="overlap@k of cosine and inner-product kNN",
    rule="below 0.9: fail (`dot`), else warn",
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
    threshold_rationale=_AGREEMENT_RATIONALE,
    **ON_QUERY_LISTS,
)
def cosine_vs_dot(data: AuditData, threshold: float) -> Finding:
    return _agreement(data, ("cosine", "dot"), threshold, TrainedWith.DOT)
